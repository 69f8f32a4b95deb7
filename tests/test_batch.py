"""``spider batch``'s reading of the requests, line by line (the CLI runs are in test_cli.py)."""

from __future__ import annotations

import asyncio
import io
import json
import os

import pytest

from spider_core.commands.batch import BatchError
from spider_core.commands.batch import runner as batch
from spider_core.models import PoolConfig, Success
from spider_core.tdl.wire import encode_values


def pipe_lines(data: bytes, chunks: int = 3, limit: int = 64 << 20) -> list:
    """What the pipe reader makes of ``data`` written in ``chunks`` pieces."""
    read, write = os.pipe()
    step = max(1, len(data) // chunks)
    for start in range(0, len(data), step):
        os.write(write, data[start : start + step])
    os.close(write)
    try:
        return list(batch._raw_lines(read, limit))
    finally:
        os.close(read)


def file_lines(data: bytes, limit: int = 64 << 20) -> list:
    lines = batch._Lines(io.BytesIO(data), limit)
    out = []
    while True:
        out.append(lines._readline())
        if out[-1] == b"":
            return out


@pytest.mark.parametrize("read", [pipe_lines, file_lines])
def test_lines_keep_their_newlines_and_a_last_line_may_lack_one(read) -> None:
    assert read(b'{"a": 1}\n\n{"b": "x\xe2\x80\xa8y"}\n{"c"') == [b'{"a": 1}\n', b"\n", b'{"b": "x\xe2\x80\xa8y"}\n', b'{"c"', b""]


@pytest.mark.parametrize("read", [pipe_lines, file_lines])
def test_an_overlong_line_is_skipped_without_losing_its_neighbours(read, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "_CHUNK", 4)
    data = b"short\n" + b"x" * 25 + b"\n" + b"exactly 10\n" + b"y" * 11
    assert read(data, limit=10) == [b"short\n", batch._OVERLONG, b"exactly 10\n", batch._OVERLONG, b""]


def test_a_reader_thread_failure_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int, limit: int):
        yield b"first\n"
        raise MemoryError

    monkeypatch.setattr(batch, "_raw_lines", broken)
    read, write = os.pipe()

    async def scenario() -> list:
        lines = batch._Lines(os.fdopen(read, "rb"), 64 << 20)
        got = [await lines.next()]
        with pytest.raises(BatchError, match="cannot read the requests: MemoryError"):
            await asyncio.wait_for(lines.next(), 10)
        return got

    try:
        assert asyncio.run(scenario()) == [b"first\n"]
    finally:
        os.close(write)


# -- the run with --slots, against a pool that runs whatever it is given -------------------------


class FakePool:
    """Stands in for ProcessPool: request ``inputs[0]`` (a name) completes when the test says."""

    def __init__(self, config) -> None:
        self.config = config
        self.gates: dict[str, asyncio.Future] = {}
        self.started: list[str] = []
        self.cancelled: list[str] = []

    async def __aenter__(self) -> FakePool:
        return self

    async def __aexit__(self, *exc_info) -> None:
        pass

    def gate(self, name: str) -> asyncio.Future:
        return self.gates.setdefault(name, asyncio.get_running_loop().create_future())

    async def execute(self, request, hard_timeout):
        name = request.inputs[0]
        self.started.append(name)
        try:
            await self.gate(name)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        return Success(outputs=encode_values([name]), elapsed_us=1, executor_id=1)


class FakeLines:
    """Request lines handed out one at a time, counting how many were taken; ``blocking``: the
    lines come from a producer, and after the last one the run waits for more (``end()``)."""

    def __init__(self, texts: list[str], blocking: bool = False) -> None:
        self.texts = [text.encode() + b"\n" for text in texts]
        self.taken = 0
        self.blocking = blocking
        self.more: asyncio.Future | None = None

    async def next(self) -> bytes:
        if self.taken == len(self.texts):
            if self.blocking:
                self.more = asyncio.get_running_loop().create_future()
                await self.more
            return b""
        self.taken += 1
        return self.texts[self.taken - 1]


def req(name: str) -> str:
    return json.dumps({"id": name, "package": "p", "task": "t", "inputs": [name]})


@pytest.fixture
def fake_pool(monkeypatch: pytest.MonkeyPatch) -> list[FakePool]:
    made: list[FakePool] = []

    def make(config) -> FakePool:
        made.append(FakePool(config))
        return made[-1]

    monkeypatch.setattr(batch, "ProcessPool", make)
    return made


def start_run(lines: FakeLines, sink: io.StringIO, slots: int, strict: bool = False) -> asyncio.Task:
    config = PoolConfig(package_dir=".", slots=slots)
    meter = batch.Progress(False, io.StringIO())
    return asyncio.ensure_future(batch._run(lines, sink, config, 5.0, {}, strict, meter))


async def until(condition) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the run never got there")


def written(sink: io.StringIO) -> list[tuple]:
    return [(r["id"], r["outcome"]) for r in map(json.loads, sink.getvalue().splitlines())]


