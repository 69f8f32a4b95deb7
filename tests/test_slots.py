"""Many slots, futures, map and the pool's default timeout, against the real executor and C package."""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import sys
from pathlib import Path

import attrs
import pytest

import spider_core as sc
from helpers import async_wait_until, callers_waiting, wait_until

PKG = "integration_test_tasks"
FIB = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]


def req(task: str, *inputs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task=task, inputs=inputs)


@pytest.fixture
def config(package_dir: Path, tmp_path: Path, start_method: str) -> sc.PoolConfig:
    return sc.PoolConfig(package_dir=package_dir, log_dir=tmp_path / "logs", slots=2, plugin_autoload=False, start_method=start_method)


def run(config: sc.PoolConfig, scenario, **kwargs):
    async def main():
        async with sc.ProcessPool(config, **kwargs) as pool:
            return await scenario(pool)

    return asyncio.run(main())


async def busy(pool, slots: int, waiting: int = 0) -> None:
    """Until ``slots`` slots are held and ``waiting`` callers wait for their turn."""
    await async_wait_until(
        lambda: (pool.stats().busy, callers_waiting(pool)) == (slots, waiting), f"{slots} slots busy, {waiting} callers waiting"
    )


# -- two slots, two tasks at once --------------------------------------------------------------


def test_two_slots_run_two_tasks_at_once(config) -> None:
    async def scenario(pool):
        slow = asyncio.create_task(pool.execute(req("sleep_ms", 1500), 10))
        await busy(pool, 1)
        quick = await pool.execute(req("fibonacci", 10), 10)  # served while the sleep runs
        still_running = not slow.done()
        return quick, still_running, await slow, pool.executor_ids

    quick, still_running, slow, ids = run(config, scenario)
    assert quick.values == [55] and still_running
    assert isinstance(slow, sc.Success)
    assert {quick.executor_id, slow.executor_id} == {1, 2} == set(ids)


def test_one_slot_runs_one_task_at_a_time(config) -> None:
    async def scenario(pool):
        slow = asyncio.create_task(pool.execute(req("sleep_ms", 300), 10))
        await busy(pool, 1)
        await pool.execute(req("fibonacci", 10), 10)
        return slow.done()

    assert run(attrs.evolve(config, slots=1), scenario) is True


@pytest.mark.parametrize("fault", ["always_panic", "timeout"])
def test_a_fault_in_one_slot_leaves_the_other_slots_task_alone(config, fault: str) -> None:
    async def scenario(pool):
        survivor = asyncio.create_task(pool.execute(req("sleep_ms", 600), 10))
        await busy(pool, 1)
        if fault == "timeout":
            faulty = await pool.execute(req("sleep_ms", 5000), 0.2)
        else:
            faulty = await pool.execute(req(fault), 10)
        return faulty, await survivor, pool.executor_ids

    faulty, survivor, ids = run(config, scenario)
    assert isinstance(faulty, sc.Timeout if fault == "timeout" else sc.ExecutorCrash)
    assert isinstance(survivor, sc.Success)
    assert faulty.executor_id != survivor.executor_id
    assert sorted(ids) == sorted([survivor.executor_id, 3])  # only the faulty slot respawned


@pytest.mark.slow
def test_two_hundred_concurrent_callers_on_two_slots_get_their_own_results(config) -> None:
    async def scenario(pool):
        return await asyncio.gather(*(pool.execute(req("fibonacci", i % 20), 10) for i in range(200)))

    outcomes = run(config, scenario)
    assert [o.values for o in outcomes] == [[FIB[i % 20]] for i in range(200)]
    assert {o.executor_id for o in outcomes} == {1, 2}


# -- the queue -----------------------------------------------------------------------------------


def test_queued_callers_are_served_first_come_first_served(config) -> None:
    async def scenario(pool):
        finished = []

        async def call(name: str, task: str, *inputs):
            await pool.execute(req(task, *inputs), 10)
            finished.append(name)

        blockers = [asyncio.create_task(call(f"blocker{i}", "sleep_ms", 200)) for i in range(2)]
        await busy(pool, 2)
        queued = []
        for name, task, inputs in [("long1", "sleep_ms", (400,)), ("long2", "sleep_ms", (400,)),
                                   ("quick1", "fibonacci", (3,)), ("quick2", "fibonacci", (4,))]:
            queued.append(asyncio.create_task(call(name, task, *inputs)))
            await busy(pool, 2, len(queued))  # each enters the queue in this order
        await asyncio.gather(*blockers, *queued)
        return finished

    finished = run(config, scenario)
    # Served in order, the quick calls wait for a slot that one of the long calls frees: they
    # finish after one of them. Served last-come first, they would finish before both.
    first_long = min(finished.index("long1"), finished.index("long2"))
    assert finished.index("quick1") > first_long and finished.index("quick2") > first_long


