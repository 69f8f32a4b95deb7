"""The pool driving spider's own Rust executor: the ``spider-rust`` protocol (``spider_rustexec``).

spider's ``spider-task-executor`` cannot be built here, so the pool drives
``tests/rust_standin.py``, a Python stand-in that speaks the binary's protocol byte for byte
(bincode requests and responses in 4-byte big-endian frames, no greeting, no sequence numbers,
stdout as the channel, tracing JSON on stderr) and loads the real C package with the
project's loader. Its bincode is its own, and both sides are checked against the byte vectors
of docs/abi.md §7.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import rust_standin
import spider_core as sc
from helpers import (
    C_EXECUTE,
    C_HEADER,
    C_VERSION,
    PKG,
    SPIDER,
    TASK_PACKAGES,
    async_wait_until,
    c_name_fn,
    write_c_package,
)
from spider_core.build import build_package
from spider_core.plugin import FramingError, ProtocolError, execute_primitive
from spider_core.tdl import (
    DuplicatePackage,
    ErrorPayloadDeserializationFailure,
    IncompatibleVersion,
    InvalidLibrary,
    InvalidUtf8,
    PackageInitError,
    TaskContext,
    TaskError,
    TdlErrorKind,
    Version,
    encode_values,
)
from spider_rustexec import PROTOCOL, RustDecoder, RustProtocol
from spider_rustexec.bincode import SHUTDOWN_BODY, BincodeError, decode_result, encode_execute, encode_result, frame

STANDIN = Path(rust_standin.__file__).resolve()


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


# -- docs/abi.md §7: the bytes, exactly ------------------------------------------------------

#: TaskContext{job 1, Index(0), instance 13, rg 2, None} (docs/abi.md §3.5), 13 bytes.
CTX = h("95 01 81 a5 49 6e 64 65 78 00 0d 02 c0")
#: (10u64,) in the wire format, 9 bytes.
INPUTS = h("01 00 00 00 | 01 00 00 00 | 0a")
#: (55u64,), 9 bytes.
OUTPUTS = h("01 00 00 00 01 00 00 00 37")

SHUTDOWN_FRAME = h("00 00 00 04 | 01 00 00 00")
EXECUTE_FRAME = (
    h("00 00 00 40 | 00 00 00 00")
    + h("03 00 00 00 00 00 00 00") + b"pkg"
    + h("03 00 00 00 00 00 00 00") + b"fib"
    + h("0d 00 00 00 00 00 00 00") + CTX
    + h("09 00 00 00 00 00 00 00") + INPUTS
)
RESULT_BODY = h("00 00 00 00 | 00 00 00 00 | 09 00 00 00 00 00 00 00") + OUTPUTS + h("2a 00 00 00 00 00 00 00")


def test_context_and_inputs_of_the_vectors_are_what_they_say() -> None:
    assert TaskContext(job_id=1, task_instance_id=13, resource_group_id=2).encode() == CTX
    assert encode_values([10]) == INPUTS and encode_values([55]) == OUTPUTS


def test_shutdown_bytes() -> None:
    assert frame(SHUTDOWN_BODY) == SHUTDOWN_FRAME
    assert RustProtocol().encode_shutdown() == SHUTDOWN_FRAME


def test_execute_bytes() -> None:
    assert len(EXECUTE_FRAME) == 4 + 64
    assert frame(encode_execute("pkg", "fib", CTX, INPUTS)) == EXECUTE_FRAME
    # the pool's request, as the protocol encodes it (its seq and soft timeout have no place)
    assert RustProtocol().encode_request(execute_primitive(7, "pkg", "fib", CTX, INPUTS, 500)) == EXECUTE_FRAME


def test_result_bytes() -> None:
    assert encode_result(True, OUTPUTS, 42) == RESULT_BODY
    assert decode_result(RESULT_BODY) == (True, OUTPUTS, 42)
    failure = encode_result(False, b"\x81", 2**64 - 1)
    assert failure == h("00 00 00 00 | 01 00 00 00 | 01 00 00 00 00 00 00 00 | 81 | ff ff ff ff ff ff ff ff")
    assert decode_result(failure) == (False, b"\x81", 2**64 - 1)


def test_the_standin_writes_the_same_bytes() -> None:
    assert rust_standin.response(True, OUTPUTS, 42) == frame(RESULT_BODY)
    request = rust_standin.Reader(EXECUTE_FRAME[4:])
    assert (request.u32(), request.string(), request.string(), request.vec(), request.vec()) == (0, "pkg", "fib", CTX, INPUTS)


def test_utf8_names_are_counted_in_bytes() -> None:
    body = encode_execute("é", "t", b"", b"")
    assert body[4:14] == h("02 00 00 00 00 00 00 00 c3 a9")
    with pytest.raises(BincodeError, match="valid UTF-8"):
        encode_execute("bad\udcff", "t", b"", b"")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (RESULT_BODY[:-1], "too short|cannot hold"),
        (RESULT_BODY + b"\0", "1 bytes follow the Response::Result"),
        (h("01 00 00 00") + RESULT_BODY[4:], "unknown Response variant 1"),
        (RESULT_BODY[:4] + h("02 00 00 00") + RESULT_BODY[8:], "unknown ExecutorOutcome variant 2"),
        (RESULT_BODY[:8] + struct.pack("<Q", 2**63) + RESULT_BODY[16:], "cannot hold a payload"),
        (b"", "too short"),
    ],
)
def test_malformed_responses_are_refused(body: bytes, error: str) -> None:
    with pytest.raises(BincodeError, match=error):
        decode_result(body)


def test_the_decoder_reads_frames_in_pieces() -> None:
    decoder = RustDecoder(1 << 20)
    data = frame(RESULT_BODY)
    for i in range(len(data) - 1):
        decoder.feed(data[i : i + 1])
        assert decoder.next_message() is None
        assert decoder.wanted() == (3 - i if i < 3 else len(data) - i - 1)  # the header, then the frame
    decoder.feed(data[-1:])
    assert decoder.next_message() == (True, OUTPUTS, 42)
    assert decoder.pending() == 0


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"prin", r"frame of 1886546286 bytes exceeds the maximum frame size of 8388608 bytes; the executor's stdout"),
        (frame(RESULT_BODY) + b"x", "1 more bytes came with a reply"),
        (frame(b"junk\n"), "not a spider executor Response"),
    ],
)
def test_bytes_that_are_not_one_reply_are_a_framing_error(data: bytes, error: str) -> None:
    decoder = RustProtocol(64 << 20).decoder()  # the executor's 8 MiB cap holds whatever the pool allows
    decoder.feed(data)
    with pytest.raises(FramingError, match=error):
        decoder.next_message()


def test_a_reply_answers_the_request_last_encoded() -> None:
    protocol = RustProtocol()
    protocol.encode_request(execute_primitive(41, "p", "t", CTX, INPUTS))
    assert protocol.result_fields((True, OUTPUTS, 3)) == (41, True, OUTPUTS, 3)
    assert protocol.decode_result((False, b"e", 3), 41) == (41, False, b"e", 3)
    with pytest.raises(ProtocolError, match="expected the result of request 42"):
        protocol.decode_result((True, OUTPUTS, 3), 42)
    assert protocol.result_fields(["Result", 41, True, OUTPUTS, 3]) is None
    with pytest.raises(ProtocolError, match="not a Response"):
        protocol.decode_result("nonsense", 41)


def test_requests_over_eight_mib_are_refused() -> None:
    protocol = RustProtocol(64 << 20)
    assert protocol.max_frame_size == 8 << 20
    with pytest.raises(FramingError, match="spider-task-executor accepts at most 8388608 bytes"):
        protocol.encode_request(execute_primitive(1, "p", "t", CTX, bytes(8 << 20)))
    assert RustProtocol(1000).max_frame_size == 1000


# -- the stand-in on its own: what the binary does ------------------------------------------


def standin(package_dir: Path | None, stdin: bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    environ = {"PATH": os.environ["PATH"], **env}
    if package_dir is not None:
        environ["SPIDER_TDL_PACKAGE_DIR"] = str(package_dir)
    return subprocess.run([sys.executable, str(STANDIN)], input=stdin, capture_output=True, env=environ, timeout=30)


def test_standin_answers_in_frames_and_stops_at_shutdown(package_dir: Path) -> None:
    requests = frame(encode_execute(PKG, "fibonacci", CTX, INPUTS)) * 2 + SHUTDOWN_FRAME + b"never read"
    done = standin(package_dir, requests, RUST_LOG="info")
    assert done.returncode == 0
    replies = []
    for half in (done.stdout[: len(done.stdout) // 2], done.stdout[len(done.stdout) // 2 :]):
        decoder = RustDecoder(8 << 20)
        decoder.feed(half)
        replies.append(decoder.next_message()[:2])
    assert replies == [(True, OUTPUTS), (True, OUTPUTS)]
    events = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["fields"]["message"] for e in events] == ["Executor starts.", "Received shutdown request.", "Executor exits."]
    assert {e["level"] for e in events} == {"INFO"}


def test_standin_logs_errors_only_without_rust_log(package_dir: Path) -> None:
    assert standin(package_dir, b"").stderr == b""
    done = standin(package_dir, b"\0\0")
    assert done.returncode == 1
    first, last = done.stderr.decode().splitlines()
    assert json.loads(first)["fields"]["message"] == "Failed to receive request frame."
    assert last == "Error: bytes remaining on stream"


@pytest.mark.parametrize(
    ("stdin", "error"),
    [
        (struct.pack(">I", (8 << 20) + 1), "Error: frame size too big"),
        (frame(h("07 00 00 00")), "Error: invalid value: integer `7`, expected variant index 0 <= i < 2"),
        (frame(h("00 00 00 00 ff")), "Error: io error: unexpected end of file"),
    ],
)
def test_standin_exits_1_on_a_bad_request(package_dir: Path, stdin: bytes, error: str) -> None:
    done = standin(package_dir, stdin)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().splitlines()[-1] == error


def test_standin_needs_the_package_dir() -> None:
    done = standin(None, b"")
    assert (done.returncode, done.stderr) == (1, b"Error: SPIDER_TDL_PACKAGE_DIR env var not set\n")


# -- the pool over the stand-in ---------------------------------------------------------------


def req(task: str, *inputs: object, package: str = PKG) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=package, task=task, inputs=inputs)


@pytest.fixture
def config(package_dir: Path, tmp_path: Path) -> sc.PoolConfig:
    return sc.PoolConfig(
        package_dir=package_dir,
        protocol=PROTOCOL,
        executor_command=(sys.executable, str(STANDIN)),
        log_dir=tmp_path / "logs",
        em_id="em-rust",
        plugin_autoload=False,
        shutdown_grace=5,
    )


class Recorder:
    """Every lifecycle event of a pool."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []

    @sc.hookimpl
    def spider_executor_started(self, executor_id, pid, log_path):
        self.events.append(("started", executor_id))

    @sc.hookimpl
    def spider_executor_exited(self, executor_id, reason, exit_status, signal):
        self.events.append(("exited", executor_id, reason, exit_status, signal))

    @sc.hookimpl
    def spider_task_finished(self, request, outcome, executor_id):
        self.events.append(("finished", request.task, type(outcome).__name__, executor_id))


