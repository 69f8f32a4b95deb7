"""The call path (:mod:`spider_core.pool.call`): every entry point takes it, and pipelined
``execute`` keeps every guarantee of a single call (real executor, real C package)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import time
from collections import Counter
from pathlib import Path

import attrs
import pytest

import spider_core as sc
import spider_core.pool.call
from helpers import async_wait_until, callers_waiting, tasks_run, wait_until
from spider_core.plugin import hookimpl

PKG = "integration_test_tasks"
CALL_MODULE = spider_core.pool.call.__file__


def req(task: str, *inputs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task=task, inputs=inputs)


def echo(token: str, ms: int = 0) -> sc.ExecuteRequest:
    return req("sleep_and_echo", [token], ms) if ms else req("sleep_and_echo", [token])


@pytest.fixture
def config(package_dir: Path, tmp_path: Path) -> sc.PoolConfig:
    return sc.PoolConfig(
        package_dir=package_dir, log_dir=tmp_path / "logs", slots=2, plugin_autoload=False,
        default_timeout=10, executor_log_level="debug",
    )


class Finished:
    """Records each ``spider_task_finished`` event, and whether it came from the call module."""

    def __init__(self) -> None:
        #: (request, outcome, from the call module, times and executor as they should be)
        self.seen: list[tuple[sc.ExecuteRequest, sc.Outcome, bool, bool]] = []

    @hookimpl
    def spider_task_finished(self, request, outcome, executor_id, queue_wait, execution_time):
        frame = sys._getframe(1)
        from_call_path = False
        while frame is not None:
            from_call_path = from_call_path or frame.f_code.co_filename == CALL_MODULE
            frame = frame.f_back
        sound = queue_wait >= 0 and execution_time >= 0 and executor_id == outcome.executor_id
        self.seen.append((request, outcome, from_call_path, sound))  # (a hook's assert would be logged, not raised)


# -- one path for every entry point ----------------------------------------------------------


MIX = {  # token -> the request and the outcome it must get
    "ok": (req("fibonacci", 10), sc.Success),
    "fails": (req("always_fail"), sc.InTaskFailure),
    "times-out": (req("sleep_ms", 3000), sc.Timeout),
    "crashes": (req("segfault"), sc.ExecutorCrash),
}


def test_every_entry_point_takes_the_call_path_once_per_request(config) -> None:
    """ProcessPool.execute and map, SyncProcessPool.execute, submit and map: each request's
    ``spider_task_finished`` comes once, from the call module, with the very outcome the
    caller got. An entry point with a send-and-settle of its own breaks this."""
    recorder = Finished()
    requests = [request for request, _ in MIX.values()]
    got: dict[str, list[sc.Outcome]] = {}

    def manager() -> sc.SpiderPluginManager:
        pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
        pm.register(recorder)
        return pm

    async def asynchronous() -> None:
        async with sc.ProcessPool(config, plugin_manager=manager()) as pool:
            got["execute"] = [await pool.execute(r, 0.5) for r in requests]
            got["map"] = [o async for o in pool.map(requests, 0.5)]

    asyncio.run(asynchronous())
    with sc.SyncProcessPool(config, plugin_manager=manager()) as pool:
        got["sync execute"] = [pool.execute(r, 0.5) for r in requests]
        got["submit"] = [pool.submit(r, 0.5).result(timeout=30) for r in requests]
        got["sync map"] = list(pool.map(requests, 0.5))

    for entry, outcomes in got.items():
        assert [type(o) for o in outcomes] == [kind for _, kind in MIX.values()], entry
    returned = [o for outcomes in got.values() for o in outcomes]
    assert len(recorder.seen) == len(returned) == 5 * len(MIX)
    assert sorted(map(id, returned)) == sorted(id(o) for _, o, _, _ in recorder.seen)  # once each, the same object
    assert all(from_call_path and sound for _, _, from_call_path, sound in recorder.seen)


# -- pipelined execute -----------------------------------------------------------------------


def pool_run(config: sc.PoolConfig, scenario, plugin=None):
    async def main():
        pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
        if plugin is not None:
            pm.register(plugin)
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            return await scenario(pool)

    return asyncio.run(main())


def mark(path: Path, ms: int = 0) -> sc.ExecuteRequest:
    return req("mark_and_sleep", str(path), ms)


async def waiting(pool, callers: int) -> None:
    """Until one caller holds the slot and ``callers`` wait behind it (sent ahead or queued)."""
    await async_wait_until(
        lambda: (pool.stats().busy, callers_waiting(pool)) == (1, callers), f"1 slot busy, {callers} callers waiting"
    )


def test_a_queued_caller_s_clock_starts_when_the_executor_starts_its_request(config) -> None:
    """Eight 150 ms tasks from eight callers on one executor take 1.2 s together; their
    requests are sent ahead, yet none times out at 0.5 s: each one's clock starts when the one
    before it ends."""
    async def scenario(pool):
        return await asyncio.gather(*(pool.execute(req("sleep_ms", 150), 0.5) for _ in range(8)))

    outcomes = pool_run(attrs.evolve(config, slots=1), scenario)
    assert all(isinstance(o, sc.Success) for o in outcomes), outcomes
    assert {o.executor_id for o in outcomes} == {1}


def test_a_caller_cancelled_after_its_request_was_sent_ahead_costs_no_executor(config, tmp_path: Path) -> None:
    """Its request runs (it was handed to the executor) and its answer is dropped; the
    executor serves the next caller."""
    ran = tmp_path / "ran"

    async def scenario(pool):
        first = asyncio.create_task(pool.execute(req("sleep_ms", 300), 10))
        await waiting(pool, 0)
        ahead = asyncio.create_task(pool.execute(mark(ran), 10))
        after = asyncio.create_task(pool.execute(echo("after"), 10))
        await waiting(pool, 2)
        ahead.cancel()
        outcomes = await asyncio.gather(first, after)
        with pytest.raises(asyncio.CancelledError):
            await ahead
        return outcomes, pool.executor_ids

    (first, after), ids = pool_run(attrs.evolve(config, slots=1), scenario)
    assert isinstance(first, sc.Success) and after.values == [["after"]]
    assert first.executor_id == after.executor_id == 1 and ids == (1,)  # nothing killed
    assert ran.read_text().strip().isdigit()  # it ran: sent ahead, as documented


def test_a_caller_cancelled_while_queued_behind_a_full_pipeline_never_runs(config, tmp_path: Path) -> None:
    never = tmp_path / "never"

    async def scenario(pool):
        first = asyncio.create_task(pool.execute(req("sleep_ms", 300), 10))
        await waiting(pool, 0)
        full = [asyncio.create_task(pool.execute(echo(str(i)), 10)) for i in range(spider_core.pool.call.DEPTH)]
        await waiting(pool, len(full))
        queued = asyncio.create_task(pool.execute(mark(never), 10))
        await waiting(pool, len(full) + 1)
        queued.cancel()
        outcomes = await asyncio.gather(first, *full)
        with pytest.raises(asyncio.CancelledError):
            await queued
        return outcomes, pool.executor_ids

    outcomes, ids = pool_run(attrs.evolve(config, slots=1), scenario)
    assert [o.values for o in outcomes[1:]] == [[[str(i)]] for i in range(spider_core.pool.call.DEPTH)]
    assert ids == (1,) and not never.exists()


def test_recycle_after_falls_between_tasks_under_pipelining(config) -> None:
    exits = []

    class Exits:
        @hookimpl
        def spider_executor_exited(self, executor_id, reason):
            exits.append((executor_id, reason))

    async def scenario(pool):
        return await asyncio.gather(*(pool.execute(echo(str(i)), 10) for i in range(10)))

    outcomes = pool_run(attrs.evolve(config, slots=1, recycle_after=3), scenario, Exits())
    assert [o.values for o in outcomes] == [[[str(i)]] for i in range(10)]
    assert sorted(Counter(o.executor_id for o in outcomes).values()) == [1, 3, 3, 3]  # three tasks each
    assert exits == [(1, "recycle"), (2, "recycle"), (3, "recycle"), (4, "shutdown")]
    assert tasks_run(config.log_dir, "sleep_and_echo") == 10


def exit_counter() -> tuple[Counter[str], type]:
    """Executors' exits by reason, and the plugin that counts them."""
    exits: Counter[str] = Counter()

    class Exits:
        @hookimpl
        def spider_executor_exited(self, reason):
            exits[reason] += 1

    return exits, Exits


