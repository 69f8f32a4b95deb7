"""ProcessPool against the real executor and the real C package."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import attrs
import pytest

import spider_core as sc
from helpers import async_wait_until, callers_waiting, dead, wait_until
from spider_core.tdl import (
    IncompatibleVersion,
    InvalidLibrary,
    SerializedTaskOutputs,
    TaskError,
    TaskId,
    TdlErrorKind,
    encode_values,
)

PKG = "integration_test_tasks"


def req(task: str, *inputs: object, **kwargs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task=task, inputs=inputs, **kwargs)


@pytest.fixture
def config(package_dir: Path, tmp_path: Path, start_method: str) -> sc.PoolConfig:
    return sc.PoolConfig(
        package_dir=package_dir, log_dir=tmp_path / "logs", em_id="em-1", plugin_autoload=False, start_method=start_method
    )


def run(coro):
    return asyncio.run(coro)


def pool_run(config: sc.PoolConfig, scenario):
    """Run ``scenario(pool)`` inside ``async with ProcessPool(config)``."""

    async def main():
        async with sc.ProcessPool(config) as pool:
            return await scenario(pool)

    return run(main())


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


# -- spider's four pool tests ---------------------------------------------------------------


def test_fibonacci_succeeds(config) -> None:
    async def scenario(pool):
        return await pool.execute(req("fibonacci", 10), hard_timeout=5)

    outcome = pool_run(config, scenario)
    assert isinstance(outcome, sc.Success)
    assert outcome.values == [55]
    assert outcome.outputs == encode_values([55])
    assert outcome.executor_id == 1


def test_always_fail_reports_the_task_error(config) -> None:
    async def scenario(pool):
        return await pool.execute(req("always_fail"), hard_timeout=5)

    outcome = pool_run(config, scenario)
    assert isinstance(outcome, sc.InTaskFailure)
    assert isinstance(outcome.error, TaskError)
    assert outcome.error.error.kind is TdlErrorKind.ExecutionError and "always_fail" in outcome.error.error.message


@pytest.mark.slow
def test_always_panic_is_a_crash_and_the_next_call_succeeds(config) -> None:
    async def scenario(pool):
        first = pool.executor_id
        crash = await pool.execute(req("always_panic"), hard_timeout=5)
        after = await pool.execute(req("fibonacci", 10), hard_timeout=5)
        return first, crash, after, pool.executor_id

    first, crash, after, now = pool_run(config, scenario)
    assert crash == sc.ExecutorCrash(exit_status=None, signal=signal.SIGABRT, executor_id=first)
    assert after.values == [55] and now == first + 1


@pytest.mark.slow
def test_hard_timeout_kills_and_the_next_call_succeeds(config) -> None:
    async def scenario(pool):
        started = time.monotonic()
        timeout = await pool.execute(req("fibonacci", 60), hard_timeout=0.2)
        elapsed = time.monotonic() - started
        after = await pool.execute(req("fibonacci", 10), hard_timeout=5)
        return timeout, elapsed, after

    timeout, elapsed, after = pool_run(config, scenario)
    assert timeout == sc.Timeout(hard_timeout=0.2, executor_id=1)
    assert elapsed < 60  # fib(60) runs for days: the executor was really killed
    assert after.values == [55] and after.executor_id == 2


# -- more outcomes ---------------------------------------------------------------------------


def test_commit_task(config) -> None:
    def commit(values):
        raw = SerializedTaskOutputs.from_frame(encode_values(values)).raw
        return req("assert_outputs_sum_zero", job_id=7, task_id=TaskId.COMMIT, task_graph_outputs=raw)

    async def scenario(pool):
        return await pool.execute(commit([5, -5]), 5), await pool.execute(commit([5, -4]), 5)

    good, bad = pool_run(config, scenario)
    assert isinstance(good, sc.Success) and good.values == []
    assert isinstance(bad, sc.InTaskFailure) and bad.error.error.kind is TdlErrorKind.ExecutionError


@pytest.mark.slow
def test_segfault_reports_sigsegv(config) -> None:
    async def scenario(pool):
        return await pool.execute(req("segfault"), 5), await pool.execute(req("fibonacci", 3), 5)

    crash, after = pool_run(config, scenario)
    assert (crash.exit_status, crash.signal) == (None, signal.SIGSEGV)
    assert after.values == [2]


def test_exit_reports_the_status(config) -> None:
    async def scenario(pool):
        return await pool.execute(req("exit_with", 7), 5)

    assert pool_run(config, scenario) == sc.ExecutorCrash(exit_status=7, signal=None, executor_id=1)


def test_missing_package_is_an_in_task_failure(config) -> None:
    async def scenario(pool):
        return await pool.execute(sc.ExecuteRequest(package="absent", task="t"), 5)

    outcome = pool_run(config, scenario)
    assert isinstance(outcome, sc.InTaskFailure) and isinstance(outcome.error, InvalidLibrary)


@pytest.mark.slow
def test_incompatible_package_through_the_pool(config, tmp_path: Path) -> None:
    from helpers import TASK_PACKAGES

    sc.build_package(TASK_PACKAGES / PKG, tmp_path / "v2", cflags=["-DSPIDER_TDL_VERSION_MINOR=2"])

    async def scenario(pool):
        return await pool.execute(req("fibonacci", 1), 5)

    outcome = pool_run(sc.PoolConfig(package_dir=tmp_path / "v2", plugin_autoload=False), scenario)
    assert isinstance(outcome.error, IncompatibleVersion)


@pytest.mark.slow
def test_stray_stdout_does_not_corrupt_the_protocol(config) -> None:
    async def scenario(pool):
        return [await pool.execute(req("print_to_stdout"), 5), await pool.execute(req("fibonacci", 10), 5)], pool.log_path

    (printed, fib), log = pool_run(config, scenario)
    assert isinstance(printed, sc.Success) and fib.values == [55]
    assert "hello from a task" in log.read_text()


@pytest.mark.slow
def test_four_megabyte_result(config) -> None:
    async def scenario(pool):
        return await pool.execute(req("big", 4_000_000), 10)

    outcome = pool_run(config, scenario)
    assert outcome.values == ["x" * 4_000_000]


def test_four_megabyte_input(config) -> None:
    strings = ["y" * 1000] * 4000

    async def scenario(pool):
        return await pool.execute(req("sleep_and_echo", strings), 10)

    assert pool_run(config, scenario).values == [strings]


# -- concurrency and cancellation ------------------------------------------------------------


def test_two_hundred_concurrent_callers_get_their_own_results(config) -> None:
    fib = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]

    async def scenario(pool):
        return await asyncio.gather(*(pool.execute(req("fibonacci", i % 20), 30) for i in range(200)))

    outcomes = pool_run(config, scenario)
    assert [o.values for o in outcomes] == [[fib[i % 20]] for i in range(200)]


@pytest.mark.slow
def test_cancelled_call_never_leaks_its_answer(config) -> None:
    async def scenario(pool):
        slow = asyncio.create_task(pool.execute(req("sleep_ms", 300), 5))
        queued = [asyncio.create_task(pool.execute(req("fibonacci", i), 5)) for i in (5, 6)]
        await async_wait_until(lambda: (pool.stats().busy, callers_waiting(pool)) == (1, 2), "two callers wait behind")
        first = pool.executor_id
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        results = [await t for t in queued]
        await asyncio.sleep(0.4)  # time itself: the cancelled task would have answered by now
        later = await pool.execute(req("fibonacci", 7), 5)
        return first, results, later

    first, results, later = pool_run(config, scenario)
    assert [r.values for r in results] == [[5], [8]]
    assert all(r.executor_id == first + 1 for r in results)
    assert later.values == [13]


@pytest.mark.slow
def test_cancellation_through_wait_for(config) -> None:
    async def scenario(pool):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.execute(req("fibonacci", 45), 30), 0.2)
        return await pool.execute(req("fibonacci", 10), 5)

    assert pool_run(config, scenario).values == [55]


# -- logs and environment --------------------------------------------------------------------


@pytest.mark.slow
def test_per_spawn_log_files_with_increasing_ids(config) -> None:
    async def scenario(pool):
        paths = [pool.log_path]
        for _ in range(2):
            await pool.execute(req("always_panic"), 5)
            paths.append(pool.log_path)
        return paths

    paths = pool_run(config, scenario)
    assert [p.name for p in paths] == ["em-1-1.log", "em-1-2.log", "em-1-3.log"]
    assert all(p.parent == config.log_dir for p in paths)
    assert '"event": "start"' in paths[0].read_text()
    first = paths[0].read_text()
    assert "always_panic: intentional panic" in first  # the task's own stderr, captured
    assert '"event": "start"' not in first.split("always_panic: intentional panic")[1]  # nothing after the crash


def test_log_files_are_appended_to(config) -> None:
    config.log_dir.mkdir(parents=True)
    (config.log_dir / "em-1-1.log").write_text("earlier line\n")

    async def scenario(pool):
        await pool.execute(req("fibonacci", 1), 5)

    pool_run(config, scenario)
    text = (config.log_dir / "em-1-1.log").read_text()
    assert text.startswith("earlier line\n") and '"event": "start"' in text


def test_long_log_lines_are_dropped_and_capture_resumes(package_dir: Path, tmp_path: Path, caplog) -> None:
    config = sc.PoolConfig(
        package_dir=package_dir, log_dir=tmp_path, max_log_line_bytes=1000, executor_log_level="debug", plugin_autoload=False
    )

    async def scenario(pool):
        await pool.execute(req("t" * 5000), 5)  # its "task done" line is over 5000 bytes
        await pool.execute(req("fibonacci", 3), 5)
        return pool.log_path

    with caplog.at_level(logging.WARNING, logger="spider_core.pool"):
        log = pool_run(config, scenario)
    lines = log.read_text().splitlines()
    assert all(len(line.encode()) <= 1000 for line in lines)
    assert any("dropped a log line of" in line for line in lines)
    assert any('"task": "fibonacci"' in line for line in lines)  # capture resumed
    assert any("dropped a log line" in r.getMessage() for r in caplog.records)


def test_log_dir_none_forwards_lines_to_logging(package_dir: Path, caplog) -> None:
    config = sc.PoolConfig(package_dir=package_dir, log_dir=None, plugin_autoload=False)

    async def scenario(pool):
        await pool.execute(req("print_to_stdout"), 5)
        return pool.log_path

    with caplog.at_level(logging.INFO, logger="spider_core.executor.log"):
        assert pool_run(config, scenario) is None
    records = [r for r in caplog.records if r.name == "spider_core.executor.log"]
    assert any("hello from a task" in r.getMessage() for r in records)
    assert {r.executor_id for r in records} == {1}


@pytest.mark.parametrize("configured", [False, True], ids=["embedded", "logging-configured"])
def test_a_handled_crash_prints_nothing_unless_the_application_configures_logging(
    package_dir: Path, configured: bool
) -> None:
    """The library's logger has a NullHandler: Python's last-resort handler does not print its
    warnings to an application's stderr, and an application that configures logging gets them."""
    script = textwrap.dedent(f"""
        import logging
        from pathlib import Path
        import spider_core as sc
        if {configured}:
            logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        with sc.SyncProcessPool(sc.PoolConfig(package_dir=Path({str(package_dir)!r}))) as pool:
            print(type(pool.execute(sc.ExecuteRequest(package={PKG!r}, task="segfault"), 5)).__name__)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout == "ExecutorCrash\n"
    if configured:
        assert re.search(r"^WARNING spider_core\.pool: executor 1 \(pid \d+\) crashed: ", done.stderr, flags=re.M)
    else:
        assert done.stderr == ""


def test_unwritable_log_dir_falls_back_to_logging(package_dir: Path, tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    config = sc.PoolConfig(package_dir=package_dir, log_dir=blocker / "logs", plugin_autoload=False)

    async def scenario(pool):
        return await pool.execute(req("fibonacci", 10), 5)

    with caplog.at_level(logging.WARNING):
        assert pool_run(config, scenario).values == [55]
    assert any("cannot write executor log" in r.getMessage() for r in caplog.records)


def test_inherited_env(package_dir: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("SPIDER_TEST_FOO", "foo-value")
    monkeypatch.setenv("SPIDER_TEST_NOT_INHERITED", "secret")
    monkeypatch.delenv("SPIDER_TEST_MISSING", raising=False)
    config = sc.PoolConfig(
        package_dir=package_dir, inherited_env=("SPIDER_TEST_FOO", "SPIDER_TEST_MISSING"), plugin_autoload=False
    )

    async def scenario(pool):
        names = ["SPIDER_TEST_FOO", "SPIDER_TEST_NOT_INHERITED", "SPIDER_TEST_MISSING", "SPIDER_TDL_PACKAGE_DIR"]
        return [(await pool.execute(req("get_env", n), 5)).values[0] for n in names]

    with caplog.at_level(logging.WARNING, logger="spider_core.pool"):
        values = pool_run(config, scenario)
    assert values == ["foo-value", None, None, str(package_dir)]
    assert any("SPIDER_TEST_MISSING is not set" in r.getMessage() for r in caplog.records)


# -- spawning and respawning -----------------------------------------------------------------


def test_executor_command_that_cannot_start(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, executor_command=("/nonexistent/python",), plugin_autoload=False)
    with pytest.raises(sc.ExecutorCreationFailure, match="cannot start executor command '/nonexistent/python'"):
        pool_run(config, lambda pool: None)


def test_executor_that_exits_before_ready(package_dir: Path) -> None:
    command = (sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)")
    config = sc.PoolConfig(package_dir=package_dir, executor_command=command, plugin_autoload=False)
    with pytest.raises(sc.ExecutorCreationFailure, match=r"failed before it was ready.*exit status 3.*boom"):
        pool_run(config, lambda pool: None)


@pytest.mark.slow
def test_executor_that_never_becomes_ready(package_dir: Path) -> None:
    command = (sys.executable, "-c", "import time; time.sleep(60)")
    config = sc.PoolConfig(package_dir=package_dir, executor_command=command, spawn_timeout=0.3, plugin_autoload=False)
    with pytest.raises(sc.ExecutorCreationFailure, match="did not become ready within 0.3s"):
        pool_run(config, lambda pool: None)


@pytest.mark.slow
def test_failing_respawn_gives_not_running_then_recovers(package_dir: Path, tmp_path: Path) -> None:
    flag = tmp_path / "fail-spawns"
    wrapper = tmp_path / "executor.py"
    wrapper.write_text(textwrap.dedent(f"""
        import os, sys
        if os.path.exists({str(flag)!r}):
            sys.exit(9)
        os.execv(sys.executable, [sys.executable, "-m", "spider_core.executor"])
    """))
    config = sc.PoolConfig(
        package_dir=package_dir,
        executor_command=(sys.executable, str(wrapper)),
        backoff_initial=0.2,
        backoff_max=0.5,
        max_spawn_failures=2,
        plugin_autoload=False,
    )

    async def scenario(pool):
        flag.touch()
        crash = await pool.execute(req("always_panic"), 5)  # the respawn after it fails
        errors = []
        for _ in range(3):
            try:
                await pool.execute(req("fibonacci", 1), 5)
            except sc.InternalError as e:
                errors.append(type(e).__name__)
            await asyncio.sleep(0.25)  # time itself: the back-off is what is tested
        flag.unlink()
        await asyncio.sleep(0.6)  # time itself: past the longest back-off
        return crash, errors, await pool.execute(req("fibonacci", 10), 5)

    crash, errors, recovered = pool_run(config, scenario)
    assert isinstance(crash, sc.ExecutorCrash)
    assert "NotRunning" in errors and set(errors) <= {"NotRunning", "ExecutorCreationFailure"}
    assert recovered.values == [55]


@pytest.mark.slow
def test_recycling_after_n_tasks(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, recycle_after=2, plugin_autoload=False)

    async def scenario(pool):
        return [(await pool.execute(req("fibonacci", 1), 5)).executor_id for _ in range(5)]

    assert pool_run(config, scenario) == [1, 1, 2, 2, 3]


@pytest.mark.slow
def test_executor_that_dies_while_idle_is_replaced(config) -> None:
    async def scenario(pool):
        pid = pool.pid
        os.kill(pid, signal.SIGKILL)
        await async_wait_until(lambda: dead(pid), "the idle executor died")
        return await pool.execute(req("fibonacci", 10), 5)

    outcome = pool_run(config, scenario)
    assert outcome.values == [55] and outcome.executor_id == 2


@pytest.mark.slow
def test_hang_in_package_init_is_a_timeout(package_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPIDER_TEST_TDL_INIT_SHOULD_HANG", "1")
    config = sc.PoolConfig(package_dir=package_dir, inherited_env=("SPIDER_TEST_TDL_INIT_SHOULD_HANG",), plugin_autoload=False)

    async def scenario(pool):
        first = await pool.execute(req("fibonacci", 1), 0.3)  # its successor inherits the variable too
        monkeypatch.delenv("SPIDER_TEST_TDL_INIT_SHOULD_HANG")
        second = await pool.execute(req("fibonacci", 1), 0.3)
        return first, second, await pool.execute(req("fibonacci", 10), 5)

    first, second, third = pool_run(config, scenario)
    assert isinstance(first, sc.Timeout) and isinstance(second, sc.Timeout)
    assert third.values == [55]


# -- protocol violations by the executor ------------------------------------------------------

FAKE_EXECUTOR = """
import os, sys, msgpack, struct
MODE = {mode!r}
def send(obj):
    body = msgpack.packb(obj)
    os.write(1, struct.pack(">I", len(body)) + body)
send(["Ready", os.getpid(), "0.1.0"])
buf = b""
while True:
    data = os.read(0, 65536)
    if not data:
        sys.exit(0)
    buf += data
    if len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
        continue
    size = struct.unpack(">I", buf[:4])[0]
    request = msgpack.unpackb(buf[4:4 + size]); buf = buf[4 + size:]
    if MODE == "wrong-seq":
        send(["Result", request[1] + 1, True, b"\\0\\0\\0\\0", 1])  # request[1]: its seq
    elif MODE == "garbage":
        os.write(1, b"\\x00\\x00\\x00\\x03\\xc1\\xc1\\xc1")
    elif MODE == "oversized":
        os.write(1, b"\\x7f\\xff\\xff\\xff")
    elif MODE == "not-a-result":
        send(["Ready", 1, "0.1.0"])
    elif MODE == "bad-error":
        send(["Result", request[1], False, b"\\xc1", 1])
"""


VIOLATIONS = {
    "wrong-seq": "expected the result of request 1, got seq 2",
    "garbage": "the executor sent an undecodable frame: frame of 3 bytes is not a msgpack message: ",
    "oversized": "the executor sent an undecodable frame: frame of 2147483647 bytes exceeds the maximum frame size "
                 "of 67108864 bytes",
    "not-a-result": "expected the result of request 1, got Ready",
    "bad-error": "the executor sent an undecodable error: ExecutorError is not valid msgpack: ",
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", list(VIOLATIONS))
def test_protocol_violations_are_crashes_that_say_why(mode: str, package_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The outcome's reason names the violation, and it comes as soon as the violation is read:
    the executor, alive, is not given the grace a dying one gets to report its exit status."""
    from spider_core.pool import call

    monkeypatch.setattr(call, "EXIT_GRACE", 3600.0)
    script = tmp_path / "fake_executor.py"
    script.write_text(FAKE_EXECUTOR.format(mode=mode))
    config = sc.PoolConfig(package_dir=package_dir, executor_command=(sys.executable, str(script)), plugin_autoload=False)

    async def scenario(pool):
        return await asyncio.wait_for(pool.execute(req("fibonacci", 1), 5), 60), pool.executor_id

    crash, now = pool_run(config, scenario)
    assert crash == sc.ExecutorCrash(exit_status=None, signal=signal.SIGKILL, executor_id=1, reason=VIOLATIONS[mode])
    assert now == 2
    with pytest.raises(sc.ExecutorCrashed) as info:
        crash.unwrap()
    assert str(info.value) == f"the executor broke the protocol and was killed: {VIOLATIONS[mode]}"


# -- bad requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "timeout", "error"),
    [
        (sc.ExecuteRequest(package="../etc", task="t"), 5, sc.InvalidRequest),
        (sc.ExecuteRequest(package="", task="t"), 5, sc.InvalidRequest),
        (sc.ExecuteRequest(package=PKG, task=""), 5, sc.InvalidRequest),
        (req("fibonacci", object()), 5, sc.EncodeTaskInputs),
        (req("fibonacci", 2**70), 5, sc.EncodeTaskInputs),
        (req("assert_outputs_sum_zero", task_id=TaskId.COMMIT), 5, sc.BuildTaskContext),
        (req("fibonacci", 1, task_graph_outputs=b"\0"), 5, sc.BuildTaskContext),
        (req("fibonacci", 1, job_id=-1), 5, sc.BuildTaskContext),
        (req("fibonacci", 1), 0, sc.InvalidRequest),
        (req("fibonacci", 1), float("nan"), sc.InvalidRequest),
        ("not a request", 5, sc.InvalidRequest),
    ],
)
def test_bad_requests_are_clear_errors(config, request_, timeout, error) -> None:
    async def scenario(pool):
        with pytest.raises(error) as info:
            await pool.execute(request_, timeout)
        assert "\n" not in str(info.value)
        return await pool.execute(req("fibonacci", 10), 5)  # the pool is unaffected

    assert pool_run(config, scenario).values == [55]


