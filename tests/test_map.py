"""``map`` sends several requests to an executor at a time: the guarantees of single calls hold
for each request (real executor, real C package)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import attrs
import pytest

import spider_core as sc
from helpers import dead, tasks_run, wait_until
from spider_core.plugin import hookimpl
from spider_core.pool.call import DEPTH

PKG = "integration_test_tasks"


def req(task: str, *inputs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task=task, inputs=inputs)


def echo(token: str) -> sc.ExecuteRequest:
    return req("sleep_and_echo", [token])


@pytest.fixture
def config(package_dir: Path, tmp_path: Path, start_method: str) -> sc.PoolConfig:
    return sc.PoolConfig(
        package_dir=package_dir, log_dir=tmp_path / "logs", slots=2, plugin_autoload=False, start_method=start_method,
        default_timeout=10, executor_log_level="debug",
    )


def amap(config: sc.PoolConfig, requests, hard_timeout=None, plugin=None) -> list[sc.Outcome]:
    async def main():
        pm = None
        if plugin is not None:
            pm = sc.get_plugin_manager(autoload=False)
            pm.register(plugin)
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            return [o async for o in pool.map(requests, hard_timeout)]

    return asyncio.run(main())


def test_a_short_map_spreads_its_requests_over_the_slots(config) -> None:
    """Fewer requests than a slot's share: each goes to a slot of its own, so two slow tasks on
    two slots run at once (they used to go to the first slot in one batch, one after the other)."""
    outcomes = amap(config, [req("sleep_ms", 300), req("sleep_ms", 300)])
    assert all(isinstance(o, sc.Success) for o in outcomes)
    assert {o.executor_id for o in outcomes} == {1, 2}


@pytest.mark.parametrize("fault", ["segfault", "always_panic", "exit_with"])
def test_a_crash_in_a_batch_replaces_the_executor_and_the_rest_run_once(config, fault) -> None:
    tokens = [f"token-{i}" for i in range(3 * DEPTH)]
    requests = [echo(t) for t in tokens]
    requests[5] = req(fault, 1) if fault == "exit_with" else req(fault)
    outcomes = amap(config, requests)
    assert isinstance(outcomes[5], sc.ExecutorCrash)
    assert [o.values for i, o in enumerate(outcomes) if i != 5] == [[[t]] for i, t in enumerate(tokens) if i != 5]
    assert tasks_run(config.log_dir, "sleep_and_echo") == len(tokens) - 1  # none ran twice


def test_answers_that_came_before_a_crash_count_and_are_not_run_again(config) -> None:
    """The lane is held up (here by a slow hook) while its executor answers the next requests
    and then crashes: the answers it sent still count, and only the requests after the crash
    run again."""
    class SlowFirst:
        calls = 0

        @hookimpl
        def spider_task_finished(self, pool):
            SlowFirst.calls += 1
            if SlowFirst.calls == 1:
                pid = pool.stats().executors[0].pid
                wait_until(lambda: dead(pid), "the executor ran on and crashed")  # blocks the loop meanwhile

    requests = [echo(f"t{i}") for i in range(4)] + [req("segfault")] + [echo(f"t{i}") for i in range(5, 10)]
    outcomes = amap(attrs.evolve(config, slots=1), requests, plugin=SlowFirst())
    assert isinstance(outcomes[4], sc.ExecutorCrash)
    assert [o.values for i, o in enumerate(outcomes) if i != 4] == [[[f"t{i}"]] for i in range(10) if i != 4]
    assert tasks_run(config.log_dir, "sleep_and_echo") == 9  # none ran twice


def test_a_timeout_in_a_batch_kills_the_executor_and_the_rest_run_once(config) -> None:
    tokens = [f"t{i}" for i in range(2 * DEPTH)]
    requests = [echo(t) for t in tokens]
    requests[3] = req("sleep_ms", 5000)
    outcomes = amap(config, requests, hard_timeout=0.5)
    assert isinstance(outcomes[3], sc.Timeout) and outcomes[3].hard_timeout == 0.5
    assert [o.values for i, o in enumerate(outcomes) if i != 3] == [[[t]] for i, t in enumerate(tokens) if i != 3]
    assert tasks_run(config.log_dir, "sleep_and_echo") == len(tokens) - 1


def test_each_request_s_hard_timeout_starts_when_the_executor_starts_it(config) -> None:
    """Eight 150 ms tasks queued on one executor take 1.2 s together; none of them times out
    at 0.5 s, since each one's clock starts when the one before it ends."""
    outcomes = amap(attrs.evolve(config, slots=1), [req("sleep_ms", 150)] * 8, hard_timeout=0.5)
    assert all(isinstance(o, sc.Success) for o in outcomes), outcomes


