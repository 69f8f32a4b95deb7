"""Fuzzing the frame decoders, the message codec, the executor's request handling and the pool's
result handling with Hypothesis: whatever arrives, the answer is a valid message or a clean
``FramingError`` / ``ProtocolError``, an executor that exits with a documented status, or an
outcome the pool can explain; never another exception, a hang, or a wrong result."""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import spider_core as sc
from helpers import PKG, ExecutorProcess
from spider_core.protocol import (
    EXIT_OK,
    EXIT_PROTOCOL_ERROR,
    FramingError,
    ProtocolError,
    Ready,
    Result,
    Shutdown,
    decode_ready,
    decode_request,
    decode_result,
)
from spider_core.tdl import EncodingError, TaskError, TdlErrorKind
from spider_msgpack import MsgpackDecoder, MsgpackFraming

MAX = 4096  # a small maximum frame size, so that lengths near and past it are cheap

leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False), st.binary(max_size=64), st.text(max_size=32),
)
primitives = st.recursive(leaves, lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
#: Arrays that look like messages: a real or bogus tag, then fields of any type.
near_messages = st.builds(
    lambda tag, fields: [tag, *fields],
    st.sampled_from(["Execute", "Result", "Ready", "Shutdown", "Bogus", ""]),
    st.lists(leaves, max_size=8),
)
#: Well-formed Execute arrays with one field replaced by anything.
mutated_executes = st.builds(
    lambda i, value: [v if n != i else value for n, v in enumerate(["Execute", 1, PKG, "noop", b"", b"", 0])],
    st.integers(0, 6), leaves,
)
any_primitive = primitives | near_messages | mutated_executes


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def packed(message: Any) -> bytes:
    import msgpack

    return msgpack.packb(message)


#: Byte streams: random bytes, frames of random bodies, frames of messages of any shape, a
#: header near or past the size limit, a valid frame followed by garbage.
streams = st.one_of(
    st.binary(max_size=256),
    st.binary(max_size=256).map(frame),
    any_primitive.map(lambda m: frame(packed(m))),
    st.builds(lambda size, body: struct.pack(">I", size) + body, st.integers(MAX - 2, MAX + 2), st.binary(max_size=64)),
    st.builds(lambda m, tail: frame(packed(m)) + tail, any_primitive, st.binary(max_size=64)),
)


def drain(decoder: MsgpackDecoder) -> tuple[list[Any], FramingError | None]:
    """Every complete message, and the FramingError that ended the stream, if one did."""
    messages = []
    while True:
        try:
            message = decoder.next_message()
        except FramingError as e:
            return messages, e
        if message is None:
            return messages, None
        messages.append(message)


# -- the framing plugin's decoder ------------------------------------------------------------


@pytest.mark.slow
@given(data=streams, chunk=st.integers(1, 300))
def test_the_decoder_yields_messages_or_a_framing_error(data: bytes, chunk: int) -> None:
    decoder = MsgpackDecoder(MAX)
    for start in range(0, len(data), chunk):
        decoder.feed(data[start : start + chunk])
        assert decoder.wanted() >= 0 or decoder.pending() >= 4  # a hint, but never an exception
        _, error = drain(decoder)
        if error is not None:
            return
    assert decoder.pending() <= len(data)


@given(size=st.integers(MAX - 3, MAX + 3), body=st.binary(max_size=MAX + 8))
def test_lengths_near_and_past_the_limit(size: int, body: bytes) -> None:
    decoder = MsgpackDecoder(MAX)
    decoder.feed(struct.pack(">I", size) + body)
    if size > MAX:
        with pytest.raises(FramingError, match=f"frame of {size} bytes exceeds the maximum frame size of {MAX} bytes"):
            decoder.next_message()
    elif len(body) < size:
        assert decoder.next_message() is None  # incomplete: waits for the rest
        assert decoder.wanted() == size - len(body)
    else:
        try:
            decoder.next_message()
        except FramingError as e:
            assert "is not a msgpack message" in str(e)


@pytest.mark.slow
@given(message=primitives, tail=st.binary(max_size=128))
def test_a_valid_frame_followed_by_garbage(message: Any, tail: bytes) -> None:
    framing = MsgpackFraming(MAX)
    try:
        data = framing.encode(message)
    except FramingError:
        return  # over the limit (or a map msgpack cannot pack): refused at encoding
    import msgpack

    decoder = MsgpackDecoder(MAX)
    decoder.feed(data + tail)
    assert decoder.next_message() == msgpack.unpackb(msgpack.packb(message))
    drain(decoder)  # the garbage after it: messages, None or a FramingError, nothing else


def test_a_deeply_nested_body_is_a_framing_error_not_a_crash() -> None:
    decoder = MsgpackDecoder(1 << 20)
    decoder.feed(frame(b"\x91" * 200_000 + b"\xc0"))
    with pytest.raises(FramingError):
        decoder.next_message()


# -- the codec: decode_request, decode_result, decode_ready ----------------------------------


@pytest.mark.slow
@given(primitive=any_primitive, seq=st.integers(0, 10))
def test_the_codec_gives_a_message_or_a_protocol_error(primitive: Any, seq: int) -> None:
    try:
        request = decode_request(primitive)
        assert request == Shutdown() or (isinstance(request, tuple) and len(request) == 6)
    except ProtocolError:
        pass
    try:
        fields = decode_result(primitive, seq)
        assert fields[0] == seq and type(fields[1]) is bool and type(fields[2]) is bytes
    except ProtocolError:
        pass
    try:
        assert isinstance(decode_ready(primitive), Ready)
    except ProtocolError:
        pass


# -- the executor's request handling ---------------------------------------------------------


def expected_exit(data: bytes) -> tuple[int, int]:
    """(exit status, results) of an executor that reads ``data`` then end of input."""
    decoder = MsgpackDecoder(MAX)
    decoder.feed(data)
    results = 0
    while True:
        try:
            message = decoder.next_message()
        except FramingError:
            return EXIT_PROTOCOL_ERROR, results
        if message is None:
            return (EXIT_PROTOCOL_ERROR if decoder.pending() else EXIT_OK), results
        try:
            request = decode_request(message)
        except ProtocolError:
            return EXIT_PROTOCOL_ERROR, results
        if request == Shutdown():
            return EXIT_OK, results
        results += 1


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=streams)
def test_the_executor_answers_or_exits_cleanly_on_garbage(package_dir: Path, data: bytes) -> None:
    status, results = expected_exit(data)
    executor = ExecutorProcess(package_dir, env={"SPIDER_MAX_FRAME_SIZE": str(MAX)}, max_frame_size=MAX)
    try:
        assert isinstance(executor.receive(), Ready)
        executor.proc.stdin.write(data)  # type: ignore[union-attr]
        executor.proc.stdin.close()  # type: ignore[union-attr]
        answers = []
        while (answer := executor.receive()) is not None:
            answers.append(answer)
        assert executor.wait(10) == status
        assert len(answers) == results and all(isinstance(a, Result) for a in answers)
        stderr = executor.proc.stderr.read().decode()  # type: ignore[union-attr]
        for line in stderr.splitlines():  # structured events only: no traceback
            json.loads(line)
    finally:
        executor.close()


