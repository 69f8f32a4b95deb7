"""The sync pool's direct path: the calling thread drives the executor's pipe itself.

Each test runs the real executor and the real C package, and checks one guarantee of the
async pool again on this path: faults are cleaned up before the call returns, the next call
finds a healthy executor, no answer is read by the wrong caller.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import threading
import time
from pathlib import Path

import attrs
import pytest

import spider_core as sc
from helpers import wait_until
from spider_core.plugin import hookimpl

PKG = "integration_test_tasks"
FIB = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]


def req(task: str, *inputs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task=task, inputs=inputs)


@pytest.fixture
def config(package_dir: Path, tmp_path: Path, start_method: str) -> sc.PoolConfig:
    return sc.PoolConfig(package_dir=package_dir, log_dir=tmp_path / "logs", plugin_autoload=False, start_method=start_method, default_timeout=10)


def gone(pid: int) -> bool:
    """Whether ``pid`` is reaped (or a zombie of someone else)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def protocol_out(pid: int) -> int:
    """The descriptor the executor ``pid`` answers on: the pipe it opened write-only, among
    those it moved high (fd 1 is its stderr)."""
    for name in os.listdir(f"/proc/{pid}/fd"):
        fd = int(name)
        if fd > 2 and os.readlink(f"/proc/{pid}/fd/{fd}").startswith("pipe:"):
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                flags = int(next(line for line in info if line.startswith("flags:")).split()[1], 8)
            if flags & os.O_ACCMODE == os.O_WRONLY:
                return fd
    raise AssertionError(f"executor {pid} has no protocol pipe")


class Exits:
    """Records ``spider_executor_exited``."""

    def __init__(self) -> None:
        self.reasons: list[tuple[int, str]] = []

    @hookimpl
    def spider_executor_exited(self, executor_id: int, pid: int, reason: str) -> None:
        self.reasons.append((executor_id, reason))


def pool_with(config: sc.PoolConfig, plugin: object) -> sc.SyncProcessPool:
    pm = sc.get_plugin_manager(autoload=False)
    pm.register(plugin)
    return sc.SyncProcessPool(config, plugin_manager=pm)


def test_values_failures_and_large_frames_round_trip(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        pid = pool.pid
        assert [pool.call(PKG, "fibonacci", i) for i in range(10)] == [[FIB[i]] for i in range(10)]
        failure = pool.execute(req("always_fail"))
        big = pool.execute(req("sleep_and_echo", ["y" * 1000] * 2000))  # frames past a pipe buffer
        huge = pool.execute(req("big", 3_000_000))
        assert pool.pid == pid  # no fault, no respawn
    assert isinstance(failure, sc.InTaskFailure)
    assert big.values == [["y" * 1000] * 2000]
    assert huge.values == ["x" * 3_000_000]


def test_a_hard_timeout_kills_the_executor_and_the_next_call_gets_a_new_one(config) -> None:
    exits = Exits()
    with pool_with(config, exits) as pool:
        old = pool.pid
        outcome = pool.execute(req("sleep_ms", 5000), hard_timeout=0.2)
        assert isinstance(outcome, sc.Timeout) and outcome.hard_timeout == 0.2
        assert gone(old) and pool.pid not in (None, old)
        assert pool.call(PKG, "fibonacci", 7) == [13]
    assert exits.reasons[0] == (1, "timeout")


@pytest.mark.parametrize(("task", "inputs", "status", "signum"), [
    ("segfault", (), None, signal.SIGSEGV),
    ("exit_with", (3,), 3, None),
])
def test_a_crash_is_an_executor_crash_and_the_executor_is_replaced(config, task, inputs, status, signum) -> None:
    with sc.SyncProcessPool(config) as pool:
        old = pool.pid
        outcome = pool.execute(req(task, *inputs))
        assert pool.call(PKG, "fibonacci", 6) == [8]
        assert pool.pid != old
    assert isinstance(outcome, sc.ExecutorCrash)
    assert (outcome.exit_status, outcome.signal) == (status, signum)


def test_an_executor_killed_while_idle_is_replaced_without_failing_the_next_call(config) -> None:
    exits = Exits()
    with pool_with(config, exits) as pool:
        old = pool.pid
        os.kill(old, signal.SIGKILL)
        wait_until(lambda: gone(old), "the killed executor is gone")
        assert pool.call(PKG, "fibonacci", 8) == [21]
        assert pool.pid != old
    assert exits.reasons[0] == (1, "crash")


def test_a_message_nobody_asked_for_retires_the_executor_before_the_next_call(config) -> None:
    """Bytes on the protocol channel between calls (here written through the executor's own
    stdout) mean the executor cannot be trusted: the next call gets a new one, and its answer."""
    exits = Exits()
    with pool_with(config, exits) as pool:
        assert pool.call(PKG, "fibonacci", 3) == [2]
        old = pool.pid
        with open(f"/proc/{old}/fd/{protocol_out(old)}", "wb") as channel:
            channel.write(b"\x00\x00\x00\x03\x93\x01\xc3")
        assert pool.call(PKG, "fibonacci", 9) == [34]
        assert pool.pid != old
    assert exits.reasons[0] == (1, "crash")


def test_keyboard_interrupt_in_the_caller_kills_and_replaces_the_executor_before_it_propagates(config) -> None:
    exits = Exits()
    with pool_with(config, exits) as pool:
        old = pool.pid
        main = threading.main_thread().ident
        timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))  # Ctrl-C, as a terminal sends it
        timer.start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            pool.execute(req("sleep_ms", 60_000), hard_timeout=120)
        assert time.monotonic() - started < 30  # interrupted, long before the task would end
        assert gone(old)  # killed and reaped before the interrupt reached us
        assert exits.reasons == [(1, "cancelled")]
        assert pool.pid not in (None, old)
        assert pool.call(PKG, "fibonacci", 5) == [5]