def test_task_failures_stay_in_the_batch(config) -> None:
    requests = [req("always_fail") if i % 3 == 0 else req("fibonacci", i) for i in range(40)]
    outcomes = amap(config, requests)
    assert [type(o) for o in outcomes] == [sc.InTaskFailure if i % 3 == 0 else sc.Success for i in range(40)]
    assert len({o.executor_id for o in outcomes}) == 2  # both slots, no executor replaced


def test_recycling_comes_between_batches(config) -> None:
    exits = []

    class Exits:
        @hookimpl
        def spider_executor_exited(self, executor_id, reason):
            exits.append(reason)

    outcomes = amap(attrs.evolve(config, slots=1, recycle_after=5), [echo(str(i)) for i in range(23)], plugin=Exits())
    assert [o.values for o in outcomes] == [[[str(i)]] for i in range(23)]
    assert exits[:4] == ["recycle"] * 4
    assert tasks_run(config.log_dir, "sleep_and_echo") == 23


def test_task_finished_fires_once_per_request(config) -> None:
    seen = []

    class Finished:
        @hookimpl
        def spider_task_finished(self, request, outcome, queue_wait, execution_time):
            seen.append((request.inputs[0][0], queue_wait >= 0, execution_time >= 0))

    amap(config, [echo(str(i)) for i in range(50)], plugin=Finished())
    assert sorted(seen) == sorted((str(i), True, True) for i in range(50))


def test_a_caller_of_execute_keeps_its_place_while_a_long_map_runs(config) -> None:
    async def main():
        async with sc.ProcessPool(attrs.evolve(config, slots=1, executor_log_level="info")) as pool:
            yielded = 0
            going = asyncio.Event()

            async def consume():
                nonlocal yielded
                async for _ in pool.map(req("noop") for _ in range(3000)):
                    yielded += 1
                    going.set()

            mapping = asyncio.create_task(consume())
            await going.wait()
            alone = await pool.execute(req("fibonacci", 10))
            at = yielded
            await mapping
            return alone, at, yielded

    alone, at, total = asyncio.run(main())
    assert alone.values == [55] and at < total == 3000


def test_leaving_an_async_map_early_kills_what_runs_and_the_pool_goes_on(config) -> None:
    async def main():
        async with sc.ProcessPool(config) as pool:
            first = []
            async with contextlib.aclosing(pool.map(req("sleep_ms", 200) for _ in range(100))) as outcomes:
                async for outcome in outcomes:
                    first.append(outcome)
                    break
            ids = pool.executor_ids  # aclose() returns once the running requests are killed
            return first, await pool.execute(req("fibonacci", 12)), ids

    first, after, ids = asyncio.run(main())
    assert isinstance(first[0], sc.Success) and after.values == [144]
    assert all(i is not None and i > 2 for i in ids), ids  # both executors were replaced


def test_sync_map_reads_no_further_ahead_than_its_window(config) -> None:
    read = 0

    def endless():
        nonlocal read
        while True:
            read += 1
            yield req("noop")

    with sc.SyncProcessPool(config) as pool:
        outcomes = pool.map(endless())
        next(outcomes)
        threading.Event().wait(0.3)  # the pool's thread fills what it may
        ahead = read
        outcomes.close()
        assert pool.call(PKG, "fibonacci", 7) == [13]
    # the lanes' window, the handoff's buffer, and the chunk the caller took
    window = 2 * DEPTH * config.slots + 2 * 64 * config.slots
    assert 1 < ahead <= window + 1


def test_sync_map_raises_a_bad_request_at_its_place_and_an_iterable_s_error(config) -> None:
    def broken():
        yield req("fibonacci", 3)
        raise ValueError("no more requests")

    with sc.SyncProcessPool(config) as pool:
        outcomes = pool.map([req("fibonacci", 3), sc.ExecuteRequest(package="../x", task="t")])
        assert next(outcomes).values == [2]
        with pytest.raises(sc.InvalidRequest, match="invalid package name"):
            next(outcomes)
        got = pool.map(broken())
        assert next(got).values == [2]
        with pytest.raises(ValueError, match="no more requests"):
            next(got)


def test_outcomes_come_as_each_request_ends_not_per_batch(config) -> None:
    finished = []

    class Count:
        @hookimpl
        def spider_task_finished(self, request):
            finished.append(request.task)

    async def main():
        pm = sc.get_plugin_manager(autoload=False)
        pm.register(Count())
        async with sc.ProcessPool(attrs.evolve(config, slots=1), plugin_manager=pm) as pool:
            async with contextlib.aclosing(pool.map([req("sleep_ms", 300)] * 4)) as outcomes:
                async for outcome in outcomes:
                    return outcome, len(finished)

    first, ended = asyncio.run(main())
    assert isinstance(first, sc.Success) and ended < 4  # the other three of its batch still ran