def test_timeouts_checked_once_are_still_checked_when_they_change() -> None:
    """The encoder skips the check of the timeouts it checked last (the same objects): a new
    bad value after good ones is still refused, and a new soft timeout is converted anew."""
    from spider_core.pool.requests import RequestEncoder

    encoder, request = RequestEncoder(), req("fibonacci", 1)
    hard, soft = 5.0, 0.25
    assert encoder.prepare(request, hard, soft).soft_timeout_us == 250_000
    assert encoder.prepare(request, hard, soft).soft_timeout_us == 250_000  # the same objects: not checked again
    for bad_hard, bad_soft in [(-1.0, soft), (hard, float("nan")), (True, None), (hard, 0)]:
        with pytest.raises(sc.InvalidRequest, match="must be a positive number of seconds"):
            encoder.prepare(request, bad_hard, bad_soft)
    assert encoder.prepare(request, hard, None).soft_timeout_us == 0
    assert encoder.prepare(request, 1.5, 2.0).soft_timeout_us == 2_000_000


@pytest.mark.parametrize("field", ["job_id", "task_instance_id", "resource_group_id"])
@pytest.mark.parametrize("value", [False, 0.0, -1, 2**64, "0", [0]])
def test_context_ids_must_be_u64_even_when_zero_is_cached(config, field: str, value: object) -> None:
    async def scenario(pool):
        assert (await pool.execute(req("fibonacci", 1), 5)).values == [1]  # caches the context of id 0
        with pytest.raises(sc.BuildTaskContext) as info:
            await pool.execute(req("fibonacci", 1, **{field: value}), 5)
        return str(info.value)

    assert pool_run(config, scenario) == (
        f"cannot build the task context: {field} must be an unsigned 64-bit integer, got {value!r}"
    )


