"""The executor subprocess driven directly through the framing, as spider's test_executor.rs does."""

from __future__ import annotations

import signal
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import ExecutorProcess
from spider_core.protocol import Ready, Result, Shutdown
from spider_core.tdl import (
    EMPTY_FRAME,
    ExecutorError,
    InvalidLibrary,
    PackageInitError,
    SerializedTaskOutputs,
    TaskContext,
    TaskError,
    TaskId,
    TdlErrorKind,
    decode_values,
    encode_values,
)

NAME = "integration_test_tasks"


@pytest.fixture
def executor(package_dir: Path):
    proc = ExecutorProcess(package_dir)
    try:
        yield proc
    finally:
        proc.close()


def ready(proc: ExecutorProcess) -> Ready:
    message = proc.receive()
    assert isinstance(message, Ready)
    return message


def error_of(result: Result) -> ExecutorError:
    assert result.ok is False, result
    return ExecutorError.decode(result.payload)


def test_ready_then_fibonacci(executor: ExecutorProcess) -> None:
    hello = ready(executor)
    assert hello.pid == executor.proc.pid
    assert hello.abi_version == "0.1.0"
    result = executor.execute(NAME, "fibonacci", encode_values([10]))
    assert isinstance(result, Result) and result.ok is True and result.seq == 1
    assert decode_values(result.payload) == [55]
    assert result.elapsed_us >= 0


def test_seq_is_echoed(executor: ExecutorProcess) -> None:
    ready(executor)
    executor.seq = 41
    assert executor.execute(NAME, "fibonacci", encode_values([1])).seq == 42


def test_always_fail(executor: ExecutorProcess) -> None:
    ready(executor)
    error = error_of(executor.execute(NAME, "always_fail", EMPTY_FRAME))
    assert isinstance(error, TaskError) and error.error.kind is TdlErrorKind.ExecutionError
    assert "always_fail" in error.error.message


def test_always_panic_kills_the_executor_with_sigabrt(executor: ExecutorProcess) -> None:
    ready(executor)
    assert executor.execute(NAME, "always_panic", EMPTY_FRAME) is None
    assert executor.wait() == -signal.SIGABRT


def commit_ctx(values: list[int]) -> bytes:
    raw = SerializedTaskOutputs.from_frame(encode_values(values)).raw
    return TaskContext(job_id=42, task_id=TaskId.COMMIT, task_instance_id=1, resource_group_id=7,
                       serialized_task_graph_outputs=raw).encode()


def test_commit_task_succeeds_for_zero_sum(executor: ExecutorProcess) -> None:
    ready(executor)
    result = executor.execute(NAME, "assert_outputs_sum_zero", EMPTY_FRAME, ctx=commit_ctx([3, -3]))
    assert result.ok is True and result.payload == EMPTY_FRAME


@pytest.mark.parametrize(
    ("ctx", "kind"),
    [
        (commit_ctx([3, -2]), TdlErrorKind.ExecutionError),
        (commit_ctx([]), TdlErrorKind.ExecutionError),
        (TaskContext(task_id=TaskId.of(0)).encode(), TdlErrorKind.InvalidTaskContext),
    ],
    ids=["non-zero-sum", "empty-outputs", "not-commit"],
)
def test_commit_task_errors(executor: ExecutorProcess, ctx: bytes, kind: TdlErrorKind) -> None:
    ready(executor)
    error = error_of(executor.execute(NAME, "assert_outputs_sum_zero", EMPTY_FRAME, ctx=ctx))
    assert isinstance(error, TaskError) and error.error.kind is kind


def test_assert_initialized(executor: ExecutorProcess) -> None:
    ready(executor)
    assert executor.execute(NAME, "assert_initialized", EMPTY_FRAME).ok is True


def test_init_failure_answers_every_request_and_stays_up(package_dir: Path) -> None:
    proc = ExecutorProcess(package_dir, env={"SPIDER_TEST_TDL_INIT_SHOULD_FAIL": "1"})
    try:
        ready(proc)
        for _ in range(3):
            error = error_of(proc.execute(NAME, "assert_initialized", EMPTY_FRAME))
            assert isinstance(error, PackageInitError)
        assert proc.proc.poll() is None
    finally:
        proc.close()