def pool_run(config: sc.PoolConfig, scenario, recorder: Recorder | None = None):
    """Run ``scenario(pool)`` inside ``async with ProcessPool(config)``."""
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    if recorder is not None:
        pm.register(recorder, name="recorder")

    async def main():
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            return await scenario(pool)

    return asyncio.run(main())


# spider's four process-pool tests (tests/huntsman/task-executor/tests/test_process_pool.rs)


def test_fibonacci_succeeds(config: sc.PoolConfig) -> None:
    async def scenario(pool):
        return await pool.execute(req("fibonacci", 10), hard_timeout=5)

    outcome = pool_run(config, scenario)
    assert isinstance(outcome, sc.Success)
    assert outcome.values == [55] and outcome.outputs == OUTPUTS
    assert outcome.elapsed_us > 0  # the stand-in times the load too, as spider's executor does


def test_always_fail_reports_task_error(config: sc.PoolConfig) -> None:
    async def scenario(pool):
        return await pool.execute(req("always_fail"), hard_timeout=5)

    outcome = pool_run(config, scenario)
    assert isinstance(outcome, sc.InTaskFailure) and isinstance(outcome.error, TaskError)
    assert outcome.error.error.kind is TdlErrorKind.ExecutionError
    assert "always_fail" in outcome.error.error.message


