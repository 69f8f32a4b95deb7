from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pluggy
import pytest
from hookcalls import record_hooks

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


# -- which hooks the tests call (for tests/test_plugins.py::test_every_hook_has_a_test) ---------

TESTS = Path(__file__).resolve().parent
HOOK_CALLS = pytest.StashKey[Path]()
DESELECTED = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    """Record the spider_core hooks whose implementations run, here and in every Python child
    that inherits the environment (tests/hookcalls/record_hooks.py), in one file per session
    (an xdist worker shares its controller's)."""
    path = os.environ.get(record_hooks.ENV)
    if not path:
        fd, path = tempfile.mkstemp(prefix="spider-hook-calls-", suffix=".txt")
        os.close(fd)
        env = pytest.MonkeyPatch()
        env.setenv(record_hooks.ENV, path)
        env.setenv("PYTHONPATH", str(TESTS / "hookcalls"), prepend=os.pathsep)
        config.add_cleanup(Path(path).unlink)
        config.add_cleanup(env.undo)
    config.stash[HOOK_CALLS] = Path(path)
    config.stash[DESELECTED] = 0
    config.add_cleanup(record_hooks.record_hook_calls(pluggy.PluginManager, record_hooks.appender(path)))


def pytest_deselected(items: Sequence[pytest.Item]) -> None:
    if items:
        items[0].config.stash[DESELECTED] += len(items)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that read which hooks ran (``hook_calls``) run after all the others."""
    items.sort(key=lambda item: "hook_calls" in getattr(item, "fixturenames", ()))


def _partial(session: pytest.Session) -> str | None:
    """Why this session is not a run of the whole suite, or None if it is."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return "under pytest-xdist, no test runs after all the others"
    if session.config.stash[DESELECTED]:
        return f"{session.config.stash[DESELECTED]} tests deselected"
    if any("::" in arg for arg in session.config.args):
        return "tests chosen by id"
    left_out = sorted(p.name for p in set(TESTS.glob("test_*.py")) - {item.path for item in session.items})
    return f"{len(left_out)} test files not collected" if left_out else None


@pytest.fixture
def hook_calls(request: pytest.FixtureRequest) -> set[str]:
    """The spider_core hooks an implementation of which ran in this session, in the tests'
    process or a child of it. Only a run of the whole suite tells: otherwise the test skips."""
    why = _partial(request.session)
    if why:
        pytest.skip(f"only a run of the whole suite shows which hooks its tests call ({why})")
    return set(request.config.stash[HOOK_CALLS].read_text().split())