def test_stray_stdout_does_not_corrupt_the_protocol(executor: ExecutorProcess) -> None:
    ready(executor)
    assert executor.execute(NAME, "print_to_stdout", EMPTY_FRAME).ok is True
    assert decode_values(executor.execute(NAME, "fibonacci", encode_values([10])).payload) == [55]
    executor.send(Shutdown())
    assert executor.wait() == 0
    assert b"hello from a task" in executor.proc.stderr.read()


def test_python_print_goes_to_stderr(package_dir: Path) -> None:
    # sys.stdout of the executor must be the log, not the protocol channel.
    import subprocess
    import sys

    code = "import spider_core.executor.channel as e; e.take_protocol_fds(); print('PRINTED'); import os; os.write(1, b'RAW')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert done.stdout == b""
    assert b"PRINTED" in done.stderr and b"RAW" in done.stderr


def test_shutdown_exits_zero(executor: ExecutorProcess) -> None:
    ready(executor)
    executor.send(Shutdown())
    assert executor.receive() is None
    assert executor.wait() == 0
    events = [e["event"] for e in executor.stderr_events()]
    assert events[0] == "start" and events[-1] == "exit"


def test_eof_exits_zero(executor: ExecutorProcess) -> None:
    ready(executor)
    executor.proc.stdin.close()
    assert executor.wait() == 0


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x00\x00\x02\xc1\xc1", b"\x00\x00\x00\x01\x07", b"\xff\xff\xff\xff", msgpack.packb(["Result"])],
    ids=["undecodable-msgpack", "not-a-message", "oversized", "no-length-prefix"],
)
def test_garbage_exits_non_zero(executor: ExecutorProcess, garbage: bytes) -> None:
    ready(executor)
    executor.proc.stdin.write(garbage)
    executor.proc.stdin.close()
    assert executor.wait() != 0
    assert any(e["event"] in ("bad request", "truncated request") for e in executor.stderr_events())


def test_missing_package_is_an_error_reply(executor: ExecutorProcess, package_dir: Path) -> None:
    ready(executor)
    error = error_of(executor.execute("absent", "t", EMPTY_FRAME))
    assert isinstance(error, InvalidLibrary)
    assert "no task package named 'absent'" in error.message and str(package_dir) in error.message
    assert executor.execute(NAME, "fibonacci", encode_values([3])).ok is True


@pytest.mark.parametrize("name", ["../etc", "/abs", "", "a/b", "."])
def test_invalid_package_name_is_an_error_reply(executor: ExecutorProcess, name: str) -> None:
    ready(executor)
    error = error_of(executor.execute(name, "t", EMPTY_FRAME))
    assert isinstance(error, InvalidLibrary) and "invalid package name" in error.message


@pytest.mark.parametrize(
    ("installed", "message"),
    [
        ("1", f"no task package named {NAME!r} installed, and no package directory is set (SPIDER_TDL_PACKAGE_DIR) (searched by "),
        ("0", f"cannot locate package {NAME!r}: SPIDER_TDL_PACKAGE_DIR is not set and installed packages are off"),
    ],
)
def test_no_package_dir(clean_env: None, installed: str, message: str) -> None:
    proc = ExecutorProcess(None, env={"SPIDER_INSTALLED_PACKAGES": installed})
    try:
        ready(proc)
        error = error_of(proc.execute(NAME, "fibonacci", encode_values([1])))
        assert isinstance(error, InvalidLibrary) and message in error.message
    finally:
        proc.close()


def test_result_over_the_frame_limit_is_an_error_reply(package_dir: Path) -> None:
    proc = ExecutorProcess(package_dir, env={"SPIDER_MAX_FRAME_SIZE": "100000"}, max_frame_size=100000)
    try:
        ready(proc)
        error = error_of(proc.execute(NAME, "big", encode_values([200_000])))
        assert isinstance(error, TaskError) and error.error.kind is TdlErrorKind.SerializationError
        assert proc.execute(NAME, "fibonacci", encode_values([2])).ok is True
    finally:
        proc.close()


