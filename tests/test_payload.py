"""Large payloads over the pipes: echoes at every size boundary, byte for byte, for native and
Python packages through both pools; frames over ``max_frame_size`` refused before anything
is allocated for them; executors killed in the middle of a large request or reply."""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import signal
import struct
import sys
import termios
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import pytest

import spider_core as sc
from spider_core.protocol import READ_SIZE, FramingError, read_into
from spider_core.protocol import framing as protocol_framing
from spider_msgpack import OUT_OF_LINE, MsgpackFraming

PKG = "integration_test_tasks"
KIB, MIB = 1 << 10, 1 << 20
with open("/proc/sys/fs/pipe-max-size") as _f:
    PIPE_MAX = int(_f.read())
SIZES = [0, 1, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, PIPE_MAX - 1, PIPE_MAX, PIPE_MAX + 1, 8 * MIB, 64 * MIB]
KINDS = ["native", "python"]
MAX_FRAME = 80 * MIB

ECHO_PY = """
    from spider_core.sdk import Package, TaskContext

    package = Package("echo_py")


    @package.task
    def echo(ctx: TaskContext, data: bytes) -> bytes:
        return data
"""


def size_id(size: int) -> str:
    return f"{size}B"


def pattern(size: int) -> bytes:
    """``size`` bytes that repeat every 251 (a prime), so a shifted or dropped chunk shows."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


def request(kind: str, data: bytes) -> sc.ExecuteRequest:
    if kind == "native":  # raw_outputs: its input bytes become its output buffer, as they are
        return sc.ExecuteRequest(package=PKG, task="raw_outputs", inputs=[data])
    return sc.ExecuteRequest(package="echo_py", task="echo", inputs=[data])


def check_echo(kind: str, outcome: sc.Outcome, data: bytes) -> None:
    assert isinstance(outcome, sc.Success), f"{outcome!r:.300}"
    got = outcome.outputs if kind == "native" else outcome.values[0]
    same = got == data  # compared here: pytest would try to diff megabytes in the assertion
    assert same, f"{len(got)} bytes came back for {len(data)}, first difference at {_first_difference(got, data)}"


def _first_difference(a: bytes, b: bytes) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def wait_until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.001)


@pytest.fixture(scope="module")
def packages(package_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("payload-packages")
    shutil.copytree(package_dir / PKG, root / PKG)
    (root / "echo_py").mkdir()
    (root / "echo_py" / "__init__.py").write_text(textwrap.dedent(ECHO_PY))
    return root


def config(packages: Path, **options: Any) -> sc.PoolConfig:
    return sc.PoolConfig(package_dir=packages, log_dir=None, max_frame_size=MAX_FRAME, **options)


@pytest.fixture(scope="module", params=[0, 300], ids=["block", "spin"])
def sync_pool(request: pytest.FixtureRequest, packages: Path) -> Iterator[sc.SyncProcessPool]:
    with sc.SyncProcessPool(config(packages, spin_us=request.param)) as pool:
        yield pool


# -- echoes across every boundary ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_echo_through_the_sync_pool_is_byte_for_byte(sync_pool: sc.SyncProcessPool, kind: str, size: int) -> None:
    data = pattern(size)
    check_echo(kind, sync_pool.execute(request(kind, data), 60), data)


@pytest.mark.parametrize("kind", KINDS)
def test_echo_through_the_async_pool_and_map_is_byte_for_byte(packages: Path, kind: str) -> None:
    batch = [pattern(size) for size in (1, OUT_OF_LINE + 1, 10, MIB + 1, 0, 3)]  # large frames between small ones

    async def main() -> None:
        async with sc.ProcessPool(config(packages)) as pool:
            for size in SIZES:
                data = pattern(size)
                check_echo(kind, await pool.execute(request(kind, data), 60), data)
            outcomes = [outcome async for outcome in pool.map([request(kind, data) for data in batch], 60)]
            for outcome, data in zip(outcomes, batch, strict=True):
                check_echo(kind, outcome, data)

    asyncio.run(main())


# -- the frame decoder and encoder -------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[OUT_OF_LINE - 1], [OUT_OF_LINE], [OUT_OF_LINE, 5, 3 * MIB], [0, 2 * MIB + 7]])
def test_large_bytes_fields_stay_out_of_line_with_the_same_bytes_on_the_pipe(sizes: list[int]) -> None:
    framing = MsgpackFraming(MAX_FRAME)
    message = ["Result", 7, True, *(pattern(size) for size in sizes), 12]
    frame = framing.encode(message)
    body = msgpack.packb(message)
    expected = struct.pack(">I", len(body)) + body
    if any(size >= OUT_OF_LINE for size in sizes):
        assert isinstance(frame, list)
        assert any(part is item for part in frame for item in message)  # by reference, not copied
        assert b"".join(frame) == expected
    else:
        assert frame == expected
    decoder = framing.decoder()
    decoder.feed(b"".join(frame) if isinstance(frame, list) else frame)
    assert decoder.next_message() == message


@pytest.mark.parametrize(
    "value",
    [b"x" * (64 * KIB - 1), pattern(64 * KIB), pattern(MIB + 3), "\u00e9" * 40_000, "a" * 70_000, ["x" * 70_000]],
    ids=["bytes-64KiB-1", "bytes-64KiB", "bytes-1MiB+3", "str-2-byte-chars", "str-ascii", "nested"],
)
def test_large_values_are_framed_with_the_bytes_packb_gives(value: Any) -> None:
    from spider_core.tdl import decode_values, encode_values, frame_payloads

    frame = encode_values([value, 3])
    assert frame == frame_payloads([msgpack.packb(value), msgpack.packb(3)])
    assert decode_values(frame) == [value, 3]


@pytest.mark.parametrize("seq", [0, 127, 128, 2**16, 2**40])
@pytest.mark.parametrize("name", ["t", "x" * 40, "\u00e9" * 200])
def test_a_large_execute_keeps_its_inputs_in_the_frame(seq: int, name: str) -> None:
    framing = MsgpackFraming(MAX_FRAME)
    message = ["Execute", seq, name, name, b"ctx", pattern(OUT_OF_LINE + 5), 2**33]
    decoder = framing.decoder()
    decoder.feed(b"".join(framing.encode(message)))  # type: ignore[arg-type]  # large: a list of parts
    got = decoder.next_message()
    assert got == message
    assert type(got[5]) is memoryview and got[5].obj is not message[5]  # a view of the frame's buffer
    assert type(got[4]) is bytes


@pytest.mark.parametrize(
    "message",
    [
        ["Execute", 1, "p", "t", b"", pattern(OUT_OF_LINE), 0, "more"],  # eight fields
        ["Execute", -1, "p", "t", b"", pattern(OUT_OF_LINE), 0],  # a negative seq
        ["Execute", 1, "p", 5, b"", pattern(OUT_OF_LINE), 0],  # a task that is no string
        ["Result", 1, True, pattern(OUT_OF_LINE), 0],
    ],
    ids=["eight-fields", "negative-seq", "int-task", "result"],
)
def test_other_large_messages_are_decoded_by_msgpack(message: list[Any]) -> None:
    framing = MsgpackFraming(MAX_FRAME)
    decoder = framing.decoder()
    decoder.feed(b"".join(framing.encode(message)))  # type: ignore[arg-type]
    got = decoder.next_message()
    assert got == message
    assert not any(type(item) is memoryview for item in got)


def test_a_large_execute_with_invalid_utf8_is_refused_by_msgpack() -> None:
    body = msgpack.packb(["Execute", 1, "p", "t", b"", pattern(OUT_OF_LINE), 0]).replace(b"\xa1p", b"\xa1\xff", 1)
    decoder = MsgpackFraming(MAX_FRAME).decoder()
    decoder.feed(struct.pack(">I", len(body)) + body)
    with pytest.raises(FramingError, match="is not a msgpack message"):
        decoder.next_message()


def test_a_large_str_that_is_not_utf8_is_refused_as_before() -> None:
    from spider_core.tdl import WireFormatError, encode_values

    with pytest.raises(WireFormatError, match="value 0: cannot encode str value .* as msgpack"):
        encode_values(["\ud800" * 70_000])


def test_a_large_field_over_max_frame_size_is_refused_by_the_encoder() -> None:
    framing = MsgpackFraming(MIB)
    with pytest.raises(FramingError, match=f"exceeds the maximum frame size of {MIB} bytes"):
        framing.encode(["Result", 1, True, bytes(MIB + 1), 0])
    with pytest.raises(FramingError, match="exceeds the maximum frame size"):  # the whole frame counts
        framing.encode(["Result", 1, True, bytes(MIB - 2), 0])


@pytest.fixture
def allocations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the buffers frame decoders allocate (beyond the one each starts with)."""
    sizes: list[int] = []
    allocate = protocol_framing._allocate

    def recording(size: int) -> Any:
        sizes.append(size)
        return allocate(size)

    monkeypatch.setattr(protocol_framing, "_allocate", recording)
    return sizes