def mixed_calls(count: int, tmp_path: Path) -> list[tuple[str, sc.ExecuteRequest, type | None]]:
    """``count`` calls, each (kind, request, the outcome it must get): successes, failures,
    segfaults, timeouts (at 0.3 s), and calls to be cancelled (None: cancelled, or a Success)."""
    kinds: list[tuple[str, sc.ExecuteRequest, type | None]] = []
    for i in range(count):
        if i % 50 == 7:
            kinds.append(("segfault", req("segfault"), sc.ExecutorCrash))
        elif i % 100 == 21:
            kinds.append(("timeout", req("sleep_ms", 3000), sc.Timeout))
        elif i % 25 == 3:
            kinds.append(("fails", req("always_fail"), sc.InTaskFailure))
        elif i % 20 == 11:
            kinds.append(("cancelled", mark(tmp_path / f"mark-{i}", 30), None))
        else:
            kinds.append(("ok", echo(f"token-{i}"), sc.Success))
    return kinds


def test_five_hundred_callers_each_get_their_own_outcome_and_nothing_runs_twice(config, tmp_path: Path) -> None:
    """Successes, failures, segfaults, timeouts and callers cancelled at every stage (queued,
    sent ahead, running), on two pipelined slots."""
    exits, Exits = exit_counter()
    kinds = mixed_calls(500, tmp_path)

    async def scenario(pool):
        tasks = [
            asyncio.create_task(pool.execute(request, 0.3 if kind == "timeout" else 10))
            for kind, request, _ in kinds
        ]
        cancelled = [task for task, (kind, _, _) in zip(tasks, kinds, strict=True) if kind == "cancelled"]
        for task in cancelled:  # at staggered moments: queued, sent ahead or running
            await asyncio.sleep(0.02)  # time itself: the moments are spread over the run
            task.cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = pool_run(config, scenario, Exits())
    for i, ((kind, _, expected), result) in enumerate(zip(kinds, results, strict=True)):
        if kind == "cancelled":
            assert isinstance(result, (asyncio.CancelledError, sc.Success)), (i, result)
            continue
        assert isinstance(result, expected), (i, result)
        if kind == "ok":
            assert result.values == [[f"token-{i}"]], i
        if kind == "timeout":
            assert result.hard_timeout == 0.3
    assert tasks_run(config.log_dir, "sleep_and_echo") == sum(kind == "ok" for kind, _, _ in kinds)
    assert exits["crash"] == sum(kind == "segfault" for kind, _, _ in kinds)
    assert exits["timeout"] == sum(kind == "timeout" for kind, _, _ in kinds)
    assert exits["cancelled"] <= sum(kind == "cancelled" for kind, _, _ in kinds)  # only running ones