def test_always_panic_returns_crash_then_respawns(config: sc.PoolConfig) -> None:
    async def scenario(pool):
        first = pool.pid
        crash = await pool.execute(req("always_panic"), hard_timeout=5)
        return first, crash, pool.pid, await pool.execute(req("fibonacci", 7), hard_timeout=5)

    first, crash, second, after = pool_run(config, scenario)
    assert crash == sc.ExecutorCrash(exit_status=None, signal=signal.SIGABRT, executor_id=1)
    assert second != first
    assert isinstance(after, sc.Success) and after.values == [13] and after.executor_id == 2


def test_hard_timeout_kills_then_respawns(config: sc.PoolConfig) -> None:
    recorder = Recorder()

    async def scenario(pool):
        first = pool.pid
        timeout = await pool.execute(req("fibonacci", 45), hard_timeout=0.2)
        return first, timeout, pool.pid, await pool.execute(req("fibonacci", 7), hard_timeout=5)

    first, timeout, second, after = pool_run(config, scenario, recorder)
    assert timeout == sc.Timeout(hard_timeout=0.2, executor_id=1)
    assert second != first and not Path(f"/proc/{first}").exists()
    assert after.values == [13]
    assert ("exited", 1, "timeout", None, signal.SIGKILL) in recorder.events