def test_structured_log_lines(package_dir: Path) -> None:
    executor = ExecutorProcess(package_dir, env={"SPIDER_EXECUTOR_LOG_LEVEL": "debug"})
    ready(executor)
    executor.execute(NAME, "fibonacci", encode_values([5]))
    executor.send(Shutdown())
    executor.wait()
    events = executor.stderr_events()
    by_name = {e["event"]: e for e in events}
    assert by_name["start"]["pid"] == executor.proc.pid
    assert by_name["package loaded"]["package"] == NAME
    done = by_name["task done"]
    assert (done["package"], done["task"], done["ok"], done["seq"]) == (NAME, "fibonacci", True, 1)
    assert by_name["exit"]["reason"] == "shutdown"
    executor.close()


def test_task_lines_are_debug_level(executor: ExecutorProcess) -> None:
    ready(executor)
    executor.execute(NAME, "fibonacci", encode_values([5]))
    executor.send(Shutdown())
    executor.wait()
    assert [e["event"] for e in executor.stderr_events()] == ["start", "package loaded", "exit"]


def test_blocked_libso_makes_packages_unresolvable(package_dir: Path) -> None:
    proc = ExecutorProcess(package_dir, env={"SPIDER_DISABLE_PLUGINS": "spider_libso,spider_pytasks,spider_installed"})
    try:
        ready(proc)
        error = error_of(proc.execute(NAME, "fibonacci", encode_values([1])))
        assert isinstance(error, InvalidLibrary)
        assert "spider_resolve_package" in error.message and "spider_libso" in error.message
    finally:
        proc.close()


def test_blocked_framing_fails_setup(package_dir: Path) -> None:
    proc = ExecutorProcess(package_dir, env={"SPIDER_DISABLE_PLUGINS": "spider_msgpack"})
    try:
        assert proc.receive() is None
        assert proc.wait() == 4
        assert any("spider_framing" in e.get("error", "") for e in proc.stderr_events())
    finally:
        proc.close()


def test_spinning_executor_answers_like_a_blocking_one(package_dir: Path) -> None:
    proc = ExecutorProcess(package_dir, env={"SPIDER_EXECUTOR_SPIN_US": "200"})
    try:
        ready(proc)
        for n in (1, 10, 20):
            assert decode_values(proc.execute(NAME, "fibonacci", encode_values([n])).payload) == [[1, 55, 6765][[1, 10, 20].index(n)]]
        strings = ["s" * 1000] * 2000  # a request larger than one pipe buffer
        assert decode_values(proc.execute(NAME, "sleep_and_echo", encode_values([strings])).payload) == [strings]
        proc.proc.stdin.close()
        assert proc.wait() == 0
    finally:
        proc.close()


