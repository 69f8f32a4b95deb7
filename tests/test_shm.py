"""Large payloads through shared memory (``PoolConfig.shm_threshold``, the ``spider_shm``
plugin): echoes at every size boundary, byte for byte, for native and Python packages through
both pools and both start methods; ``max_frame_size`` bounding what either side maps or grows;
executors killed in the middle of a request or a reply, with no region left behind."""

from __future__ import annotations

import asyncio
import os
import signal
import struct
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgpack
import pytest
import test_payload
from spider_shm.framing import EXT_REF, ShmFraming
from spider_shm.region import GRAIN
from test_payload import (
    KINDS,
    MAX_FRAME,
    MIB,
    PKG,
    SIZES,
    bytes_in_protocol_pipe,
    check_echo,
    pattern,
    request,
    size_id,
    wait_until,
)

import spider_core as sc
from spider_core.protocol import FramingError

packages = test_payload.packages  # the fixture: the C package and a Python echo package

THRESHOLD = 64 * 1024  # the 64 KiB ± 1 sizes fall on both sides of it


def regions(pid: int | str = "self") -> dict[int, int]:
    """The shared-memory regions a process holds open (a mapping holds a descriptor of its
    own): inode -> size in bytes."""
    found = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("/memfd:spider-shm-"):
                stat = os.stat(f"/proc/{pid}/fd/{fd}")
                found[stat.st_ino] = stat.st_size
        except OSError:
            continue
    return found


def mappers(inodes: Iterable[int]) -> set[int]:
    """The processes that map any of the regions ``inodes``."""
    wanted = {str(ino) for ino in inodes}
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/maps") as f:
                if any("/memfd:spider-shm-" in line and line.split()[4] in wanted for line in f):
                    found.add(int(pid))
        except (OSError, IndexError):
            continue
    return found


def new_regions(before: dict[int, int]) -> dict[int, int]:
    """The regions this process holds that it did not hold ``before``."""
    return {ino: size for ino, size in regions().items() if ino not in before}


def config(packages: Path, **options: Any) -> sc.PoolConfig:
    options.setdefault("max_frame_size", MAX_FRAME)
    return sc.PoolConfig(package_dir=packages, log_dir=None, shm_threshold=THRESHOLD, **options)


@pytest.fixture(scope="module", params=[0, 300], ids=["block", "spin"])
def shm_pool(request: pytest.FixtureRequest, packages: Path) -> Iterator[sc.SyncProcessPool]:
    with sc.SyncProcessPool(config(packages, spin_us=request.param)) as pool:
        yield pool


# -- echoes across every boundary ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", SIZES, ids=size_id)
def test_echo_over_shared_memory_is_byte_for_byte(shm_pool: sc.SyncProcessPool, kind: str, size: int) -> None:
    data = pattern(size)
    check_echo(kind, shm_pool.execute(request(kind, data), 60), data)
    held = regions()
    assert len(held) == 2  # the slot's request and reply regions, nothing more
    if size >= THRESHOLD:  # the inputs (a wire frame around the data) went through a region
        assert max(held.values()) >= size


@pytest.mark.parametrize("kind", KINDS)
def test_echo_over_shared_memory_through_the_async_pool_and_map(packages: Path, kind: str, start_method: str) -> None:
    sizes = [0, 1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, MIB + 1, 8 * MIB]
    batch = [pattern(size) for size in (1, THRESHOLD + 1, 10, MIB + 1, 0, 3)]  # large between small

    before = regions()

    async def main() -> None:
        async with sc.ProcessPool(config(packages, slots=2, start_method=start_method)) as pool:
            for size in sizes:
                data = pattern(size)
                check_echo(kind, await pool.execute(request(kind, data), 60), data)
            outcomes = [outcome async for outcome in pool.map([request(kind, data) for data in batch], 60)]
            for outcome, data in zip(outcomes, batch, strict=True):
                check_echo(kind, outcome, data)
            held = new_regions(before)
            assert len(held) == 4  # two per slot
        assert new_regions(before) == {} and mappers(held) == set()  # closing freed them

    asyncio.run(main())


def test_only_the_spider_core_protocol_takes_shared_memory(packages: Path) -> None:
    before = regions()
    pool = sc.SyncProcessPool(config(packages, protocol="spider-rust", executor_command="/bin/true"))
    with pytest.raises(sc.ExecutorCreationFailure, match="PoolConfig.shm_threshold works with the 'spider-core' protocol only"):
        pool.start()
    assert new_regions(before) == {}