def test_more_threads_than_slots_each_get_their_own_answer(config) -> None:
    with sc.SyncProcessPool(attrs.evolve(config, slots=2)) as pool:
        with concurrent.futures.ThreadPoolExecutor(8) as threads:
            n = list(range(400))
            got = list(threads.map(lambda i: pool.call(PKG, "sleep_and_echo", [f"token-{i}"]), n))
        assert got == [[[f"token-{i}"]] for i in n]
        assert len(set(pool.pids)) == 2


def test_direct_calls_and_futures_share_the_executors(config) -> None:
    """submit() and map() run on the pool's thread, execute() in the caller's: they take
    turns on the same executors."""
    with sc.SyncProcessPool(config) as pool:
        pid = pool.pid
        for i in range(20):
            future = pool.submit(req("fibonacci", i % 15))
            assert pool.call(PKG, "fibonacci", (i + 1) % 15) == [FIB[(i + 1) % 15]]
            assert future.result(timeout=10).values == [FIB[i % 15]]
        assert [o.values for o in pool.map(req("fibonacci", i) for i in range(6))] == [[FIB[i]] for i in range(6)]
        assert pool.call(PKG, "fibonacci", 12) == [144]
        assert pool.pid == pid


def test_close_waits_for_a_call_in_progress(config) -> None:
    pool = sc.SyncProcessPool(config)
    pool.start()
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        running = thread.submit(pool.call, PKG, "sleep_ms", 300)
        wait_until(lambda: pool.stats().busy == 1, "the call runs")
        pool.close()
        assert running.result(timeout=10) == []
    with pytest.raises(sc.NotRunning, match="closed"):
        pool.call(PKG, "noop")


def test_recycling_and_the_memory_limit_apply_on_the_direct_path(config) -> None:
    exits = Exits()
    with pool_with(attrs.evolve(config, recycle_after=2, max_executor_rss=200 << 20), exits) as pool:
        first = pool.pid
        assert pool.call(PKG, "noop") == [] and pool.call(PKG, "noop") == []
        second = pool.pid
        held = pool.execute(req("hold_mb", 300))
        assert isinstance(held, sc.Success)
        assert pool.call(PKG, "noop") == []
    assert first != second
    assert [reason for _, reason in exits.reasons[:2]] == ["recycle", "memory"]


def test_task_finished_reports_the_queue_wait_and_the_run(config) -> None:
    seen = []

    class Finished:
        @hookimpl
        def spider_task_finished(self, request, outcome, executor_id, queue_wait, execution_time):
            seen.append((request.task, type(outcome).__name__, executor_id, queue_wait >= 0, execution_time > 0))

    with pool_with(config, Finished()) as pool:
        pool.call(PKG, "noop")
        pool.execute(req("always_fail"))
    assert seen == [("noop", "Success", 1, True, True), ("always_fail", "InTaskFailure", 1, True, True)]