# every ExecutorError variant, as spider's executor reports it


@pytest.fixture(scope="module")
def odd_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Packages that fail each way spider's loader can fail, built once."""
    root = tmp_path_factory.mktemp("odd")
    out = root / "packages"
    good = build_package(TASK_PACKAGES / PKG, out)
    (out / "alias").mkdir()
    shutil.copy(good, out / "alias" / "libalias.so")  # a second library declaring the same name
    newer = build_package(TASK_PACKAGES / PKG, root / "v0.2", cflags=["-DSPIDER_TDL_VERSION_MINOR=2"])
    (out / "newer").mkdir()
    shutil.copy(newer, out / "newer" / "libnewer.so")
    execute = C_EXECUTE.replace(  # a failure whose ExecutorError payload is not msgpack
        "BODY",
        'spider_tdl_buf b; spider_tdl_buf_init(&b); spider_tdl_buf_append(&b, (const uint8_t *)"\\xc1", 1);\n'
        "    spider_tdl_task_execution_result r = spider_tdl_result_ok(&b); r.is_error = true; return r;",
    )
    for name, declared in (("bad_utf8", "\\xff\\xfe"), ("bad_error", "bad_error")):
        build_package(write_c_package(root / "src", name, C_HEADER + C_VERSION + c_name_fn(declared) + execute), out, check=False)
    return out