def test_messages_are_arrays_of_the_class_name_and_the_fields() -> None:
    from spider_core.protocol import Execute, message_from_primitive, message_to_primitive

    cases = [
        (Execute(seq=1, package="p", task="t", raw_ctx=b"c", raw_inputs=b"i"), ["Execute", 1, "p", "t", b"c", b"i", 0]),
        (
            Execute(seq=1, package="p", task="t", raw_ctx=b"c", raw_inputs=b"i", soft_timeout_us=5),
            ["Execute", 1, "p", "t", b"c", b"i", 5],
        ),
        (Shutdown(), ["Shutdown"]),
        (Result(seq=2, ok=False, payload=b"x", elapsed_us=3), ["Result", 2, False, b"x", 3]),
        (Ready(pid=4, abi_version="0.1.0"), ["Ready", 4, "0.1.0"]),
    ]
    for message, primitive in cases:
        assert message_to_primitive(message) == primitive
        assert message_from_primitive(primitive) == message
        assert msgpack.unpackb(msgpack.packb(primitive)) == primitive


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ([], "a message must be a non-empty array, got list []"),
        ({"type": "Shutdown"}, "a message must be a non-empty array, got dict {'type': 'Shutdown'}"),
        (["Nope"], "unknown message type 'Nope'"),
        ([1, 2], "unknown message type 1"),
        (["Result", 1], "invalid Result message: 1 fields, expected 4 (seq, ok, payload, elapsed_us)"),
        (["Shutdown", 1], "invalid Shutdown message: 1 fields, expected 0 (none)"),
        (["Result", "1", True, b"", 0], "invalid Result message: seq: expected int, got str '1'"),
        (["Result", 1, 1, b"", 0], "invalid Result message: ok: expected bool, got int 1"),
        (["Execute", 1, "p", "t", 0, b"", 0], "invalid Execute message: raw_ctx: expected bytes, got int 0"),
        (["Execute", 1, "p", "t", b"", b""], "invalid Execute message: 5 fields, expected 6 (seq, package, task, raw_ctx, raw_inputs, soft_timeout_us)"),
        (["Execute", 1, "p", "t", b"", b"", 0.5], "invalid Execute message: soft_timeout_us: expected int, got float 0.5"),
    ],
)
def test_malformed_messages_are_refused_with_the_reason(bad: object, error: str) -> None:
    from spider_core.protocol import message_from_primitive

    with pytest.raises(ValueError) as info:
        message_from_primitive(bad)
    assert str(info.value) == error


_field_values = st.one_of(
    st.integers(-5, 2**64), st.booleans(), st.text(max_size=3), st.binary(max_size=3), st.none(), st.floats(), st.just([])
)
_WELL_FORMED = [["Execute", 1, "p", "t", b"c", b"i", 0], ["Result", 1, True, b"p", 2]]


@st.composite
def _near_messages(draw: st.DrawFn) -> list:
    """A well-formed Execute or Result with up to two fields replaced, added or removed."""
    primitive = list(draw(st.sampled_from(_WELL_FORMED)))
    for _ in range(draw(st.integers(0, 2))):
        action = draw(st.sampled_from(["replace", "append", "pop"]))
        if action == "replace":
            primitive[draw(st.integers(0, len(primitive) - 1))] = draw(_field_values | st.sampled_from(["Execute", "Result"]))
        elif action == "append":
            primitive.append(draw(_field_values))
        elif primitive:
            primitive.pop(draw(st.integers(0, len(primitive) - 1)))
    return primitive


@given(st.one_of(_near_messages(), st.lists(_field_values | st.sampled_from(["Execute", "Result"]), max_size=8)))
def test_execute_and_result_fast_paths_agree_with_the_converter(primitive: list) -> None:
    from spider_core.protocol import Execute, execute_fields, message_from_primitive, result_fields

    try:
        message = message_from_primitive(primitive)
    except ValueError:
        message = None
    expected_execute = (
        (message.seq, message.package, message.task, message.raw_ctx, message.raw_inputs, message.soft_timeout_us)
        if isinstance(message, Execute)
        else None
    )
    expected_result = (
        (message.seq, message.ok, message.payload, message.elapsed_us) if isinstance(message, Result) else None
    )
    assert execute_fields(primitive) == expected_execute
    assert result_fields(primitive) == expected_result


def test_the_fast_paths_build_and_read_well_formed_messages() -> None:
    from spider_core.protocol import (
        Execute,
        execute_fields,
        execute_primitive,
        message_to_primitive,
        result_fields,
        result_primitive,
    )

    execute = Execute(seq=7, package="p", task="t", raw_ctx=b"c", raw_inputs=b"i")
    assert execute_primitive(7, "p", "t", b"c", b"i") == message_to_primitive(execute)
    assert execute_fields(message_to_primitive(execute)) == (7, "p", "t", b"c", b"i", 0)
    assert execute_fields(execute_primitive(7, "p", "t", b"c", b"i", 250_000))[-1] == 250_000
    result = Result(seq=8, ok=True, payload=b"p", elapsed_us=9)
    assert result_primitive(8, True, b"p", 9) == message_to_primitive(result)
    assert result_fields(message_to_primitive(result)) == (8, True, b"p", 9)
    assert result_fields(["Result", True, True, b"p", 9]) is None  # a bool is not an int