def _pipe_frame_through(decoder: Any, frame: bytes) -> tuple[Any, int]:
    """Write ``frame`` into a pipe from a thread and read it with ``read_into``; the message and
    the peak of Python allocations while reading (decoding excluded)."""
    read_fd, write_fd = os.pipe()
    writer = threading.Thread(target=_write, args=(write_fd, frame))
    tracemalloc.start()
    try:
        writer.start()
        while decoder.wanted() > 0 or not decoder.pending():
            assert read_into(read_fd, decoder) > 0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        writer.join()
        os.close(read_fd)
        os.close(write_fd)
    return decoder.next_message(), peak


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def test_a_large_frame_is_read_into_one_buffer_of_its_announced_length(allocations: list[int]) -> None:
    framing = MsgpackFraming(8 * MIB)
    message = ["Result", 1, True, pattern(8 * MIB - 64), 0]
    frame = b"".join(framing.encode(message))  # type: ignore[arg-type]  # large: a list of parts
    assert len(frame) <= 8 * MIB
    got, peak = _pipe_frame_through(framing.decoder(), frame)
    assert got == message
    assert allocations == [len(frame)]  # one buffer for the frame,
    assert peak < 2 * READ_SIZE  # and no copy of it on the Python heap while it is read


def test_max_frame_size_bounds_what_the_decoder_allocates(allocations: list[int]) -> None:
    decoder = MsgpackFraming(MIB).decoder()
    header = struct.pack(">I", 2**32 - 1)  # 4 GiB announced
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, header + b"\x95")
        tracemalloc.start()
        try:
            read_into(read_fd, decoder)
            with pytest.raises(FramingError, match=f"frame of {2**32 - 1} bytes exceeds the maximum frame size of {MIB} bytes"):
                decoder.next_message()
            with pytest.raises(FramingError, match="exceeds the maximum frame size"):
                decoder.buffer()  # what a reader would read into next: refused, not allocated
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert allocations == []
    assert peak < READ_SIZE