def test_a_caller_cancelled_once_its_request_sent_ahead_started_replaces_the_executor(config, tmp_path: Path) -> None:
    """Once the executor has started a request sent ahead (the answer before it came, read or
    not), its caller's cancellation is a running call's: the executor is killed and replaced,
    and the next caller is served by the successor."""
    started = tmp_path / "started"

    async def scenario(pool):
        first = asyncio.create_task(pool.execute(req("sleep_ms", 100), 10))
        await waiting(pool, 0)
        running = asyncio.create_task(pool.execute(mark(started, 60_000), 120))
        await async_wait_until(started.exists, "the request sent ahead started")
        ids = pool.executor_ids
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        return await first, ids, await pool.execute(echo("next"), 10)

    first, ids, after = pool_run(attrs.evolve(config, slots=1), scenario)
    assert isinstance(first, sc.Success) and ids == (1,)
    assert after.values == [["next"]] and after.executor_id == 2  # killed and replaced


# -- SyncProcessPool.submit: lanes, as map runs them ----------------------------------------------


def sync_pool(config: sc.PoolConfig, plugin=None) -> sc.SyncProcessPool:
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    if plugin is not None:
        pm.register(plugin)
    return sc.SyncProcessPool(config, plugin_manager=pm)


def test_submitted_calls_each_get_their_own_outcome_and_nothing_runs_twice(config, tmp_path: Path) -> None:
    """Three hundred calls through ``submit`` from four threads: successes, failures, segfaults,
    timeouts and futures cancelled at every stage (waiting, sent ahead, running)."""
    exits, Exits = exit_counter()
    kinds = mixed_calls(300, tmp_path)
    futures: list[concurrent.futures.Future[sc.Outcome] | None] = [None] * len(kinds)
    with sync_pool(config, Exits()) as pool:

        def submit(start: int) -> None:
            for i in range(start, len(kinds), 4):
                kind, request, _ = kinds[i]
                futures[i] = pool.submit(request, 0.3 if kind == "timeout" else 10)

        with concurrent.futures.ThreadPoolExecutor(4) as threads:
            list(threads.map(submit, range(4)))
        for i, (kind, _, _) in enumerate(kinds):  # at staggered moments: waiting, sent ahead or running
            if kind == "cancelled":
                time.sleep(0.02)  # time itself: the moments are spread over the run
                futures[i].cancel()  # type: ignore[union-attr]
        done, not_done = concurrent.futures.wait(futures, timeout=120)  # type: ignore[arg-type]
        assert not not_done
        after = pool.execute(echo("after"), 10)
    assert after.values == [["after"]]
    for i, ((kind, _, expected), future) in enumerate(zip(kinds, futures, strict=True)):
        assert future is not None
        if kind == "cancelled":
            assert future.cancelled() or isinstance(future.result(), sc.Success), i
            continue
        result = future.result()
        assert isinstance(result, expected), (i, result)
        if kind == "ok":
            assert result.values == [[f"token-{i}"]], i
        if kind == "timeout":
            assert result.hard_timeout == 0.3
    assert tasks_run(config.log_dir, "sleep_and_echo") == sum(kind == "ok" for kind, _, _ in kinds) + 1
    assert exits["crash"] == sum(kind == "segfault" for kind, _, _ in kinds)
    assert exits["timeout"] == sum(kind == "timeout" for kind, _, _ in kinds)
    assert exits["cancelled"] <= sum(future.cancelled() for future in futures)  # type: ignore[union-attr]