# -- what the executor imports to start ----------------------------------------------------
#
# The executor's start is on the path of every respawn: it imports what serving a native
# package needs, builds its plugin manager from the list the pool hands it (no entry-point
# scan), and leaves the SDK, cattrs, the user-facing models and logging to Python packages
# and error paths.

#: Runs the executor, then reports on stderr the modules it imported by the time it exits.
MODULES_REPORTER = """
import sys
from spider_core.executor import main
status = main()
sys.stderr.write("modules " + " ".join(sorted(sys.modules)) + "\\n")
sys.exit(status)
"""

#: Not needed to serve a native package.
NOT_FOR_NATIVE = (
    "importlib.metadata",  # the entry-point scan: the pool hands the executor its plugin list
    "cattrs",
    "logging",
    "spider_core.models",
    "spider_core.sdk",
    "spider_core.tdl.context",
    "spider_pytasks.loader",
    "spider_pytasks.listing",
    "subprocess",
)


def imported_modules(log: Path) -> set[str]:
    (line,) = [line for line in log.read_text().splitlines() if line.startswith("modules ")]
    return set(line.split()[1:])


def run_reporting_modules(tmp_path: Path, package_dir: Path, package: str, **config: object) -> set[str]:
    import sys

    import spider_core as sc

    script = tmp_path / "report_modules.py"
    script.write_text(MODULES_REPORTER)
    pool_config = sc.PoolConfig(
        package_dir=package_dir, log_dir=tmp_path / "logs", executor_command=(sys.executable, str(script)), **config
    )
    with sc.SyncProcessPool(pool_config) as pool:
        outcome = pool.execute(sc.ExecuteRequest(package=package, task="noop"), hard_timeout=30)
        assert isinstance(outcome, sc.Success), outcome
    return imported_modules(tmp_path / "logs" / "em-1.log")  # <log_dir>/<em_id>-<executor_id>.log


def test_a_native_package_needs_no_scan_sdk_models_or_logging(tmp_path: Path, package_dir: Path) -> None:
    modules = run_reporting_modules(tmp_path, package_dir, NAME)
    assert {"pluggy", "msgpack", "spider_libso", "spider_msgpack", "spider_pytasks"} <= modules
    unneeded = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_FOR_NATIVE))
    assert unneeded == []


def test_a_python_package_gets_the_sdk_and_logging(tmp_path: Path, package_dir: Path) -> None:
    import shutil

    packages = tmp_path / "packages"
    shutil.copytree(package_dir, packages)
    (packages / "pyjobs").mkdir()
    (packages / "pyjobs" / "__init__.py").write_text(
        "import logging\n"
        "from spider_core.sdk import Package, TaskContext\n"
        "package = Package('pyjobs')\n"
        "logging.getLogger('pyjobs').info('imported pyjobs')\n"
        "@package.task\n"
        "def noop(ctx: TaskContext) -> None:\n"
        "    pass\n"
    )
    modules = run_reporting_modules(tmp_path, packages, "pyjobs")
    assert {"spider_core.sdk", "spider_pytasks.loader", "logging"} <= modules
    assert "importlib.metadata" not in modules  # a directory package needs no entry point
    import json

    lines = [json.loads(line) for line in (tmp_path / "logs" / "em-1.log").read_text().splitlines()
             if line.startswith("{")]
    # The package logged while it was imported: a JSON line like the executor's own events.
    assert [line["level"] for line in lines if line["event"] == "imported pyjobs"] == ["info"]


def test_the_executor_started_by_hand_scans_the_entry_points(package_dir: Path) -> None:
    """Without the pool's SPIDER_PLUGINS, the executor finds its plugins itself."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", MODULES_REPORTER],
        input=b"",
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "SPIDER_TDL_PACKAGE_DIR": str(package_dir)},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [line for line in proc.stderr.decode().splitlines() if line.startswith("modules ")]
    assert "importlib.metadata" in line.split()
