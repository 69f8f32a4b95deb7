"""Soft timeouts and the executor memory limit, against the real executor, the real C package
and a Python package written by the test."""

from __future__ import annotations

import asyncio
import shutil
import textwrap
from pathlib import Path

import pytest

import spider_core as sc
from spider_core.tdl import SoftTimeout

PKG = "integration_test_tasks"

SOFT = """
    import time

    from spider_core.sdk import Package, SoftTimeout, TaskContext

    package = Package("soft")


    @package.task
    def careful(ctx: TaskContext, seconds: float) -> str:
        try:
            time.sleep(seconds)
        except SoftTimeout as e:
            return f"cleaned up: {e}"
        return "finished"


    @package.task
    def careless(ctx: TaskContext, seconds: float) -> str:
        time.sleep(seconds)
        return "finished"


    @package.task
    def busy(ctx: TaskContext, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
        return n
"""


@pytest.fixture
def packages(package_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "packages"
    shutil.copytree(package_dir / PKG, root / PKG)
    (root / "soft").mkdir()
    (root / "soft" / "__init__.py").write_text(textwrap.dedent(SOFT))
    return root


def run(config: sc.PoolConfig, scenario):
    async def main():
        async with sc.ProcessPool(config) as pool:
            return await scenario(pool)

    return asyncio.run(main())


def soft(task: str, seconds: float) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package="soft", task=task, inputs=[seconds])


# -- soft timeouts -------------------------------------------------------------------------------


def test_a_python_task_catches_its_soft_timeout_and_returns(packages: Path) -> None:
    async def scenario(pool):
        caught = await pool.execute(soft("careful", 5.0), hard_timeout=10, soft_timeout=0.2)
        again = await pool.execute(soft("careful", 0.01), hard_timeout=10, soft_timeout=5)
        return caught, again

    caught, again = run(sc.PoolConfig(package_dir=packages), scenario)
    assert caught.values == ["cleaned up: the task ran past its soft timeout of 0.2s"]
    assert again.values == ["finished"] and again.executor_id == caught.executor_id  # nothing killed


def test_an_escaped_soft_timeout_is_a_task_failure_that_says_so(packages: Path) -> None:
    async def scenario(pool):
        return [await pool.execute(soft(task, 5.0), hard_timeout=10, soft_timeout=0.2) for task in ("careless", "busy")]

    for outcome in run(sc.PoolConfig(package_dir=packages), scenario):
        assert isinstance(outcome, sc.InTaskFailure) and outcome.executor_id == 1
        assert "SoftTimeout: the task ran past its soft timeout of 0.2s" in outcome.error.error.message


def test_a_soft_timeout_does_not_interrupt_a_native_task(packages: Path) -> None:
    async def scenario(pool):
        slept = await pool.execute(sc.ExecuteRequest(package=PKG, task="sleep_ms", inputs=[400]), 10, soft_timeout=0.05)
        killed = await pool.execute(sc.ExecuteRequest(package=PKG, task="sleep_ms", inputs=[5000]), 0.3, soft_timeout=0.05)
        return slept, killed

    slept, killed = run(sc.PoolConfig(package_dir=packages), scenario)
    assert isinstance(slept, sc.Success) and slept.elapsed_us >= 400_000  # ran to its end
    assert isinstance(killed, sc.Timeout)  # the hard timeout still kills


def test_the_hard_timeout_still_kills_a_task_that_ignores_its_soft_timeout(packages: Path) -> None:
    code = "import time\nfrom spider_core.sdk import Package\npackage = Package('stubborn')\n" \
           "@package.task\ndef run(ctx) -> None:\n    while True:\n        try:\n            time.sleep(10)\n" \
           "        except BaseException:\n            pass\n"
    (packages / "stubborn").mkdir()
    (packages / "stubborn" / "__init__.py").write_text(code)

    async def scenario(pool):
        return await pool.execute(sc.ExecuteRequest(package="stubborn", task="run"), 0.5, soft_timeout=0.1)

    assert isinstance(run(sc.PoolConfig(package_dir=packages), scenario), sc.Timeout)


def test_soft_timeout_through_submit_map_and_call(packages: Path) -> None:
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=packages, slots=2, default_timeout=10)) as pool:
        submitted = pool.submit(soft("careful", 5.0), soft_timeout=0.1).result()
        mapped = list(pool.map([soft("careful", 5.0), soft("careful", 0.0)], soft_timeout=0.1))
        called = pool.call("soft", "careful", 5.0, soft_timeout=0.1)
    assert submitted.values[0].startswith("cleaned up")
    assert [o.values[0] for o in mapped] == ["cleaned up: the task ran past its soft timeout of 0.1s", "finished"]
    assert called == ["cleaned up: the task ran past its soft timeout of 0.1s"]


@pytest.mark.parametrize("value", [0, -1, float("inf"), float("nan"), "1", True])
def test_a_bad_soft_timeout_is_an_invalid_request(packages: Path, value: object) -> None:
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=packages)) as pool:
        with pytest.raises(sc.InvalidRequest) as info:
            pool.execute(soft("careful", 0.0), 5, soft_timeout=value)
    assert str(info.value) == f"soft_timeout must be a positive number of seconds, got {value!r}"


def test_soft_timeout_text() -> None:
    assert str(SoftTimeout(1.5)) == "the task ran past its soft timeout of 1.5s"
    assert isinstance(SoftTimeout(1), Exception)


# -- the memory limit ----------------------------------------------------------------------------


def test_an_executor_over_max_executor_rss_is_replaced_before_its_next_task(packages: Path) -> None:
    exits = []

    class Recorder:
        @sc.hookimpl
        def spider_executor_exited(self, executor_id, reason):
            exits.append((executor_id, reason))

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(Recorder())
    config = sc.PoolConfig(package_dir=packages, max_executor_rss=200 * 2**20)

    async def scenario(pool):
        small = await pool.execute(sc.ExecuteRequest(package=PKG, task="hold_mb", inputs=[1]), 10)
        big = await pool.execute(sc.ExecuteRequest(package=PKG, task="hold_mb", inputs=[300]), 10)
        after = await pool.execute(sc.ExecuteRequest(package=PKG, task="fibonacci", inputs=[10]), 10)
        return small, big, after

    async def main():
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            return await scenario(pool)

    small, big, after = asyncio.run(main())
    assert isinstance(small, sc.Success) and isinstance(big, sc.Success)  # the task that grew it keeps its result
    assert small.executor_id == big.executor_id == 1 and after.executor_id == 2 and after.values == [55]
    assert exits[0] == (1, "memory")