@pytest.mark.slow
def test_every_executor_error_variant(config: sc.PoolConfig, odd_packages: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import attrs

    async def scenario(pool):
        return [
            await pool.execute(req("always_fail"), 5),  # TaskError
            await pool.execute(req("fibonacci", 1, package="no_such_package"), 5),  # InvalidLibrary
            await pool.execute(req("fibonacci", 1, package="newer"), 5),  # IncompatibleVersion
            await pool.execute(req("fibonacci", 1, package="alias"), 5),  # DuplicatePackage
            await pool.execute(req("t", package="bad_utf8"), 5),  # InvalidUtf8
            await pool.execute(req("t", package="bad_error"), 5),  # ErrorPayloadDeserializationFailure
        ]

    outcomes = pool_run(attrs.evolve(config, package_dir=odd_packages), scenario)
    assert all(isinstance(o, sc.InTaskFailure) and o.executor_id == 1 for o in outcomes), outcomes
    errors = [o.error for o in outcomes]
    assert [type(e) for e in errors] == [
        TaskError, InvalidLibrary, IncompatibleVersion, DuplicatePackage, InvalidUtf8, ErrorPayloadDeserializationFailure
    ]
    assert (errors[2].package, errors[2].executor) == (Version(0, 2, 0), Version(0, 1, 0))
    assert errors[3] == DuplicatePackage(PKG)  # spider names the package, as its ExecutorError does

    # PackageInitError: init fails in the executor's environment (inherited_env carries it)
    monkeypatch.setenv("SPIDER_TEST_TDL_INIT_SHOULD_FAIL", "1")
    failing = attrs.evolve(config, package_dir=odd_packages, inherited_env=("SPIDER_TEST_TDL_INIT_SHOULD_FAIL",))

    async def init(pool):
        return await pool.execute(req("fibonacci", 1), 5)

    outcome = pool_run(failing, init)
    assert isinstance(outcome.error, PackageInitError) and outcome.error.error.kind is TdlErrorKind.Custom


def test_task_not_found_is_a_task_error(config: sc.PoolConfig) -> None:
    async def scenario(pool):
        return await pool.execute(req("no_such_task"), 5)

    outcome = pool_run(config, scenario)
    assert isinstance(outcome.error, TaskError) and outcome.error.error.kind is TdlErrorKind.TaskNotFound


# crashes, stdout, cancellation, slots, shutdown


@pytest.mark.parametrize(
    ("task", "inputs", "status", "signum"),
    [("segfault", (), None, signal.SIGSEGV), ("exit_with", (3,), 3, None)],
)
def test_crash_reports_exit_status_or_signal(config: sc.PoolConfig, task: str, inputs: tuple, status, signum) -> None:
    async def scenario(pool):
        return await pool.execute(req(task, *inputs), 5), await pool.execute(req("fibonacci", 10), 5)

    crash, after = pool_run(config, scenario)
    assert crash == sc.ExecutorCrash(exit_status=status, signal=signum, executor_id=1)
    assert after.values == [55] and after.executor_id == 2


def test_a_task_printing_to_stdout_is_a_crash_never_a_result(config: sc.PoolConfig) -> None:
    recorder = Recorder()

    async def scenario(pool):
        return await pool.execute(req("print_to_stdout"), 5), await pool.execute(req("fibonacci", 10), 5)

    printed, after = pool_run(config, scenario, recorder)
    assert isinstance(printed, sc.ExecutorCrash) and printed.executor_id == 1
    assert printed.signal is signal.SIGKILL  # alive but unusable: killed, and the reason says why
    assert printed.reason is not None and printed.reason.startswith("the executor sent an undecodable frame: ")
    assert after.values == [55] and after.executor_id == 2
    assert ("exited", 1, "crash", None, signal.SIGKILL) in recorder.events


def test_outputs_over_eight_mib_crash_the_executor_as_spiders_would(config: sc.PoolConfig) -> None:
    async def scenario(pool):
        return await pool.execute(req("big", 9 << 20), 10), await pool.execute(req("big", 3), 5)

    crash, after = pool_run(config, scenario)
    assert crash == sc.ExecutorCrash(exit_status=1, signal=None, executor_id=1)  # "Failed to send response."
    assert after.values == ["xxx"]


def test_inputs_over_eight_mib_are_refused_before_sending(config: sc.PoolConfig) -> None:
    async def scenario(pool):
        with pytest.raises(sc.EncodeTaskInputs, match="spider-task-executor accepts at most 8388608 bytes"):
            await pool.execute(req("sleep_and_echo", ["x" * (9 << 20)]), 5)
        return pool.executor_id, await pool.execute(req("fibonacci", 10), 5)

    executor_id, after = pool_run(config, scenario)
    assert executor_id == 1 and after.values == [55] and after.executor_id == 1


def test_cancelled_call_kills_and_respawns(config: sc.PoolConfig) -> None:
    recorder = Recorder()

    async def scenario(pool):
        slow = asyncio.create_task(pool.execute(req("sleep_ms", 5000), 30))
        await async_wait_until(lambda: pool.stats().busy == 1, "the call runs")
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        return await pool.execute(req("fibonacci", 10), 5)

    after = pool_run(config, scenario, recorder)
    assert after.values == [55] and after.executor_id == 2
    assert ("exited", 1, "cancelled", None, signal.SIGKILL) in recorder.events


def test_slots_each_match_their_own_replies(config: sc.PoolConfig) -> None:
    import attrs

    async def scenario(pool):
        requests = [req("fibonacci", n) for n in range(20)] + [req("sleep_and_echo", ["a", str(n)]) for n in range(6)]
        return [o async for o in pool.map(requests, 5)], pool.executor_ids

    outcomes, ids = pool_run(attrs.evolve(config, slots=3), scenario)
    fib = [0, 1]
    while len(fib) < 20:
        fib.append(fib[-1] + fib[-2])
    assert [o.values for o in outcomes] == [[f] for f in fib] + [[["a", str(n)]] for n in range(6)]
    assert ids == (1, 2, 3) and {o.executor_id for o in outcomes} <= {1, 2, 3}


def test_shutdown_at_close_and_the_log_file(config: sc.PoolConfig) -> None:
    recorder = Recorder()

    async def scenario(pool):
        return await pool.execute(req("fibonacci", 10), 5), pool.log_path

    outcome, log_path = pool_run(config, scenario, recorder)
    assert recorder.events == [
        ("started", 1),
        ("finished", "fibonacci", "Success", 1),
        ("exited", 1, "shutdown", 0, None),  # Request::Shutdown: it exits 0 by itself
    ]
    assert log_path == config.log_dir / "em-rust-1.log"
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(line["level"], line["fields"]["message"]) for line in lines] == [
        ("INFO", "Executor starts."), ("INFO", "Received shutdown request."), ("INFO", "Executor exits.")
    ]