def test_slots_keep_twice_as_many_requests_running_and_read_no_further(fake_pool) -> None:
    async def scenario() -> None:
        lines, sink = FakeLines([req(str(i)) for i in range(10)]), io.StringIO()
        run = start_run(lines, sink, slots=2)
        await until(lambda: fake_pool and len(fake_pool[0].started) == 4)
        pool = fake_pool[0]
        assert lines.taken == 4 and sink.getvalue() == ""
        pool.gate("2").set_result(None)  # completion order, not request order
        await until(lambda: len(pool.started) == 5)
        assert lines.taken == 5 and written(sink) == [("2", "success")]
        for i in range(10):
            if not pool.gate(str(i)).done():
                pool.gate(str(i)).set_result(None)
        assert await asyncio.wait_for(run, 5) == batch.EXIT_OK
        assert sorted(i for i, _ in written(sink)) == sorted(str(i) for i in range(10))
        assert written(sink)[0] == ("2", "success") and pool.cancelled == []

    asyncio.run(scenario())


def test_one_slot_reads_the_next_line_only_once_the_previous_result_is_written(fake_pool) -> None:
    async def scenario() -> None:
        lines, sink = FakeLines([req("a"), "{", req("b")]), io.StringIO()
        run = start_run(lines, sink, slots=1)
        await until(lambda: fake_pool and fake_pool[0].started == ["a"])
        await asyncio.sleep(0.01)
        assert lines.taken == 1  # the malformed line 2 is not reported before a's result
        fake_pool[0].gate("a").set_result(None)
        fake_pool[0].gate("b").set_result(None)
        assert await asyncio.wait_for(run, 5) == batch.EXIT_TASK_FAILURE
        assert written(sink) == [("a", "success"), (None, "invalid_request"), ("b", "success")]

    asyncio.run(scenario())


def test_strict_lets_the_running_requests_finish_and_write_their_lines(fake_pool) -> None:
    async def scenario() -> None:
        lines, sink = FakeLines([req("a"), req("b"), "{", req("c")]), io.StringIO()
        run = start_run(lines, sink, slots=2, strict=True)
        await until(lambda: fake_pool and len(fake_pool[0].started) == 2 and sink.getvalue())
        assert written(sink) == [(None, "invalid_request")] and not run.done()
        fake_pool[0].gate("b").set_result(None)
        fake_pool[0].gate("a").set_result(None)
        with pytest.raises(BatchError, match="line 3 is malformed and --strict is set; stopped"):
            await asyncio.wait_for(run, 5)
        assert written(sink) == [(None, "invalid_request"), ("b", "success"), ("a", "success")]
        assert fake_pool[0].started == ["a", "b"] and lines.taken == 3

    asyncio.run(scenario())


def test_an_interrupted_run_cancels_the_running_requests_and_writes_none_of_them(fake_pool) -> None:
    async def scenario() -> None:
        lines, sink = FakeLines([req(str(i)) for i in range(6)]), io.StringIO()
        run = start_run(lines, sink, slots=2)
        await until(lambda: fake_pool and len(fake_pool[0].started) == 4)
        fake_pool[0].gate("0").set_result(None)
        await until(lambda: len(fake_pool[0].started) == 5)
        run.cancel()  # what asyncio.run does on SIGINT
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run, 5)
        assert written(sink) == [("0", "success")]
        assert sorted(fake_pool[0].cancelled) == ["1", "2", "3", "4"]

    asyncio.run(scenario())


def test_a_write_that_fails_while_waiting_for_the_producer_ends_the_run(fake_pool) -> None:
    class FullDisk(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    async def scenario() -> None:
        lines = FakeLines([req("a"), req("b")], blocking=True)
        run = start_run(lines, FullDisk(), slots=2)
        await until(lambda: lines.more is not None)  # waiting for a line that does not come
        fake_pool[0].gate("a").set_result(None)
        with pytest.raises(OSError, match="No space left"):
            await asyncio.wait_for(run, 5)
        assert fake_pool[0].cancelled == ["b"] and lines.more.cancelled()

    asyncio.run(scenario())


def test_a_cluster_runs_as_many_requests_as_its_workers_have_slots(fake_pool) -> None:
    class FakeCluster(FakePool):
        slots = 3  # workers x slots per worker, as the cluster says

    async def scenario() -> None:
        cluster = FakeCluster(None)
        lines, sink = FakeLines([req(str(i)) for i in range(10)]), io.StringIO()
        meter = batch.Progress(False, io.StringIO())
        config = PoolConfig(package_dir=".", slots=1)  # one slot per worker
        run = asyncio.ensure_future(batch._run(lines, sink, config, 5.0, {}, False, meter, cluster=cluster))
        await until(lambda: len(cluster.started) == 6)
        await asyncio.sleep(0.01)
        assert lines.taken == 6 and fake_pool == []  # no local pool
        cluster.slots = 1  # a worker left: one request at a time from now on
        for i in range(10):
            cluster.gate(str(i)).set_result(None)
        assert await asyncio.wait_for(run, 5) == batch.EXIT_OK
        assert sorted(i for i, _ in written(sink)) == sorted(str(i) for i in range(10))

    asyncio.run(scenario())