# -- the pool's result handling --------------------------------------------------------------

FAKE_EXECUTOR = textwrap.dedent("""\
    # Says Ready, reads one request, answers with the bytes given in hex, then exits at the next input.
    import os, struct, sys
    import msgpack

    def read(n):
        data = b""
        while len(data) < n:
            chunk = os.read(0, n - len(data))
            if not chunk:
                sys.exit(0)
            data += chunk
        return data

    ready = msgpack.packb(["Ready", os.getpid(), "0.1.0"])
    os.write(1, struct.pack(">I", len(ready)) + ready)
    (size,) = struct.unpack(">I", read(4))
    read(size)
    os.write(1, bytes.fromhex(sys.argv[1][1:]))  # after an "x": argv holds no empty string
    os.read(0, 65536)  # exits at the next request (the pool's Shutdown) or at end of input
""")


def expected_outcome(reply: bytes) -> type | None:
    """What the pool must make of ``reply`` to request 1 (None: it is a valid answer)."""
    decoder = MsgpackDecoder(MAX)
    decoder.feed(reply)
    try:
        message = decoder.next_message()
    except FramingError:
        return sc.ExecutorCrash
    if message is None:
        return sc.Timeout  # an incomplete frame: the pool waits for the rest until the deadline
    try:
        decode_result(message, 1)
    except ProtocolError:
        return sc.ExecutorCrash
    return None


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(reply=streams)
def test_the_pool_turns_a_garbage_answer_into_a_crash(tmp_path_factory: pytest.TempPathFactory, reply: bytes) -> None:
    expected = expected_outcome(reply)
    assume(expected is not None)
    root = tmp_path_factory.mktemp("fake")
    script = root / "fake_executor.py"
    script.write_text(FAKE_EXECUTOR)
    config = sc.PoolConfig(package_dir=root, executor_command=(sys.executable, str(script), "x" + reply.hex()),
                           max_frame_size=MAX, spawn_timeout=30, shutdown_grace=0.2)

    async def run() -> sc.Outcome:
        async with sc.ProcessPool(config) as pool:
            return await pool.execute(sc.ExecuteRequest(package=PKG, task="noop"), hard_timeout=0.2)

    outcome = asyncio.run(asyncio.wait_for(run(), 60))
    assert type(outcome) is expected, (reply, outcome)


@pytest.fixture(scope="module")
def raw_pool(package_dir: Path) -> Iterator[sc.SyncProcessPool]:
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=package_dir, max_frame_size=MAX)) as pool:
        yield pool


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=MAX + 64), st.lists(primitives, max_size=4).map(sc.tdl.encode_values)))
def test_arbitrary_task_outputs_reach_the_caller_as_they_are(raw_pool: sc.SyncProcessPool, data: bytes) -> None:
    """raw_outputs returns its input as the task's whole output buffer: the pool hands it over
    byte for byte (whatever it is), or, past the frame limit, refuses it cleanly."""
    executors = raw_pool.executor_ids
    try:
        outcome = raw_pool.execute(sc.ExecuteRequest(package=PKG, task="raw_outputs", inputs=[data]), 10)
    except sc.EncodeTaskInputs as e:
        assert len(data) > MAX - 64 and "exceeds the maximum frame size" in str(e)
        return
    assert raw_pool.executor_ids == executors  # the executor served it and lives on
    if isinstance(outcome, sc.InTaskFailure):
        assert isinstance(outcome.error, TaskError) and outcome.error.error.kind is TdlErrorKind.SerializationError
        assert len(data) > MAX - 64
        return
    assert isinstance(outcome, sc.Success), outcome
    assert outcome.outputs == data
    try:
        values = outcome.values
    except EncodingError:
        return
    assert isinstance(values, list)