def test_queue_order_with_one_slot(config) -> None:
    async def scenario(pool):
        finished = []

        async def call(i: int):
            outcome = await pool.execute(req("fibonacci", i), 10)
            finished.append(outcome.values[0])

        blocker = asyncio.create_task(pool.execute(req("sleep_ms", 200), 10))
        await busy(pool, 1)
        calls = []
        for i in range(2, 12):
            calls.append(asyncio.create_task(call(i)))
            await busy(pool, 1, len(calls))
        await asyncio.gather(blocker, *calls)
        return finished

    assert run(attrs.evolve(config, slots=1), scenario) == FIB[2:12]


def test_a_caller_cancelled_while_queued_leaves_no_trace(config) -> None:
    async def scenario(pool):
        blockers = [asyncio.create_task(pool.execute(req("sleep_ms", 300), 10)) for _ in range(2)]
        await busy(pool, 2)
        ids = pool.executor_ids
        queued = asyncio.create_task(pool.execute(req("fibonacci", 10), 10))
        after = asyncio.create_task(pool.execute(req("fibonacci", 11), 10))
        await busy(pool, 2, 2)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        results = await asyncio.gather(*blockers, after)
        return ids, results, pool.executor_ids, len(pool._slots._waiters)

    ids_before, results, ids_after, waiting = run(config, scenario)
    assert all(isinstance(r, sc.Success) for r in results) and results[-1].values == [89]
    assert ids_after == ids_before and waiting == 0  # nothing killed, nobody left in the queue


def test_a_running_caller_cancelled_respawns_only_its_slot(config) -> None:
    async def scenario(pool):
        doomed = asyncio.create_task(pool.execute(req("sleep_ms", 5000), 10))
        await busy(pool, 1)
        other = asyncio.create_task(pool.execute(req("sleep_ms", 400), 10))
        await busy(pool, 2)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        return await other, pool.executor_ids

    other, ids = run(config, scenario)
    assert isinstance(other, sc.Success) and other.executor_id == 2
    assert ids == (3, 2)


class _FailsForExecutor:
    """A launcher that cannot start the executors whose ids are in ``failing``."""

    def __init__(self, failing: set[int]) -> None:
        self.failing = failing

    @sc.hookimpl(tryfirst=True)
    def spider_launcher(self, config, executor_id, env):
        from spider_core.plugin import LaunchSpec

        if executor_id in self.failing:
            return LaunchSpec(argv=("/nonexistent/executor",), env=env)
        return LaunchSpec(argv=(sys.executable, "-m", "spider_core.executor"), env=env)


def test_when_no_slot_can_spawn_submitted_calls_all_end(config) -> None:
    """Both executors crash and neither can be replaced: every call submitted behind the
    crashes ends, with NotRunning, none is left waiting (the calls sent behind a crash, and
    those still waiting)."""
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(_FailsForExecutor({3, 4, 5, 6}))
    with sc.SyncProcessPool(attrs.evolve(config, backoff_initial=30.0), plugin_manager=pm) as pool:
        crashes = [pool.submit(req("always_panic"), 10) for _ in range(2)]
        behind = [pool.submit(req("fibonacci", 3), 10) for _ in range(40)]
        done, not_done = concurrent.futures.wait([*crashes, *behind], timeout=60)
        assert not not_done
        assert all(isinstance(f.result(), sc.ExecutorCrash) for f in crashes)
        results = [f.exception() or f.result() for f in behind]
        assert all(isinstance(r, (sc.NotRunning, sc.Success, sc.ExecutorCrash)) for r in results), results
        assert any(isinstance(r, sc.NotRunning) for r in results)