def test_executor_log_level_becomes_rust_log(config: sc.PoolConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    import attrs

    monkeypatch.delenv("RUST_LOG", raising=False)

    async def scenario(pool):
        await pool.execute(req("fibonacci", 10), 5)
        return pool.log_path

    log_path = pool_run(attrs.evolve(config, executor_log_level="error"), scenario)
    assert log_path.read_text() == ""
    monkeypatch.setenv("RUST_LOG", "warn,spider_task_executor=info")  # the parent's wins, as in spider
    log_path = pool_run(attrs.evolve(config, executor_log_level="error", em_id="again"), scenario)
    assert "Executor starts." in log_path.read_text()


def test_standby_and_recycling(config: sc.PoolConfig) -> None:
    import attrs

    recorder = Recorder()

    async def scenario(pool):
        outcomes = [await pool.execute(req("fibonacci", n), 5) for n in (1, 2, 3)]
        crash = await pool.execute(req("always_panic"), 5)
        return outcomes, crash, await pool.execute(req("fibonacci", 10), 5)

    outcomes, crash, after = pool_run(attrs.evolve(config, standby=True, recycle_after=2), scenario, recorder)
    assert [o.values for o in outcomes] == [[1], [1], [2]] and isinstance(crash, sc.ExecutorCrash)
    assert after.values == [55]
    exits = [e[1:] for e in recorder.events if e[0] == "exited"]
    # recycled after two tasks: asked with Request::Shutdown, it exits 0 by itself
    assert exits[0] == (1, "recycle", 0, None)
    assert (crash.executor_id, "crash", None, signal.SIGABRT) in exits


def test_an_executor_command_that_does_not_exist(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, protocol=PROTOCOL, executor_command="/nonexistent/spider-task-executor",
                           plugin_autoload=False)
    with pytest.raises(sc.ExecutorCreationFailure, match="cannot start executor command '/nonexistent/spider-task-executor'"):
        pool_run(config, lambda pool: None)


# selection


def test_spider_rust_needs_the_executor_command(package_dir: Path) -> None:
    async def scenario(pool):
        raise AssertionError("the pool must not start")

    config = sc.PoolConfig(package_dir=package_dir, protocol=PROTOCOL, plugin_autoload=False)
    with pytest.raises(sc.ExecutorCreationFailure) as info:
        pool_run(config, scenario)
    assert str(info.value) == (
        "protocol 'spider-rust' drives spider's Rust executor: set PoolConfig.executor_command to the path of "
        "spider-task-executor (spider run --executor PATH)"
    )


def test_an_unknown_protocol_names_the_available_ones(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, protocol="spider-go", plugin_autoload=False)
    with pytest.raises(sc.ExecutorCreationFailure) as info:
        pool_run(config, lambda pool: None)
    assert str(info.value) == (
        "unknown protocol 'spider-go' (PoolConfig.protocol): the available protocols are 'spider-core', 'spider-rust'"
    )
    blocked = sc.PoolConfig(package_dir=package_dir, protocol=PROTOCOL, disabled_plugins="spider_rustexec",
                            plugin_autoload=False)

    async def start():
        async with sc.ProcessPool(blocked):
            pass

    with pytest.raises(sc.ExecutorCreationFailure, match=r"are 'spider-core'; blocked plugins: spider_rustexec$"):
        asyncio.run(start())


def test_a_plugin_protocol_is_selected_by_its_name(config: sc.PoolConfig) -> None:
    import attrs

    class Mine:
        """spider's protocol under another name, to show the hook chooses by name."""

        @sc.hookimpl
        def spider_protocol(self, name, config):
            return RustProtocol(config.max_frame_size) if name == "mine" else None

        @sc.hookimpl
        def spider_protocol_names(self):
            return ["mine"]

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(Mine(), name="mine")
    assert sorted(n for names in pm.hook.spider_protocol_names() for n in names) == ["mine", "spider-rust"]

    async def main():
        async with sc.ProcessPool(attrs.evolve(config, protocol="mine"), plugin_manager=pm) as pool:
            return await pool.execute(req("fibonacci", 10), 5)

    assert asyncio.run(main()).values == [55]


def test_the_default_protocol_is_spider_cores_own(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, plugin_autoload=False)
    assert config.protocol == "spider-core"
    with sc.SyncProcessPool(config) as pool:
        assert pool.call(PKG, "fibonacci", 10, hard_timeout=5) == [55]


def test_the_sync_pool_speaks_it_too(config: sc.PoolConfig) -> None:
    """The calling thread drives the pipe itself; map sends one request at a time."""
    with sc.SyncProcessPool(config) as pool:
        assert pool.call(PKG, "fibonacci", 10, hard_timeout=5) == [55]
        with pytest.raises(sc.TaskFailed):
            pool.call(PKG, "always_fail", hard_timeout=5)
        assert isinstance(pool.execute(req("sleep_ms", 5000), hard_timeout=0.3), sc.Timeout)
        crash = pool.execute(req("segfault"), hard_timeout=5)
        assert isinstance(crash, sc.ExecutorCrash) and crash.exit_status is None
        assert [o.values for o in pool.map([req("fibonacci", n) for n in range(8)], 5)] == [
            [0], [1], [1], [2], [3], [5], [8], [13]
        ]
        assert pool.executor_id == 3


# the command line


@pytest.fixture
def executor_script(tmp_path: Path) -> Path:
    """An executable that runs the stand-in, as spider's binary would be given."""
    script = tmp_path / "spider-task-executor"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    script.chmod(0o755)
    return script


def test_spider_run_with_executor(package_dir: Path, executor_script: Path) -> None:
    done = subprocess.run(
        [str(SPIDER), "run", PKG, "fibonacci", "10", "--package-dir", str(package_dir), "--executor", str(executor_script)],
        capture_output=True, text=True, timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "[55]\n", "")
    crash = subprocess.run(
        [str(SPIDER), "run", PKG, "always_panic", "--package-dir", str(package_dir), "--executor", str(executor_script)],
        capture_output=True, text=True, timeout=60,
    )
    assert crash.returncode == 4 and "SIGABRT" in crash.stderr


def test_spider_run_prints_why_a_protocol_violation_ended_the_executor(package_dir: Path, executor_script: Path) -> None:
    done = subprocess.run(
        [str(SPIDER), "run", PKG, "print_to_stdout", "--package-dir", str(package_dir), "--executor", str(executor_script)],
        capture_output=True, text=True, timeout=60,
    )
    assert (done.returncode, done.stdout) == (4, "")
    assert re.fullmatch(
        rf"spider: {PKG}/print_to_stdout: the executor broke the protocol and was killed: the executor sent an "
        r"undecodable frame: frame of \d+ bytes exceeds the maximum frame size of 8388608 bytes; the executor's "
        r"stdout is its protocol channel: did a task write to stdout\?\n",
        done.stderr,
    )


def test_spider_batch_with_executor(package_dir: Path, executor_script: Path, tmp_path: Path) -> None:
    from helpers import call, results, write_requests

    requests = write_requests(tmp_path / "requests.jsonl", [call("a", "fibonacci", 10), call("b", "always_panic"),
                                                             call("c", "sleep_and_echo", ["x"])])
    out = tmp_path / "results.jsonl"
    done = subprocess.run(
        [str(SPIDER), "batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--quiet",
         "--executor", str(executor_script)],
        capture_output=True, text=True, timeout=60,
    )
    records = {r["id"]: r for r in results(out)}
    assert done.returncode == 1 and records["b"]["outcome"] == "crash" and records["b"]["signal"] == "SIGABRT"
    assert records["a"]["values"] == [55] and records["c"]["values"] == [["x"]]


@pytest.mark.parametrize("kind", ["missing", "not executable"])
def test_spider_run_with_a_bad_executor_is_one_line(package_dir: Path, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "spider-task-executor"
    if kind == "not executable":
        path.write_text("")
    done = subprocess.run(
        [str(SPIDER), "run", PKG, "fibonacci", "10", "--package-dir", str(package_dir), "--executor", str(path)],
        capture_output=True, text=True, timeout=60,
    )
    expected = "no such file" if kind == "missing" else "the file is not executable"
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr


def test_spider_plugins_lists_rustexec() -> None:
    done = subprocess.run([str(SPIDER), "plugins", "--json"], capture_output=True, text=True, timeout=60)
    records = {r["name"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert records["spider_rustexec"]["status"] == "default"
    assert records["spider_rustexec"]["hooks"] == ["spider_protocol", "spider_protocol_names"]