def test_a_decoder_without_buffer_is_fed_what_is_read() -> None:
    class FeedOnly:
        def __init__(self) -> None:
            self.inner = MsgpackFraming(MIB).decoder()
            self.feed = self.inner.feed
            self.next_message = self.inner.next_message
            self.pending = self.inner.pending
            self.wanted = self.inner.wanted

    frame = MsgpackFraming(MIB).encode(["Result", 1, True, b"abc", 0])
    got, _ = _pipe_frame_through(FeedOnly(), frame)  # type: ignore[arg-type]  # small: bytes
    assert got == ["Result", 1, True, b"abc", 0]


# -- max_frame_size on both sides of a live executor -------------------------------------------


def test_the_pool_refuses_a_reply_over_its_max_frame_size_before_allocating(
    packages: Path, caplog: pytest.LogCaptureFixture, allocations: list[int]
) -> None:
    class LargerExecutorLimit:
        @sc.hookimpl
        def spider_launcher(self, config: sc.PoolConfig, executor_id: int, env: dict[str, str]) -> Any:
            from spider_core.plugin import LaunchSpec

            return LaunchSpec(argv=(sys.executable, "-m", "spider_core.executor"), env={**env, "SPIDER_MAX_FRAME_SIZE": str(64 * MIB)})

    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    pm.register(LargerExecutorLimit())
    pool_config = sc.PoolConfig(package_dir=packages, log_dir=None, max_frame_size=MIB)
    with sc.SyncProcessPool(pool_config, plugin_manager=pm) as pool:
        assert pool.execute(sc.ExecuteRequest(package=PKG, task="big", inputs=[10]), 30).values == ["x" * 10]
        tracemalloc.start()
        try:
            outcome = pool.execute(sc.ExecuteRequest(package=PKG, task="big", inputs=[4 * MIB]), 30)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert isinstance(outcome, sc.ExecutorCrash)
    assert f"the executor sent an undecodable frame: frame of 4194335 bytes exceeds the maximum frame size of {MIB} bytes" in caplog.text
    assert all(size <= MIB for size in allocations)  # the 4 MiB reply was never given a buffer,
    assert peak < MIB  # nor copied


def test_the_executor_refuses_a_request_over_its_max_frame_size(package_dir: Path) -> None:
    from helpers import ExecutorProcess

    executor = ExecutorProcess(package_dir, env={"SPIDER_MAX_FRAME_SIZE": str(MIB)})
    try:
        assert executor.receive() is not None  # Ready
        executor.proc.stdin.write(struct.pack(">I", MIB + 1) + b"\x96" + bytes(1000))
        executor.proc.stdin.flush()
        assert executor.wait() == 3  # EXIT_PROTOCOL_ERROR
        errors = [e for e in executor.stderr_events() if e["event"] == "bad request"]
        assert f"frame of {MIB + 1} bytes exceeds the maximum frame size of {MIB} bytes" in errors[0]["error"]
    finally:
        executor.close()


# -- executors killed mid-transfer --------------------------------------------------------------