def test_a_slot_that_cannot_spawn_does_not_hold_requests_while_the_other_works(config) -> None:
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(_FailsForExecutor({2}))
    config = attrs.evolve(config, backoff_initial=30.0)  # the failed slot stays down for the test

    async def scenario(pool):
        assert pool.executor_ids == (1, None)
        outcomes = await asyncio.gather(*(pool.execute(req("fibonacci", i), 10) for i in range(10)))
        return outcomes, pool.executor_ids

    outcomes, ids = run(config, scenario, plugin_manager=pm)
    assert [o.values for o in outcomes] == [[FIB[i]] for i in range(10)]
    assert {o.executor_id for o in outcomes} == {1} and ids == (1, None)


def test_a_failed_slot_recovers_when_the_policy_allows(config) -> None:
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(_FailsForExecutor({2}))
    config = attrs.evolve(config, backoff_initial=0.05)

    async def scenario(pool):
        await async_wait_until(lambda: None not in pool.executor_ids, "the second slot recovered")
        slow = asyncio.create_task(pool.execute(req("sleep_ms", 1000), 10))
        await busy(pool, 1)
        quick = await pool.execute(req("fibonacci", 10), 10)
        return quick, slow.done(), await slow

    quick, slow_done, slow = run(config, scenario, plugin_manager=pm)
    assert quick.values == [55] and not slow_done and isinstance(slow, sc.Success)
    assert {quick.executor_id, slow.executor_id} == {1, 3}


def test_a_slot_whose_respawn_fails_under_a_caller_is_given_back_and_recovers(config) -> None:
    """Slot 0's executor dies while idle and its replacement cannot start, while slot 1 is
    busy: the caller that found slot 0 waits for slot 1 instead, slot 0 recovers in the
    background once spawning works again, and close() does not wait for slot 0 forever."""
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    launcher = _FailsForExecutor({3})
    pm.register(launcher)
    config = attrs.evolve(config, backoff_initial=0.2)

    async def scenario(pool):
        slow = asyncio.create_task(pool.execute(req("sleep_ms", 500), 10))
        await async_wait_until(lambda: pool._slots.all[0].busy or pool._slots.all[1].busy, "a slot is busy")
        idle = next(s for s in pool._slots.all if not s.busy)
        idle.current.signal(signal.SIGKILL)
        await async_wait_until(lambda: not idle.healthy, "the idle executor is dead")
        quick = await pool.execute(req("fibonacci", 9), 10)  # slot of executor 3 fails; waits for the other
        await async_wait_until(lambda: None not in pool.executor_ids and 3 not in pool.executor_ids, "the failed slot recovered")
        return quick, await slow

    async def main():
        pool = sc.ProcessPool(config, plugin_manager=pm)
        await pool.start()
        try:
            return await scenario(pool)
        finally:
            await asyncio.wait_for(pool.close(), 30)

    quick, slow = asyncio.run(main())
    assert quick.values == [34] and isinstance(slow, sc.Success)
    assert quick.executor_id != 3  # served by the busy slot once free, or by slot 0 recovered


def test_when_no_slot_can_spawn_calls_get_not_running(config) -> None:
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    failing = {3, 4, 5, 6}
    pm.register(_FailsForExecutor(failing))
    config = attrs.evolve(config, backoff_initial=30.0)

    async def scenario(pool):
        crashes = await asyncio.gather(pool.execute(req("always_panic"), 10), pool.execute(req("always_panic"), 10))
        with pytest.raises(sc.NotRunning, match="failed to start 1 time"):
            await pool.execute(req("fibonacci", 3), 10)
        return crashes

    crashes = run(config, scenario, plugin_manager=pm)
    assert all(isinstance(c, sc.ExecutorCrash) for c in crashes)


def test_close_reaps_every_slots_executor(config) -> None:
    async def main():
        pool = sc.ProcessPool(attrs.evolve(config, slots=3, standby=True))
        await pool.start()
        await async_wait_until(lambda: all(s.standby is not None for s in pool._slots.all), "every standby is ready")
        pids = [*pool.pids, *(s.standby.pid for s in pool._slots.all)]
        queued = [asyncio.create_task(pool.execute(req("sleep_ms", 200), 10)) for _ in range(5)]
        await busy(pool, 3, 2)
        await pool.close()
        return pids, await asyncio.gather(*queued, return_exceptions=True)

    pids, results = asyncio.run(main())
    assert len(set(pids)) == 6 and all(not Path(f"/proc/{pid}").exists() for pid in pids)
    assert [type(r) for r in results] == [sc.Success] * 3 + [sc.NotRunning] * 2  # running ones finish


