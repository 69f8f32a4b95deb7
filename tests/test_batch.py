"""``spider batch``'s reading of the requests, line by line (the CLI runs are in test_cli.py)."""

from __future__ import annotations

import asyncio
import io
import os

import pytest

from spider_core import batch
from spider_core.batch import BatchError


def pipe_lines(data: bytes, chunks: int = 3) -> list:
    """What the pipe reader makes of ``data`` written in ``chunks`` pieces."""
    read, write = os.pipe()
    step = max(1, len(data) // chunks)
    for start in range(0, len(data), step):
        os.write(write, data[start : start + step])
    os.close(write)
    try:
        return list(batch._raw_lines(read))
    finally:
        os.close(read)


def file_lines(data: bytes) -> list:
    lines = batch._Lines(io.BytesIO(data))
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
    monkeypatch.setattr(batch, "MAX_LINE", 10)
    monkeypatch.setattr(batch, "_CHUNK", 4)
    data = b"short\n" + b"x" * 25 + b"\n" + b"exactly 10\n" + b"y" * 11
    assert read(data) == [b"short\n", batch._OVERLONG, b"exactly 10\n", batch._OVERLONG, b""]


def test_a_reader_thread_failure_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int):
        yield b"first\n"
        raise MemoryError

    monkeypatch.setattr(batch, "_raw_lines", broken)
    read, write = os.pipe()

    async def scenario() -> list:
        lines = batch._Lines(os.fdopen(read, "rb"))
        got = [await lines.next()]
        with pytest.raises(BatchError, match="cannot read the requests: MemoryError"):
            await asyncio.wait_for(lines.next(), 10)
        return got

    try:
        assert asyncio.run(scenario()) == [b"first\n"]
    finally:
        os.close(write)
