"""The README's examples, run as written."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import types
from pathlib import Path

import pytest

import spider_core as sc
from helpers import REPO, SPIDER

README = (REPO / "README.md").read_text()


def block(language: str, containing: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)
    matches = [b for b in blocks if containing in b]
    assert len(matches) == 1, f"expected one {language} block containing {containing!r}"
    return matches[0]


@pytest.mark.slow
def test_readme_c_package(tmp_path: Path) -> None:
    src = tmp_path / "hello"
    src.mkdir()
    (src / "hello.c").write_text(block("c", "square(x: i64)"))
    sc.build_package(src, tmp_path / "packages")
    done = subprocess.run([str(SPIDER), "run", "--package-dir", str(tmp_path / "packages"), "hello", "square", "12"],
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "[144]\n"), done.stderr
    done = subprocess.run([str(SPIDER), "run", "--package-dir", str(tmp_path / "packages"), "hello", "cube", "2"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "no task named 'cube'" in done.stderr


def test_readme_async_embedding(package_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(block("python", "async def main(package_dir"), namespace)
    asyncio.run(namespace["main"](package_dir))
    assert "outputs: [55]" in capsys.readouterr().out
    assert (tmp_path / "logs" / "em-1-1.log").is_file()


def test_readme_sync_embedding(package_dir: Path) -> None:
    exec(block("python", "assert outcome.values == [55]"), {"sc": sc, "package_dir": package_dir})


def test_readme_slots_submit_and_map(package_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exec(block("python", "as_completed(futures)"), {"sc": sc, "package_dir": package_dir})
    lines = sorted(capsys.readouterr().out.splitlines(), key=lambda line: int(line.split()[0]))
    assert lines == [f"{n} [{f}]" for n, f in enumerate([0, 1, 1, 2, 3, 5, 8, 13, 21, 34])]


@pytest.mark.slow
def test_readme_values_or_an_exception(package_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exec(block("python", "except sc.ExecutorCrashed"), {"sc": sc, "package_dir": package_dir})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:4] == [
        "the task did not finish within its hard timeout of 0.2s",
        "the executor crashed (signal SIGABRT)",
        "ExecutionError: always_fail: intentional failure",
        "no task no_such_task",
    ]
    assert lines[4].startswith("cannot load: no task package named 'no_such_package' in ")
    assert lines[5:] == ["[6765]"]


def test_readme_commit_request(package_dir: Path) -> None:
    import importlib

    importlib.import_module("spider_core.tdl")  # the block uses spider_core.tdl.encode_values
    namespace = {"sc": sc, "spider_core": sys.modules["spider_core"]}
    exec(block("python", "task_graph_outputs=outputs"), namespace)
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=package_dir)) as pool:
        outcome = pool.execute(namespace["request"], hard_timeout=5)
    assert isinstance(outcome, sc.Success) and outcome.values == []  # the outputs summed to zero


def test_readme_plugin(package_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    plugin = types.ModuleType("spider_metrics")
    exec(block("python", "spider_task_finished"), plugin.__dict__)
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(plugin, name="metrics")
    config = sc.PoolConfig(package_dir=package_dir)
    request = sc.ExecuteRequest(package="integration_test_tasks", task="always_panic")
    with caplog.at_level("INFO", logger="spider_metrics"):
        with sc.SyncProcessPool(config, plugin_manager=pm) as pool:
            pool.execute(request, hard_timeout=5)
    messages = [r.getMessage() for r in caplog.records if r.name == "spider_metrics"]
    assert any(m.startswith("integration_test_tasks/always_panic: ExecutorCrash in") for m in messages)
    assert any("executor 1 exited (crash)" in m for m in messages)


def test_readme_launcher_plugin(package_dir: Path) -> None:
    import os

    plugin = types.ModuleType("spider_nice")
    exec(block("python", "def spider_launcher"), plugin.__dict__)
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(plugin, name="nice")
    request = sc.ExecuteRequest(package="integration_test_tasks", task="fibonacci", inputs=[10])
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=package_dir), plugin_manager=pm) as pool:
        assert pool.execute(request, hard_timeout=5).values == [55]
        assert os.getpriority(os.PRIO_PROCESS, pool.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)


def test_readme_plugin_examples_import_only_the_plugin_api() -> None:
    section = README.split("## Writing a plugin")[1].split("\n## ")[0]
    imports = re.findall(r"^(?:from|import) (\S+)", section, flags=re.M)
    assert imports and {i for i in imports if i.startswith("spider_core")} == {"spider_core.plugin"}


def test_readme_exit_status_table_matches_the_cli() -> None:
    from spider_core import reporting
    from spider_core.cli import EXIT_STATUSES

    for code, name in [(0, "EXIT_OK"), (1, "EXIT_TASK_FAILURE"), (2, "EXIT_USAGE"), (3, "EXIT_TIMEOUT"),
                       (4, "EXIT_CRASH"), (5, "EXIT_INTERNAL")]:
        assert getattr(reporting, name) == code
        assert f"\n| {code} | " in README
    for signum in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):  # 128 + the signal that ended it
        assert f"\n| {128 + signum} | ended by {signum.name}" in README
        assert f"\n  {128 + signum}  ended by {signum.name}" in EXIT_STATUSES


def test_readme_config_table_lists_every_field() -> None:
    import attrs

    for field in attrs.fields(sc.PoolConfig):
        assert f"`{field.name}`" in README, field.name


@pytest.mark.slow
def test_readme_dask(package_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = block("python", "spider_core.dask.SpiderWorkerPlugin(config)")
    exec(code, {"__name__": "__main__", "sc": sc, "package_dir": package_dir})
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[[0], [1], [1], [2], [3], [5], [8], [13], [21], [34]]",
        "ExecutorCrash SIGSEGV",
        "[34]",
    ]