def test_keyboard_interrupt_while_queued_leaves_the_queue_and_the_running_call_alone(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        pid = pool.pid
        with concurrent.futures.ThreadPoolExecutor(1) as thread:
            running = thread.submit(pool.call, PKG, "sleep_ms", 800)
            wait_until(lambda: pool.stats().busy == 1, "the call runs")
            main = threading.main_thread().ident
            timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                pool.call(PKG, "fibonacci", 4)  # waits for the one slot
            assert running.result(timeout=10) == []
        assert pool.call(PKG, "fibonacci", 10) == [55]  # the slot came back
        assert pool.pid == pid


# -- spinning ---------------------------------------------------------------------------------


def test_adaptive_spin_backs_off_after_misses_and_resets_on_a_hit() -> None:
    from spider_core.spin import AdaptiveSpin

    spin = AdaptiveSpin(300)
    assert [spin.budget() for _ in range(3)] == [300_000] * 3  # polls answered: the whole window
    budgets = []
    for _ in range(7):  # every poll missed: 1, 2, 4, ... waits block at once in between
        budget = spin.budget()
        budgets.append(budget)
        if budget:
            spin.answered(False)
    assert budgets == [300_000, 0, 300_000, 0, 0, 300_000, 0]
    for _ in range(20):
        if spin.budget():
            spin.answered(False)
    assert max(spin._skip, spin._backoff) <= AdaptiveSpin.MAX_BACKOFF
    while not spin.budget():
        pass
    spin.answered(True)
    assert [spin.budget() for _ in range(3)] == [300_000] * 3
    assert AdaptiveSpin(0).budget() == 0


def test_adaptive_spin_reads_what_comes_within_its_window_and_reports_it() -> None:
    from spider_core.spin import AdaptiveSpin

    def read(fd: int, into: list[bytes]) -> int:
        data = os.read(fd, 64)
        into.append(data)
        return len(data)

    r, w = os.pipe()
    os.set_blocking(r, False)
    spin, got = AdaptiveSpin(2000), []
    try:
        os.write(w, b"ping")
        assert spin.read(read, r, got) == 4 and got == [b"ping"]  # there: read at once, a hit
        assert spin.read(read, r, got) is None and got == [b"ping"]  # nothing came in 2 ms: a miss
        os.write(w, b"x")
        assert spin.read(read, r, got) is None and got == [b"ping"]  # after a miss: block at once
        assert spin.read(read, r, got) == 1 and got == [b"ping", b"x"]  # then poll again
        assert AdaptiveSpin(0).read(read, r, got) is None
        os.close(w)
        assert spin.read(read, r, got) == 0  # end of input is an answer too
    finally:
        os.close(r)

    def broken(fd: int, into: list[bytes]) -> int:
        raise OSError(5, "Input/output error")

    with pytest.raises(OSError):  # a failed read is the caller's to report
        spin.read(broken, r, got)


def test_a_spinning_sync_pool_answers_and_still_times_out(config) -> None:
    with sc.SyncProcessPool(attrs.evolve(config, spin_us=500, executor_spin_us=500)) as pool:
        assert [pool.call(PKG, "fibonacci", i % 20) for i in range(200)] == [[FIB[i % 20]] for i in range(200)]
        assert pool.call(PKG, "sleep_ms", 5) == []  # longer than the window: blocks after it
        assert isinstance(pool.execute(req("sleep_ms", 2000), hard_timeout=0.0003), sc.Timeout)
        assert pool.call(PKG, "fibonacci", 11) == [89]


def test_an_executor_dead_before_anyone_noticed_costs_the_next_call_nothing(config) -> None:
    """Killed and gone before the pool's loop saw it: the request cannot be written, so it
    goes to a new executor instead of coming back as a crash (both pools)."""

    def kill_and_wait(pid: int) -> None:
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: gone(pid), "the killed executor is gone", interval=0.005)  # blocks the caller's loop:
        # nothing notices the exit meanwhile

    async def main():
        async with sc.ProcessPool(config) as pool:
            outcomes = []
            for _ in range(3):
                kill_and_wait(pool.pid)
                outcomes.append(await pool.execute(req("fibonacci", 9)))
            return outcomes, pool.executor_id

    outcomes, last = asyncio.run(main())
    assert [o.values for o in outcomes] == [[34]] * 3 and last == 4
    with sc.SyncProcessPool(config) as pool:
        for _ in range(3):
            kill_and_wait(pool.pid)
            assert pool.call(PKG, "fibonacci", 9) == [34]
        assert pool.executor_id == 4


@pytest.mark.parametrize(("fields", "expected"), [
    ({}, "0"),
    ({"spin_us": 300}, "300"),  # one switch spins both sides
    ({"spin_us": 300, "executor_spin_us": 0}, "0"),
    ({"executor_spin_us": 150}, "150"),
])
def test_the_executor_spins_as_spin_us_unless_told_otherwise(config, fields, expected) -> None:
    with sc.SyncProcessPool(attrs.evolve(config, **fields)) as pool:
        assert pool.call(PKG, "get_env", "SPIDER_EXECUTOR_SPIN_US") == [expected]
