"""The default framing (spider_msgpack): a 4-byte big-endian length prefix and a msgpack body."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spider_core.protocol import FramingError
from spider_msgpack import MsgpackFraming

primitives = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


def test_a_frame_is_a_big_endian_length_and_a_msgpack_body() -> None:
    frame = MsgpackFraming(1000).encode(["Shutdown"])
    body = msgpack.packb(["Shutdown"])
    assert frame == struct.pack(">I", len(body)) + body


@pytest.mark.slow
@given(st.lists(st.lists(primitives, min_size=1, max_size=4), min_size=1, max_size=5), st.integers(1, 7))
def test_messages_survive_any_split(messages: list[list], chunk: int) -> None:
    framing = MsgpackFraming(1 << 20)
    stream = b"".join(framing.encode(m) for m in messages)
    decoder = framing.decoder()
    received = []
    for start in range(0, len(stream), chunk):
        decoder.feed(stream[start : start + chunk])
        while (message := decoder.next_message()) is not None:
            received.append(message)
    assert received == messages
    assert decoder.pending() == 0


def test_wanted_counts_the_bytes_of_the_frame_in_progress() -> None:
    framing = MsgpackFraming(1000)
    frame = framing.encode("x" * 100)
    decoder = framing.decoder()
    assert decoder.wanted() == 4
    decoder.feed(frame[:10])
    assert decoder.wanted() == len(frame) - 10
    assert decoder.next_message() is None
    decoder.feed(frame[10:])
    assert decoder.next_message() == "x" * 100


def test_too_large_a_message_is_refused_on_both_sides() -> None:
    with pytest.raises(FramingError, match="message of 11 bytes exceeds the maximum frame size of 10 bytes"):
        MsgpackFraming(10).encode("x" * 10)
    decoder = MsgpackFraming(10).decoder()
    decoder.feed(struct.pack(">I", 11))
    with pytest.raises(FramingError, match="frame of 11 bytes exceeds the maximum frame size of 10 bytes"):
        decoder.next_message()


def test_a_body_that_is_not_msgpack_is_a_framing_error() -> None:
    decoder = MsgpackFraming(100).decoder()
    decoder.feed(struct.pack(">I", 1) + b"\xc1")  # 0xc1: never used in msgpack
    with pytest.raises(FramingError, match="frame of 1 bytes is not a msgpack message"):
        decoder.next_message()


def test_the_reused_packer_recovers_from_a_failed_encode() -> None:
    framing = MsgpackFraming(1000)
    with pytest.raises(FramingError, match="cannot encode message as msgpack"):
        framing.encode({"a": [1, 2, object()]})
    assert framing.encode({"b": 1}) == struct.pack(">I", 4) + msgpack.packb({"b": 1})


def test_a_large_message_does_not_leave_a_large_packer_behind() -> None:
    framing = MsgpackFraming(1 << 24)
    packer = framing._packer
    big = b"x" * (2 << 20)
    assert framing.encode(big)[4:] == msgpack.packb(big)
    assert framing._packer is not packer
    assert framing.encode(b"y")[4:] == msgpack.packb(b"y")