@pytest.mark.parametrize("task_id", [0, "Commit", {"Index": 0}])
def test_task_id_must_be_a_task_id(config, task_id: object) -> None:
    async def scenario(pool):
        with pytest.raises(sc.BuildTaskContext) as info:
            await pool.execute(req("fibonacci", 1, task_id=task_id), 5)
        return str(info.value)

    assert pool_run(config, scenario) == (
        f"task_id must be a TaskId (TaskId.of(i), TaskId.COMMIT or TaskId.CLEANUP), got {task_id!r}"
    )


def test_request_over_the_frame_limit(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, max_frame_size=10_000, plugin_autoload=False)

    async def scenario(pool):
        with pytest.raises(sc.EncodeTaskInputs, match="exceeds the maximum frame size"):
            await pool.execute(req("sleep_and_echo", ["z" * 20_000]), 5)
        return await pool.execute(req("fibonacci", 10), 5)

    assert pool_run(config, scenario).values == [55]


def test_raw_inputs_escape_hatch(config) -> None:
    async def scenario(pool):
        return await pool.execute(sc.ExecuteRequest(package=PKG, task="fibonacci", raw_inputs=encode_values([12])), 5)

    assert pool_run(config, scenario).values == [144]


# -- lifecycle --------------------------------------------------------------------------------