def test_a_submitted_call_cancelled_while_sent_ahead_costs_no_executor(config, tmp_path: Path) -> None:
    """One slot: the calls submitted while one runs go to the executor in one batch; cancelling
    one of them before the executor starts it drops its answer, and nothing is killed."""
    first, second = tmp_path / "first", tmp_path / "second"
    with sync_pool(attrs.evolve(config, slots=1)) as pool:
        running = pool.submit(mark(first, 400), 10)
        wait_until(first.exists, "the first call started")
        behind = [pool.submit(mark(second, 400), 10), pool.submit(echo("dropped"), 10), pool.submit(echo("kept"), 10)]
        wait_until(second.exists, "the batch behind it was sent, and its first call started")
        ids = pool.executor_ids
        assert behind[1].cancel()
        assert isinstance(running.result(timeout=30), sc.Success)
        assert isinstance(behind[0].result(timeout=30), sc.Success)
        assert behind[2].result(timeout=30).values == [["kept"]]
        assert behind[1].cancelled() and pool.executor_ids == ids == (1,)
        assert pool.stats().outcomes["cancelled"] == 0


def test_a_submitted_call_cancelled_while_its_executor_runs_it_replaces_the_executor(config, tmp_path: Path) -> None:
    """The running call of a batch: its executor is killed and replaced (counted as cancelled,
    not as a crash), and the call sent behind it runs once, on the successor."""
    started = tmp_path / "started"
    with sync_pool(attrs.evolve(config, slots=1)) as pool:
        holder = pool.submit(req("sleep_ms", 300), 10)
        wait_until(lambda: pool.stats().busy == 1, "the slot busy")
        running = pool.submit(mark(started, 60_000), 120)
        behind = pool.submit(echo("behind"), 10)
        assert isinstance(holder.result(timeout=30), sc.Success)
        wait_until(started.exists, "the second call started")
        assert running.cancel()
        assert behind.result(timeout=30).values == [["behind"]]
        assert behind.result().executor_id == 2  # killed and replaced
        stats = pool.stats()
        assert stats.outcomes["cancelled"] == 1 and stats.outcomes["crash"] == 0
        assert stats.respawns["cancel"] == 1 and stats.respawns["crash"] == 0
    assert tasks_run(config.log_dir, "sleep_and_echo") == 1


def test_a_submitted_call_s_clock_starts_when_its_executor_starts_it(config) -> None:
    """Eight 150 ms calls submitted at once to one executor, under a 0.5 s timeout each: sent
    in one batch, none times out."""
    with sync_pool(attrs.evolve(config, slots=1)) as pool:
        futures = [pool.submit(req("sleep_ms", 150), 0.5) for _ in range(8)]
        outcomes = [f.result(timeout=60) for f in futures]
    assert all(isinstance(o, sc.Success) for o in outcomes), outcomes
