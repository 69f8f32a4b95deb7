from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import TASK_PACKAGES
from spider_core.build import build_package
from spider_core.plugin.manager import PluginSettings, get_plugin_manager


@pytest.fixture(scope="session")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package directory holding the real integration_test_tasks, built once per session."""
    out = tmp_path_factory.mktemp("packages")
    build_package(TASK_PACKAGES / "integration_test_tasks", out)
    return out


@pytest.fixture(params=["exec", "forkserver"])
def start_method(request: pytest.FixtureRequest) -> str:
    """Each ``PoolConfig.start_method``: the tests of pools that take it run under both."""
    return str(request.param)


@pytest.fixture
def pm():
    """A fresh plugin manager with entry-point autoload off."""
    return get_plugin_manager(PluginSettings(autoload=False))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SPIDER_"):
            monkeypatch.delenv(name)