def test_execute_outside_the_lifecycle_is_not_running(config) -> None:
    async def main():
        pool = sc.ProcessPool(config)
        with pytest.raises(sc.NotRunning, match="not started"):
            await pool.execute(req("fibonacci", 1), 5)
        await pool.start()
        await pool.close()
        with pytest.raises(sc.NotRunning, match="closed"):
            await pool.execute(req("fibonacci", 1), 5)
        await pool.close()  # idempotent

    run(main())


@pytest.mark.slow
def test_close_reaps_every_child(config) -> None:
    pids = []

    async def scenario(pool):
        pids.append(pool.pid)
        await pool.execute(req("always_panic"), 5)
        pids.append(pool.pid)
        await pool.execute(req("fibonacci", 45), 0.1)
        pids.append(pool.pid)

    pool_run(config, scenario)
    assert len(set(pids)) == 3 and all(gone(pid) for pid in pids)  # no zombie either: /proc entry gone


@pytest.mark.slow
def test_close_escalates_to_sigkill_for_an_executor_that_ignores_shutdown(package_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "stubborn.py"
    script.write_text(FAKE_EXECUTOR.format(mode="stubborn").replace("sys.exit(0)", "import time; time.sleep(60)")
                      + "\nimport signal\n")
    script.write_text("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" + FAKE_EXECUTOR.format(mode="stubborn"))
    exits = []

    class Recorder:
        @sc.hookimpl
        def spider_executor_exited(self, reason, exit_status, signal):
            exits.append((reason, exit_status, signal))

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(Recorder())
    config = sc.PoolConfig(package_dir=package_dir, executor_command=(sys.executable, str(script)), shutdown_grace=0.2)

    async def main():
        async with sc.ProcessPool(config, plugin_manager=pm):
            pass

    started = time.monotonic()
    run(main())
    assert exits == [("shutdown", None, signal.SIGKILL)]
    assert time.monotonic() - started < 60  # close escalated after its grace, without waiting on


@pytest.mark.slow
def test_killing_the_parent_leaves_no_executor(package_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(f"""
        import asyncio, sys
        import spider_core as sc

        async def main():
            async with sc.ProcessPool(sc.PoolConfig(package_dir={str(package_dir)!r})) as pool:
                print(pool.pid, flush=True)
                await pool.execute(sc.ExecuteRequest(package="integration_test_tasks", task="sleep_ms", inputs=[60000]), 120)

        asyncio.run(main())
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        executor_pid = int(parent.stdout.readline())
        assert not gone(executor_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: dead(executor_pid), "the executor died with its parent")
    finally:
        parent.kill()
        parent.stdout.close()


@pytest.mark.slow
def test_no_descriptor_leak_across_respawns(config) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def scenario(pool):
        await pool.execute(req("always_panic"), 5)
        before = open_fds()
        for _ in range(40):
            await pool.execute(req("always_panic"), 5)
        return before, open_fds()

    before, after = pool_run(config, scenario)
    assert after == before


@pytest.mark.slow
def test_lifecycle_hooks(config) -> None:
    events = []

    class Recorder:
        @sc.hookimpl
        def spider_executor_started(self, executor_id, pid, log_path):
            events.append(("started", executor_id, log_path.name))

        @sc.hookimpl
        def spider_executor_exited(self, executor_id, reason, exit_status, signal):
            events.append(("exited", executor_id, reason, exit_status, signal))

        @sc.hookimpl
        def spider_task_finished(self, request, outcome, executor_id, queue_wait, execution_time):
            assert queue_wait >= 0 and execution_time >= 0
            events.append(("finished", executor_id, request.task, type(outcome).__name__))

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(Recorder())

    async def main():
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            await pool.execute(req("fibonacci", 1), 5)
            await pool.execute(req("fibonacci", 45), 0.1)
            await pool.execute(req("always_panic"), 5)
            task = asyncio.create_task(pool.execute(req("sleep_ms", 5000), 10))
            await async_wait_until(lambda: pool.stats().busy == 1, "the task runs")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())
    assert events == [
        ("started", 1, "em-1-1.log"),
        ("finished", 1, "fibonacci", "Success"),
        ("exited", 1, "timeout", None, signal.SIGKILL),
        ("started", 2, "em-1-2.log"),
        ("finished", 1, "fibonacci", "Timeout"),
        ("exited", 2, "crash", None, signal.SIGABRT),
        ("started", 3, "em-1-3.log"),
        ("finished", 2, "always_panic", "ExecutorCrash"),
        ("exited", 3, "cancelled", None, signal.SIGKILL),
        ("started", 4, "em-1-4.log"),
        ("exited", 4, "shutdown", 0, None),
    ]


def test_recycle_reason(package_dir: Path) -> None:
    reasons = []

    class Recorder:
        @sc.hookimpl
        def spider_executor_exited(self, reason):
            reasons.append(reason)

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(Recorder())
    config = sc.PoolConfig(package_dir=package_dir, recycle_after=1)

    async def main():
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            await pool.execute(req("fibonacci", 1), 5)

    run(main())
    assert reasons == ["recycle", "shutdown"]



@pytest.mark.parametrize(("make", "problem"), [(None, "does not exist"), ("file", "is not a directory")])
def test_start_refuses_a_package_dir_that_is_not_a_directory(tmp_path: Path, make: str | None, problem: str) -> None:
    path = tmp_path / "packages"
    if make == "file":
        path.write_text("")
    pool = sc.ProcessPool(sc.PoolConfig(package_dir=path, plugin_autoload=False, log_dir=tmp_path / "logs"))
    with pytest.raises(sc.ExecutorCreationFailure) as info:
        run(pool.start())
    assert str(info.value) == f"cannot start the pool: its package_dir {path} {problem}"
    assert pool.pids == () and not (tmp_path / "logs").exists()  # no executor was spawned

def test_a_failing_hook_does_not_break_execute(config, caplog) -> None:
    class Broken:
        @sc.hookimpl
        def spider_task_finished(self):
            raise RuntimeError("plugin bug")

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(Broken())

    async def main():
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            return [await pool.execute(req("fibonacci", 10), 5) for _ in range(3)]

    caplog.set_level(logging.DEBUG, logger="spider_core.plugins")
    assert [outcome.values for outcome in run(main())] == [[55]] * 3
    failures = [r for r in caplog.records if "spider_task_finished hook failed" in r.getMessage()]
    assert [r.levelno for r in failures] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert {r.name for r in failures} == {"spider_core.plugins"}
    name = pm.get_name(next(p for p in pm.get_plugins() if isinstance(p, Broken)))
    assert failures[0].getMessage() == (
        f"a spider_task_finished hook failed (plugin {name!r}; logged once per pool): RuntimeError: plugin bug"
    )  # registered by the program, not an installed plugin SPIDER_DISABLE_PLUGINS could block
    assert failures[0].exc_info is not None  # for a handler that shows it (spider -v does)
    assert all(r.exc_info is None for r in failures[1:])


def test_custom_launcher_and_respawn_policy(config) -> None:
    seen = []

    class Launcher:
        @sc.hookimpl
        def spider_launcher(self, config, executor_id, env):
            from spider_core.plugin import LaunchSpec

            seen.append(("launch", executor_id, env["SPIDER_TDL_PACKAGE_DIR"]))
            return LaunchSpec(argv=(sys.executable, "-m", "spider_core.executor"), env={**env, "SPIDER_TEST_FOO": "from-launcher"})

        @sc.hookimpl
        def spider_respawn_decision(self, state):
            from spider_core.plugin import RespawnDecision

            seen.append(("decide", state.reason))
            return RespawnDecision(spawn=state.reason == "start", message="this policy never respawns after a crash")

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(Launcher())

    async def main():
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            env = (await pool.execute(req("get_env", "SPIDER_TEST_FOO"), 5)).values
            await pool.execute(req("always_panic"), 5)
            with pytest.raises(sc.NotRunning, match="never respawns after a crash"):
                await pool.execute(req("fibonacci", 1), 5)
            return env

    assert run(main()) == ["from-launcher"]
    assert seen[:3] == [("decide", "start"), ("launch", 1, str(config.package_dir)), ("decide", "crash")]


class _Raises:
    """A plugin whose first-result hook raises (a plugin's bug), for the hook named ``hook``."""

    def __init__(self, hook: str) -> None:
        def broken(**_: object):
            raise RuntimeError(f"{hook} bug")

        setattr(self, hook, sc.hookimpl(tryfirst=True)(broken))


def _pm_with_broken(hook: str):
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(_Raises(hook), name=f"broken_{hook}")
    return pm


@pytest.mark.parametrize(
    ("hook", "error", "message"),
    [
        ("spider_framing", sc.ExecutorCreationFailure, "the spider_framing hook failed: RuntimeError: spider_framing bug"),
        ("spider_launcher", sc.ExecutorCreationFailure, "the spider_launcher hook failed: RuntimeError: spider_launcher bug"),
        ("spider_respawn_decision", sc.NotRunning,
         "the spider_respawn_decision hook failed: RuntimeError: spider_respawn_decision bug"),
    ],
)
def test_a_raising_pool_hook_is_an_internal_error_naming_it(config, hook: str, error: type, message: str) -> None:
    pm = _pm_with_broken(hook)

    async def main():
        pool = sc.ProcessPool(config, plugin_manager=pm)
        with pytest.raises(error) as info:
            await pool.start()
        await pool.close()
        return str(info.value)

    assert run(main()) == message


def test_a_launcher_that_raises_at_respawn_leaves_the_pool_serving_later_calls(config) -> None:
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    fail = []

    class Flaky:
        @sc.hookimpl(tryfirst=True)
        def spider_launcher(self):
            if fail:
                fail.pop()
                raise OSError("no capacity")

    pm.register(Flaky())

    async def main():
        async with sc.ProcessPool(attrs.evolve(config, backoff_initial=0.01), plugin_manager=pm) as pool:
            fail.append(1)
            crash = await pool.execute(req("always_panic"), 5)  # the respawn after it fails
            assert isinstance(crash, sc.ExecutorCrash)
            assert pool.executor_id is None
            await async_wait_until(lambda: pool.executor_id is not None, "the slot recovered after the back-off")
            return (await pool.execute(req("fibonacci", 10), 5)).values

    assert run(main()) == [55]


# -- the synchronous facade --------------------------------------------------------------------


@pytest.mark.slow
def test_sync_facade(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        assert pool.execute(req("fibonacci", 10), hard_timeout=5).values == [55]
        assert isinstance(pool.execute(req("fibonacci", 45), hard_timeout=0.2), sc.Timeout)
        assert isinstance(pool.execute(req("always_panic"), hard_timeout=5), sc.ExecutorCrash)
        assert pool.execute(req("fibonacci", 11), hard_timeout=5).values == [89]
        pid = pool.pid
    assert gone(pid)
    with pytest.raises(sc.NotRunning):
        pool.execute(req("fibonacci", 1), 5)


def test_spinning_executor_through_the_pool(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, executor_spin_us=300, plugin_autoload=False)

    async def scenario(pool):
        spin = (await pool.execute(req("get_env", "SPIDER_EXECUTOR_SPIN_US"), 5)).values
        return spin, [(await pool.execute(req("fibonacci", i), 5)).values[0] for i in range(10)]

    spin, values = pool_run(config, scenario)
    assert spin == ["300"] and values == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]


# -- standby executor ----------------------------------------------------------------------------


async def wait_for_standby(pool) -> None:
    await async_wait_until(lambda: pool._slots.all[0].standby is not None, "a standby executor became ready")


@pytest.mark.slow
def test_standby_takes_over_after_a_crash_and_a_timeout(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, standby=True, plugin_autoload=False)

    async def scenario(pool):
        await wait_for_standby(pool)
        standby_pid = pool._slots.all[0].standby.pid
        crash = await pool.execute(req("always_panic"), 5)
        took_over = pool.pid
        after = await pool.execute(req("fibonacci", 10), 5)
        await wait_for_standby(pool)
        timeout = await pool.execute(req("fibonacci", 45), 0.2)
        again = await pool.execute(req("fibonacci", 11), 5)
        return standby_pid, took_over, crash, after, timeout, again

    standby_pid, took_over, crash, after, timeout, again = pool_run(config, scenario)
    assert took_over == standby_pid
    assert crash.signal == signal.SIGABRT and after.values == [55] and after.executor_id == 2
    assert isinstance(timeout, sc.Timeout) and again.values == [89]


def test_close_reaps_the_standby_too(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, standby=True, plugin_autoload=False)
    pids = []

    async def scenario(pool):
        await wait_for_standby(pool)
        pids.extend([pool.pid, pool._slots.all[0].standby.pid])

    pool_run(config, scenario)
    assert len(set(pids)) == 2 and all(gone(pid) for pid in pids)


@pytest.mark.slow
def test_dead_standby_is_replaced_by_a_fresh_spawn(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, standby=True, plugin_autoload=False)

    async def scenario(pool):
        await wait_for_standby(pool)
        standby = pool._slots.all[0].standby.pid
        os.kill(standby, signal.SIGKILL)
        await async_wait_until(lambda: dead(standby), "the standby died")
        await pool.execute(req("always_panic"), 5)
        outcome = await pool.execute(req("fibonacci", 10), 5)
        return standby, pool.pid, outcome

    standby, now, outcome = pool_run(config, scenario)
    assert now != standby and outcome.values == [55] and gone(standby)


def test_close_while_the_standby_is_starting(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, standby=True, plugin_autoload=False)

    async def main():
        pool = sc.ProcessPool(config)
        await pool.start()  # the standby is still starting
        pid = pool.pid
        await pool.close()
        return pid

    pid = run(main())
    assert gone(pid)
    children = subprocess.run(["pgrep", "-P", str(os.getpid())], capture_output=True, text=True).stdout.split()
    assert all("spider_core.executor" not in Path(f"/proc/{c}/cmdline").read_text() for c in children if Path(f"/proc/{c}").exists())


@pytest.mark.slow
def test_spinning_pool_serves_every_outcome(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, spin_us=2000, plugin_autoload=False)

    async def scenario(pool):
        quick = await pool.execute(req("fibonacci", 10), 5)  # answered while spinning
        slow = await pool.execute(req("sleep_ms", 50), 5)  # answered after the spin gave up
        timeout = await pool.execute(req("sleep_ms", 5000), 0.001)  # deadline inside the spin budget
        crash = await pool.execute(req("always_panic"), 5)
        big = await pool.execute(req("big", 1_000_000), 5)
        return quick, slow, timeout, crash, big

    quick, slow, timeout, crash, big = pool_run(config, scenario)
    assert quick.values == [55] and isinstance(slow, sc.Success)
    assert isinstance(timeout, sc.Timeout) and crash.signal == signal.SIGABRT
    assert big.values == ["x" * 1_000_000]


@pytest.mark.slow
def test_a_short_deadline_never_cuts_a_later_longer_call(config) -> None:
    async def scenario(pool):
        quick = await pool.execute(req("fibonacci", 5), 0.1)  # arms the loop timer 0.1 s ahead
        slow = await pool.execute(req("sleep_ms", 400), 5)  # still running when that timer fires
        late = await pool.execute(req("sleep_ms", 1000), 0.2)  # an earlier deadline than the armed one
        return quick, slow, late

    quick, slow, late = pool_run(config, scenario)
    assert quick.values == [5] and isinstance(slow, sc.Success) and isinstance(late, sc.Timeout)


# -- found by review: cleanup that must survive impatient callers ------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def executor_children() -> list[int]:
    """The executor processes below this one: its children and, with a fork server (itself
    an executor command), the server's children."""
    parents, commands = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                commands[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    ours = {os.getpid()}
    while True:
        more = {pid for pid, parent in parents.items() if parent in ours and b"spider_core.executor" in commands[pid]}
        if more <= ours:
            return sorted(ours - {os.getpid()})
        ours |= more


@pytest.mark.slow
def test_a_caller_cancelled_while_its_executor_is_reaped_leaks_nothing(config) -> None:
    async def scenario(pool):
        await pool.execute(req("noop"), 5)
        before = open_fds()
        call = asyncio.create_task(pool.execute(req("sleep_ms", 10_000), 0.2))
        await async_wait_until(lambda: pool._slots.all[0].current is None, "the timeout fired: the executor is being reaped",
                               interval=0)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        after = await pool.execute(req("fibonacci", 10), 5)
        return before, open_fds(), after

    before, after_fds, after = pool_run(config, scenario)
    assert after.values == [55] and after_fds == before
    assert executor_children() == []


def test_a_huge_hard_timeout_with_spinning(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, spin_us=100, plugin_autoload=False)

    async def scenario(pool):
        return [await pool.execute(req("fibonacci", n), 1e300) for n in (5, 6)]

    assert [o.values for o in pool_run(config, scenario)] == [[5], [8]]


@pytest.mark.slow
def test_close_that_is_cancelled_still_shuts_down(config) -> None:
    async def main():
        pool = sc.ProcessPool(config)
        await pool.start()
        pid = pool.pid
        call = asyncio.create_task(pool.execute(req("sleep_ms", 300), 5))
        await async_wait_until(lambda: pool.stats().busy == 1, "the call runs")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.close(), 0.05)
        assert (await call).executor_id == 1
        await pool.close()  # waits for the same shutdown
        return pid

    assert gone(run(main()))


@pytest.mark.slow
def test_sync_pool_replaces_an_executor_that_died_between_calls(config) -> None:
    with sc.SyncProcessPool(config) as pool:
        pid = pool.pid
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: dead(pid), "the idle executor died")
        outcome = pool.execute(req("fibonacci", 10), hard_timeout=5)
    assert outcome.values == [55] and outcome.executor_id == 2


def test_sync_pool_created_in_a_thread_that_ends(config) -> None:
    import threading

    made = []
    worker = threading.Thread(target=lambda: made.append(sc.SyncProcessPool(config)))
    worker.start()
    worker.join()
    pool = made[0]
    try:
        pool.start()
        pool.execute(req("always_panic"), hard_timeout=5)  # respawned by the pool's own thread
        assert pool.execute(req("fibonacci", 10), hard_timeout=5).values == [55]
    finally:
        pool.close()


@pytest.mark.slow
def test_an_executor_that_cannot_be_supervised_is_an_internal_error(config, monkeypatch, caplog) -> None:
    async def scenario(pool):
        def no_descriptor(fd, blocking):
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(os, "set_blocking", no_descriptor)
        crash = await pool.execute(req("always_panic"), 5)  # its replacement cannot be supervised
        with pytest.raises(sc.NotRunning, match="failed to start 1 time"):
            await pool.execute(req("fibonacci", 1), 5)
        monkeypatch.undo()
        await async_wait_until(lambda: pool.executor_id is not None, "the slot recovered after the back-off")
        return crash, await pool.execute(req("fibonacci", 10), 5)

    crash, recovered = pool_run(config, scenario)
    assert isinstance(crash, sc.ExecutorCrash) and recovered.values == [55]
    assert any("cannot supervise executor 2: [Errno 24]" in r.getMessage() for r in caplog.records)
    assert executor_children() == []


EARLY_REPLY = """
import os, sys, msgpack, struct, time
def send(o):
    b = msgpack.packb(o); os.write(1, struct.pack(">I", len(b)) + b)
def readn(n):
    buf = b""
    while len(buf) < n:
        d = os.read(0, n - len(buf))
        if not d: sys.exit(0)
        buf += d
    return buf
send(["Ready", os.getpid(), "0.1.0"])
size = struct.unpack(">I", readn(4))[0]
send(["Result", 1, True, b"\\0\\0\\0\\0", 1])
time.sleep(60)
"""


@pytest.mark.slow
def test_an_answer_before_the_whole_request_was_read_is_a_crash(package_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "early.py"
    script.write_text(EARLY_REPLY)
    config = sc.PoolConfig(package_dir=package_dir, executor_command=(sys.executable, str(script)),
                           plugin_autoload=False, shutdown_grace=0.2)

    # more than a pipe holds even once the pool widens it for a large frame (to pipe-max-size)
    strings = 2 * int(Path("/proc/sys/fs/pipe-max-size").read_text()) // 1000

    async def scenario(pool):
        return await pool.execute(req("sleep_and_echo", ["y" * 1000] * strings), 5)

    crash = pool_run(config, scenario)
    assert isinstance(crash, sc.ExecutorCrash) and crash.executor_id == 1