def _pipe_inodes(pid: int | str, writable: bool, lowest_fd: int = 0) -> set[str]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(next(line for line in f if line.startswith("flags:")).split()[1], 8)
        except (OSError, StopIteration):
            continue
        if target.startswith("pipe:") and int(fd) >= lowest_fd and bool(flags & os.O_WRONLY) == writable:
            found.add(target)
    return found


def protocol_pipe(executor_pid: int, direction: str) -> int:
    """The pool's end of the executor's request or reply pipe (the executor's protocol
    descriptors sit at 200 and above)."""
    inode = _pipe_inodes(executor_pid, writable=direction == "reply", lowest_fd=200).pop()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == inode:
                return int(fd)
        except OSError:
            continue
    raise AssertionError(f"the pool holds no end of the executor's {direction} pipe")


def bytes_in_protocol_pipe(executor_pid: int, direction: str) -> int:
    """Bytes waiting in the executor's request or reply pipe."""
    fd = protocol_pipe(executor_pid, direction)
    return int(struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0])


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("pool_kind", ["sync", "async"])
def test_an_executor_killed_while_it_reads_a_large_request(packages: Path, pool_kind: str) -> None:
    data = pattern(64 * MIB)

    def scenario(execute: Callable[[sc.ExecuteRequest], sc.Outcome], pid: Callable[[], int]) -> None:
        check_echo("native", execute(request("native", b"warm")), b"warm")
        fds, first = open_fds(), pid()
        os.kill(first, signal.SIGSTOP)  # it reads nothing: the request stays half sent
        with ThreadPoolExecutor(1) as threads:
            future = threads.submit(execute, request("native", data))
            wait_until(lambda: bytes_in_protocol_pipe(first, "request") > 0)
            os.kill(first, signal.SIGKILL)
            outcome = future.result(60)
        assert isinstance(outcome, sc.ExecutorCrash), f"{outcome!r:.300}"
        check_echo("native", execute(request("native", data)), data)  # the next call succeeds
        assert pid() != first
        assert open_fds() == fds  # the dead executor's pipes and pidfd are closed

    if pool_kind == "sync":
        with sc.SyncProcessPool(config(packages)) as pool:
            scenario(lambda r: pool.execute(r, 60), lambda: pool.pid)  # type: ignore[arg-type, return-value]
    else:
        async def main() -> None:
            async with sc.ProcessPool(config(packages)) as pool:
                loop = asyncio.get_running_loop()

                def execute(r: sc.ExecuteRequest) -> sc.Outcome:
                    return asyncio.run_coroutine_threadsafe(pool.execute(r, 60), loop).result()

                await asyncio.to_thread(scenario, execute, lambda: pool.pid)  # type: ignore[arg-type, return-value]

        asyncio.run(main())


def test_an_executor_killed_while_it_writes_a_large_reply(packages: Path) -> None:
    size = 64 * MIB

    async def main() -> None:
        async with sc.ProcessPool(config(packages)) as pool:
            check_echo("native", await pool.execute(request("native", b"warm"), 60), b"warm")
            fds, first = open_fds(), pool.pid
            assert first is not None
            call = asyncio.ensure_future(pool.execute(sc.ExecuteRequest(package=PKG, task="big", inputs=[size]), 60))
            await asyncio.sleep(0)  # the small request is sent; then the loop is held, so nobody reads the reply
            wait_until(lambda: bytes_in_protocol_pipe(first, "reply") >= 64 * KIB)
            os.kill(first, signal.SIGKILL)  # in the middle of its 64 MiB reply
            outcome = await call
            assert isinstance(outcome, sc.ExecutorCrash), f"{outcome!r:.300}"
            again = await pool.execute(sc.ExecuteRequest(package=PKG, task="big", inputs=[size]), 60)
            same = again.values == ["x" * size]  # type: ignore[union-attr]
            assert same
            assert pool.pid != first
            assert open_fds() == fds

    asyncio.run(main())


def test_both_sides_widen_their_pipe_for_a_large_frame_only(packages: Path) -> None:
    with sc.SyncProcessPool(config(packages)) as pool:
        pid = pool.pid
        assert pid is not None

        def capacities() -> list[int]:
            return [fcntl.fcntl(protocol_pipe(pid, d), fcntl.F_GETPIPE_SZ) for d in ("request", "reply")]

        fresh = capacities()
        check_echo("native", pool.execute(request("native", pattern(60 * KIB)), 60), pattern(60 * KIB))
        assert capacities() == fresh  # small frames leave the pipes as they are
        data = pattern(2 * MIB)
        check_echo("native", pool.execute(request("native", data), 60), data)
        assert capacities() == [min(PIPE_MAX, 4 * MIB)] * 2  # the pool's request pipe, the executor's reply pipe