# -- the default timeout -----------------------------------------------------------------------


def test_default_timeout_applies_when_a_call_passes_none(config) -> None:
    async def scenario(pool):
        return await pool.execute(req("sleep_ms", 5000)), await pool.execute(req("fibonacci", 10), hard_timeout=5)

    timed_out, ok = run(attrs.evolve(config, default_timeout=0.2), scenario)
    assert isinstance(timed_out, sc.Timeout) and timed_out.hard_timeout == 0.2 and ok.values == [55]


def test_without_any_timeout_a_call_is_an_invalid_request(config) -> None:
    async def scenario(pool):
        with pytest.raises(sc.InvalidRequest) as info:
            await pool.execute(req("fibonacci", 10))
        return str(info.value)

    assert run(config, scenario) == (
        "no hard timeout: pass hard_timeout= to the call or set PoolConfig.default_timeout"
    )


# -- the synchronous pool: submit, map ------------------------------------------------------------


def test_submit_gives_futures_that_as_completed_understands(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        futures = {pool.submit(req("fibonacci", i), 10): i for i in range(12)}
        got = {futures[f]: f.result().values for f in concurrent.futures.as_completed(futures, timeout=30)}
        done, not_done = concurrent.futures.wait([pool.submit(req("fibonacci", 7), 10)], timeout=30)
    assert got == {i: [FIB[i]] for i in range(12)}
    assert not not_done and next(iter(done)).result().values == [13]


def test_cancelling_a_running_future_kills_and_replaces_its_executor(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        running = pool.submit(req("sleep_ms", 5000), 10)
        other = pool.submit(req("sleep_ms", 300), 10)
        wait_until(lambda: pool.stats().busy == 2, "both slots busy")
        ids = pool.executor_ids
        running.cancel()
        after = pool.execute(req("fibonacci", 10), 10)
        assert other.result(timeout=10).executor_id in ids
        assert running.cancelled() and after.values == [55]
        # `after` may have run on the other slot while the replacement was still starting
        wait_until(lambda: None not in pool.executor_ids, "the replacement executor started")
        assert sorted(pool.executor_ids) == sorted([other.result().executor_id, 3])


def test_cancelling_a_queued_future_costs_no_executor(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        holders = [pool.submit(req("sleep_ms", 400), 10) for _ in range(2)]
        wait_until(lambda: pool.stats().busy == 2, "both slots busy")
        queued = [pool.submit(req("sleep_ms", 5000), 10) for _ in range(4)]
        ids = pool.executor_ids
        assert all(f.cancel() for f in queued)
        assert all(isinstance(f.result(timeout=30), sc.Success) for f in holders)
        assert pool.execute(req("fibonacci", 10), 10).values == [55]
        assert pool.executor_ids == ids  # nothing was killed
        assert all(f.cancelled() for f in queued)


def test_a_bad_request_is_the_future_s_error(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        future = pool.submit(req("fibonacci", 10), -1)
        with pytest.raises(sc.InvalidRequest, match="hard_timeout must be a positive number"):
            future.result(timeout=30)


def test_calls_submitted_while_the_pool_closes_all_end(config) -> None:
    """Threads that submit as the pool closes: every future gets an outcome or NotRunning,
    none is left waiting (a call handed to the pool's thread as it stops is refused)."""
    pool = sc.SyncProcessPool(config)
    pool.start()
    futures: list[concurrent.futures.Future[sc.Outcome]] = []
    refused = []

    def submitter() -> None:
        for _ in range(400):
            try:
                futures.append(pool.submit(req("noop"), 10))
            except sc.NotRunning:
                refused.append(1)

    with concurrent.futures.ThreadPoolExecutor(4) as threads:
        running = [threads.submit(submitter) for _ in range(4)]
        wait_until(lambda: len(futures) > 50, "calls submitted")
        pool.close()
        for r in running:
            r.result(timeout=60)
    done, not_done = concurrent.futures.wait(futures, timeout=60)
    assert not not_done
    kinds = {type(f.exception()).__name__ if f.exception() else type(f.result()).__name__ for f in done}
    assert kinds <= {"Success", "NotRunning"} and "Success" in kinds
    assert len(futures) + len(refused) == 1600


def test_map_yields_outcomes_in_request_order(config) -> None:
    requests = [req("sleep_ms", 300), req("fibonacci", 10), req("always_fail"), req("fibonacci", 5)]
    with sc.SyncProcessPool(config) as pool:
        outcomes = list(pool.map(requests, hard_timeout=10))
    assert [type(o) for o in outcomes] == [sc.Success, sc.Success, sc.InTaskFailure, sc.Success]
    assert outcomes[1].values == [55] and outcomes[3].values == [5]


def test_map_reads_requests_as_it_goes_and_stops_early(config) -> None:
    def endless():
        i = 0
        while True:
            yield req("fibonacci", i % 20)
            i += 1

    with sc.SyncProcessPool(config) as pool:
        first = []
        for outcome in pool.map(endless(), hard_timeout=10):
            first.append(outcome.values[0])
            if len(first) == 25:
                break
        assert pool.execute(req("fibonacci", 10), 10).values == [55]
    assert first == [FIB[i % 20] for i in range(25)]


def test_map_raises_a_bad_request_at_its_place(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        outcomes = pool.map([req("fibonacci", 3), sc.ExecuteRequest(package="../x", task="t"), req("fibonacci", 4)], 10)
        assert next(outcomes).values == [2]
        with pytest.raises(sc.InvalidRequest, match="invalid package name"):
            next(outcomes)


def test_async_map_yields_outcomes_in_request_order(config) -> None:
    async def scenario(pool):
        return [o async for o in pool.map([req("sleep_ms", 300), req("fibonacci", 10), req("fibonacci", 6)], 10)]

    outcomes = run(config, scenario)
    assert [o.values for o in outcomes] == [[], [55], [8]]


# -- call: values or an exception, on both pools ---------------------------------------------------

_CALLS = [
    (("fibonacci", 10), None, [55]),
    (("always_fail",), sc.TaskFailed, "ExecutionError: always_fail: intentional failure"),
    (("sleep_ms", 5000), sc.TaskTimedOut, "the task did not finish within its hard timeout of 0.3s"),
    (("always_panic",), sc.ExecutorCrashed, "the executor crashed (signal SIGABRT)"),
]


@pytest.mark.parametrize(("args", "error", "expected"), _CALLS)
def test_sync_call_returns_values_or_raises_the_outcome_error(config, args, error, expected) -> None:
    with sc.SyncProcessPool(config) as pool:
        if error is None:
            assert pool.call(PKG, *args, hard_timeout=0.3) == expected
            return
        with pytest.raises(error) as info:
            pool.call(PKG, *args, hard_timeout=0.3)
    assert str(info.value) == expected and isinstance(info.value, sc.OutcomeError)
    assert isinstance(info.value.outcome, (sc.InTaskFailure, sc.Timeout, sc.ExecutorCrash))


@pytest.mark.parametrize(("args", "error", "expected"), _CALLS)
def test_async_call_returns_values_or_raises_the_outcome_error(config, args, error, expected) -> None:
    async def scenario(pool):
        try:
            return await pool.call(PKG, *args, hard_timeout=0.3)
        except sc.OutcomeError as e:
            return e

    got = run(config, scenario)
    if error is None:
        assert got == expected
    else:
        assert type(got) is error and str(got) == expected


def test_call_uses_the_default_timeout(config) -> None:
    with sc.SyncProcessPool(attrs.evolve(config, default_timeout=0.2)) as pool:
        with pytest.raises(sc.TaskTimedOut, match="hard timeout of 0.2s"):
            pool.call(PKG, "sleep_ms", 5000)
        assert pool.call(PKG, "fibonacci", 12) == [144]


def test_close_while_starting_leaves_no_executor(config) -> None:
    started = []

    class Recorder:
        @sc.hookimpl
        def spider_executor_started(self, pid):
            started.append(pid)

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(Recorder())

    async def main():
        pool = sc.ProcessPool(attrs.evolve(config, slots=2), plugin_manager=pm)
        starting = asyncio.create_task(pool.start())
        await async_wait_until(lambda: len(started) == 2, "both executors spawned", interval=0)  # not yet ready
        await pool.close()
        with pytest.raises(sc.NotRunning, match="closed while it started"):
            await starting
        with pytest.raises(sc.NotRunning, match="the pool is closed"):
            await pool.execute(req("fibonacci", 3), 5)

    asyncio.run(main())
    assert len(started) == 2 and all(not Path(f"/proc/{pid}").exists() for pid in started)
