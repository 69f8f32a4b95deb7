"""Observing the pool: ``pool.stats()``, the Prometheus plugin and the OpenTelemetry plugin,
against the real executor, the real bundled package and the real libraries."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path

import pytest

import spider_core as sc
from helpers import PKG

pytestmark = pytest.mark.slow

#: What the fixed mix ends with: every outcome and every respawn reason it causes.
MIX_OUTCOMES = {"success": 7, "failure": 1, "timeout": 1, "crash": 1, "cancelled": 1}
MIX_RESPAWNS = {"timeout": 1, "crash": 1, "cancel": 1, "recycle": 1, "memory": 0, "spawn-failure": 0}
_names = itertools.count()


def req(task: str, *inputs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task=task, inputs=inputs)


def pool_name() -> str:
    """An ``em_id`` of its own: the pool's series in the process-wide registry."""
    return f"observe-{os.getpid()}-{next(_names)}"


async def run_mix(pool: sc.ProcessPool) -> None:
    """Two successes, a failure, a segfault, a timeout, a cancelled call, then five successes
    of which the last ends the executor's share (``recycle_after=5``)."""
    assert isinstance(await pool.execute(req("noop"), 10), sc.Success)
    assert isinstance(await pool.execute(req("noop"), 10), sc.Success)
    assert isinstance(await pool.execute(req("always_fail"), 10), sc.InTaskFailure)
    assert isinstance(await pool.execute(req("segfault"), 10), sc.ExecutorCrash)
    assert isinstance(await pool.execute(req("sleep_ms", 60_000), 0.3), sc.Timeout)
    running = asyncio.create_task(pool.execute(req("sleep_ms", 60_000), 60))
    while pool.stats().busy == 0:  # it holds the slot: its task runs
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for _ in range(5):
        assert isinstance(await pool.execute(req("noop"), 10), sc.Success)


def mix_config(package_dir: Path, **extra: object) -> sc.PoolConfig:
    return sc.PoolConfig(package_dir=package_dir, recycle_after=5, plugin_autoload=False, **extra)


def test_stats_count_a_fixed_mix_exactly(package_dir: Path) -> None:
    pool = sc.ProcessPool(mix_config(package_dir))
    before = pool.stats()
    assert (before.slots, before.busy, before.queued, before.executors) == (1, 0, 0, ())
    assert dict(before.outcomes) == dict.fromkeys(MIX_OUTCOMES, 0)

    async def main() -> sc.PoolStats:
        async with pool:
            first = pool.stats().executors
            assert [(e.executor_id, e.pid, e.state, e.tasks_run) for e in first] == [(1, pool.pid, "idle", 0)]
            await run_mix(pool)
            return pool.stats()

    stats = asyncio.run(main())
    assert dict(stats.outcomes) == MIX_OUTCOMES
    assert dict(stats.respawns) == MIX_RESPAWNS
    assert (stats.slots, stats.busy, stats.queued) == (1, 0, 0)
    (executor,) = stats.executors
    # executors 1 (crashed), 2 (timed out), 3 (cancelled), 4 (recycled after 5), 5 now
    assert (executor.executor_id, executor.state, executor.tasks_run) == (5, "idle", 0)
    assert executor.rss_bytes > 0
    with pytest.raises(AttributeError):
        stats.busy = 3  # type: ignore[misc]  # frozen
    with pytest.raises(TypeError):
        stats.outcomes["success"] = 0  # type: ignore[index]  # read-only


def test_sync_stats_count_calls_from_threads_and_map(package_dir: Path) -> None:
    """Calls finished on callers' threads, on the pool's thread (``submit``) and through the
    pipelined map all count, and a slot held by a call is ``busy``."""
    config = sc.PoolConfig(package_dir=package_dir, slots=2, standby=True, plugin_autoload=False)
    with sc.SyncProcessPool(config) as pool:
        for _ in range(3):
            assert isinstance(pool.execute(req("noop"), 10), sc.Success)
        assert isinstance(pool.submit(req("always_fail"), 10).result(), sc.InTaskFailure)
        outcomes = list(pool.map([req("noop")] * 20 + [req("segfault")], 10))
        assert isinstance(outcomes[-1], sc.ExecutorCrash)
        slow = pool.submit(req("sleep_ms", 1000), 10)
        while pool.stats().busy == 0:
            time.sleep(0.01)
        busy = pool.stats()
        slow.result()
        deadline = time.monotonic() + 30
        while sum(e.state == "standby" for e in pool.stats().executors) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stats = pool.stats()
    assert dict(stats.outcomes) == {"success": 24, "failure": 1, "timeout": 0, "crash": 1, "cancelled": 0}
    assert dict(stats.respawns) == {"timeout": 0, "crash": 1, "cancel": 0, "recycle": 0, "memory": 0, "spawn-failure": 0}
    assert sorted(e.state for e in busy.executors[:2]) == ["busy", "idle"]
    assert [e.state for e in stats.executors] == ["idle", "idle", "standby", "standby"]
    assert sum(e.tasks_run for e in stats.executors[:2]) >= 1


def test_stats_count_a_failed_spawn(package_dir: Path, tmp_path: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, executor_command=(str(tmp_path / "missing"),), plugin_autoload=False)
    pool = sc.ProcessPool(config)
    with pytest.raises(sc.ExecutorCreationFailure):
        asyncio.run(pool.start())
    stats = pool.stats()
    assert stats.respawns["spawn-failure"] == 1
    assert stats.executors == ()


class Observer:
    """A plugin that records the observer hooks' calls; ``watch`` is its answer at start."""

    def __init__(self, watch: bool | None) -> None:
        self.watch = watch
        self.calls: list[tuple[str, object]] = []

    @sc.hookimpl
    def spider_pool_started(self, pool: sc.ProcessPool) -> bool | None:
        self.calls.append(("started", pool))
        return self.watch

    @sc.hookimpl
    def spider_pool_closed(self, pool: sc.ProcessPool) -> None:
        self.calls.append(("closed", pool))

    @sc.hookimpl
    def spider_task_finished(self, outcome: sc.Outcome, pool: sc.ProcessPool) -> None:
        self.calls.append((type(outcome).__name__, pool))

    @sc.hookimpl
    def spider_executor_exited(self, reason: str, pool: sc.ProcessPool) -> None:
        self.calls.append((reason, pool))


def test_a_plugin_that_declines_a_pool_gets_none_of_its_task_events(package_dir: Path) -> None:
    """``spider_pool_started`` answering False leaves the plugin out of that pool's
    ``spider_task_finished`` (and only that hook); every hook gets the pool."""
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    watching, declining = Observer(None), Observer(False)
    pm.register(watching, name="watching")
    pm.register(declining, name="declining")

    async def main() -> sc.ProcessPool:
        async with sc.ProcessPool(sc.PoolConfig(package_dir=package_dir), plugin_manager=pm) as pool:
            await pool.execute(req("noop"), 10)
            await pool.execute(req("segfault"), 10)
        return pool

    pool = asyncio.run(main())
    assert watching.calls == [
        ("started", pool), ("Success", pool), ("crash", pool), ("ExecutorCrash", pool), ("shutdown", pool),
        ("closed", pool),
    ]
    assert declining.calls == [("started", pool), ("crash", pool), ("shutdown", pool), ("closed", pool)]