# -- max_frame_size bounds what either side maps or grows ---------------------------------------


def test_inputs_over_max_frame_size_are_refused_before_the_region_grows(packages: Path) -> None:
    before = regions()
    with sc.SyncProcessPool(config(packages, max_frame_size=MIB)) as pool:
        with pytest.raises(sc.EncodeTaskInputs, match=f"exceeds the maximum frame size of {MIB} bytes"):
            pool.execute(request("native", bytes(MIB + 1)), 30)
        assert list(new_regions(before).values()) == [0, 0]
        data = pattern(MIB - 256)
        check_echo("native", pool.execute(request("native", data), 30), data)  # up to the limit: fine


def test_outputs_over_max_frame_size_fail_the_task_before_the_region_grows(packages: Path) -> None:
    before = regions()
    with sc.SyncProcessPool(config(packages, max_frame_size=MIB)) as pool:
        outcome = pool.execute(sc.ExecuteRequest(package=PKG, task="big", inputs=[2 * MIB]), 30)
        assert isinstance(outcome, sc.InTaskFailure), f"{outcome!r:.300}"
        assert "exceeds the maximum frame size" in str(outcome.error)
        assert list(new_regions(before).values()) == [0, 0]
        assert pool.execute(sc.ExecuteRequest(package=PKG, task="big", inputs=[MIB // 2]), 30).values == ["x" * (MIB // 2)]
        assert max(new_regions(before).values()) <= GRAIN  # max_frame_size, rounded up to the growth step


def _reference(offset: int, length: int) -> msgpack.ExtType:
    return msgpack.ExtType(EXT_REF, struct.pack(">QQ", offset, length))


def test_a_reference_over_max_frame_size_is_refused_before_anything_is_mapped() -> None:
    pool_side = ShmFraming(8 * MIB, THRESHOLD, owner=True)
    executor_side = ShmFraming(MIB, THRESHOLD, owner=False)
    try:
        decoder = executor_side.decoder()
        decoder.feed(pool_side.encode(["Execute", 1, PKG, "t", b"", bytes(2 * MIB), 0]))  # type: ignore[arg-type]
        with pytest.raises(FramingError, match=f"exceeds the maximum frame size of {MIB} bytes"):
            decoder.next_message()
        assert executor_side.incoming is not None and executor_side.incoming.size == 0  # opened, never mapped
        # and on the pool's side, a reply's reference beyond its limit
        small_pool = ShmFraming(MIB, THRESHOLD, owner=True)
        try:
            reply = small_pool.decoder()
            body = msgpack.packb(["Result", 1, True, _reference(0, 4 * MIB), 0])
            reply.feed(struct.pack(">I", len(body)) + body)
            with pytest.raises(FramingError, match=f"exceeds the maximum frame size of {MIB} bytes"):
                reply.next_message()
            assert small_pool.incoming is not None and small_pool.incoming.size == 0
        finally:
            small_pool.close()
    finally:
        executor_side.close()
        pool_side.close()


def test_a_reference_past_the_end_of_the_region_is_refused() -> None:
    framing = ShmFraming(8 * MIB, THRESHOLD, owner=True)
    try:
        decoder = framing.decoder()
        body = msgpack.packb(["Result", 1, True, _reference(0, MIB), 0])  # the executor never grew it
        decoder.feed(struct.pack(">I", len(body)) + body)
        with pytest.raises(FramingError, match=f"holds 0 bytes, not the {MIB} announced"):
            decoder.next_message()
    finally:
        framing.close()


# -- executors killed mid-transfer: nothing leaked, the next call succeeds ------------------------


@pytest.mark.slow
def test_a_soak_over_shared_memory_holds_every_invariant(package_dir: Path) -> None:
    from spider_core.commands.soak import run_soak

    before = regions()
    summary = run_soak(package_dir, tasks=400, callers=8, slots=2, fault_rate=0.2, seed=26, shm_threshold=THRESHOLD)
    assert summary.ok, summary.failures
    assert summary.fds_before == summary.fds_after  # the regions were descriptors of the pool too
    large = next(k for k in summary.kinds if k.kind == "large")
    assert large.count and large.as_expected == large.count  # 1-4 MiB outputs, through the regions
    assert new_regions(before) == {}


def _only_the_pool_maps(held: Iterable[int], dead: int) -> None:
    """Once executor ``dead`` is gone, only this process and live executors map ``held``."""
    wait_until(lambda: not os.path.exists(f"/proc/{dead}"))
    assert mappers(held) <= {os.getpid(), *_executors()}


def _executors() -> set[int]:
    """The live executors (children and the fork server's children) of this process."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"spider_core.executor" in f.read():
                    found.add(int(pid))
        except OSError:
            continue
    return found


def test_an_executor_killed_while_it_reads_a_request_from_shared_memory(packages: Path) -> None:
    data = pattern(64 * MIB)
    before = regions()
    with sc.SyncProcessPool(config(packages)) as pool:
        check_echo("native", pool.execute(request("native", pattern(MIB)), 60), pattern(MIB))  # it maps the regions
        held = new_regions(before)
        first = pool.pid
        assert first is not None and first in mappers(held)
        os.kill(first, signal.SIGSTOP)  # it reads nothing: the request waits in the region
        with ThreadPoolExecutor(1) as threads:
            future = threads.submit(pool.execute, request("native", data), 60)
            wait_until(lambda: bytes_in_protocol_pipe(first, "request") > 0)  # the reference is sent
            assert max(new_regions(before).values()) >= len(data)  # and the bytes lie in the region
            os.kill(first, signal.SIGKILL)
            outcome = future.result(60)
        assert isinstance(outcome, sc.ExecutorCrash), f"{outcome!r:.300}"
        _only_the_pool_maps(held, first)
        check_echo("native", pool.execute(request("native", data), 60), data)  # the next call succeeds
        assert new_regions(before).keys() == held.keys()
    assert new_regions(before) == {} and mappers(held) == set()


def test_an_executor_killed_while_it_writes_a_reply_to_shared_memory(packages: Path) -> None:
    size = 64 * MIB

    async def attempt(pool: sc.ProcessPool) -> bool:
        """Kill the executor while it fills the reply region; whether it was caught in the act
        (the reply not yet on the pipe), for the call is a crash then."""
        first = pool.pid
        assert first is not None
        grown = max(new_regions(before).values())
        call = asyncio.ensure_future(pool.execute(sc.ExecuteRequest(package=PKG, task="big", inputs=[size]), 60))
        await asyncio.sleep(0)  # the request is sent; then the loop is held: nobody reads the reply
        wait_until(lambda: max(new_regions(before).values()) > grown, timeout=60)  # it grew the reply region
        os.kill(first, signal.SIGSTOP)
        caught = _reply_pipe_empty(first)
        os.kill(first, signal.SIGKILL)
        outcome = await call
        if caught:
            assert isinstance(outcome, sc.ExecutorCrash), f"{outcome!r:.300}"
        else:  # it finished first: the whole answer counts
            assert outcome.values == ["x" * size]  # type: ignore[union-attr]
        held = new_regions(before)
        _only_the_pool_maps(held, first)
        again = await pool.execute(sc.ExecuteRequest(package=PKG, task="big", inputs=[size]), 60)
        same = again.values == ["x" * size]  # type: ignore[union-attr]
        assert same, f"{again!r:.300}"
        assert new_regions(before).keys() == held.keys()
        return caught

    before = regions()

    async def main() -> None:
        caught = False
        for _ in range(3):  # a fresh pool each time: its reply region grows during the call
            async with sc.ProcessPool(config(packages)) as pool:
                await pool.execute(request("native", b"warm"), 60)
                held = new_regions(before)
                caught = await attempt(pool)
            assert new_regions(before) == {} and mappers(held) == set()
            if caught:
                break
        assert caught, "the executor finished its reply before it could be stopped, three times"

    asyncio.run(main())


def _reply_pipe_empty(executor_pid: int) -> bool:
    return bytes_in_protocol_pipe(executor_pid, "reply") == 0


def test_a_forked_child_lets_go_of_the_regions(packages: Path) -> None:
    before = regions()
    with sc.SyncProcessPool(config(packages)) as pool:
        check_echo("native", pool.execute(request("native", pattern(MIB)), 60), pattern(MIB))
        read_fd, write_fd = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - the child reports through the pipe
            os.write(write_fd, struct.pack(">I", len(new_regions(before))))
            os._exit(0)
        os.close(write_fd)
        (held,) = struct.unpack(">I", os.read(read_fd, 4))
        os.close(read_fd)
        os.waitpid(child, 0)
        assert held == 0
        check_echo("native", pool.execute(request("native", pattern(MIB)), 60), pattern(MIB))

