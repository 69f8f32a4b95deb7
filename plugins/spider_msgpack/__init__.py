"""spider_msgpack: the default framing, a 4-byte big-endian length prefix and a msgpack body.

The prefix is the one spider's executor uses (tokio's ``LengthDelimitedCodec``); the body is
msgpack instead of bincode. Frames larger than ``max_frame_size`` are refused on both sides.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from spider_core.plugin import FramingError, LengthDelimitedDecoder, hookimpl

_HEADER = struct.Struct(">I")
_KEEP_PACKER_BELOW = 1 << 20


class MsgpackDecoder(LengthDelimitedDecoder):
    """Incremental decoder: feed bytes, take complete messages."""

    def next_message(self) -> Any | None:
        body = self.next_body()
        if body is None:
            return None
        try:
            return msgpack.unpackb(body)
        except Exception as e:
            raise FramingError(f"frame of {len(body)} bytes is not a msgpack message: {e}") from None


class MsgpackFraming:
    """Encodes with one reused ``msgpack.Packer`` (``packb`` builds a new one per call), so
    ``encode`` is for one thread at a time; each pool and each executor has its own framing."""

    name = "msgpack"

    def __init__(self, max_frame_size: int) -> None:
        if max_frame_size <= 0:
            raise ValueError(f"max_frame_size must be positive, got {max_frame_size}")
        self.max_frame_size = max_frame_size
        self._packer = msgpack.Packer()

    def encode(self, message: Any) -> bytes:
        try:
            body: bytes = self._packer.pack(message)  # the packer resets itself, also on errors
        except (TypeError, ValueError, OverflowError) as e:
            raise FramingError(f"cannot encode message as msgpack: {e}") from None
        if len(body) > _KEEP_PACKER_BELOW:
            self._packer = msgpack.Packer()  # do not hold on to a large internal buffer
        if len(body) > self.max_frame_size:
            raise FramingError(
                f"message of {len(body)} bytes exceeds the maximum frame size of "
                f"{self.max_frame_size} bytes (raise max_frame_size to allow it: PoolConfig(max_frame_size=...), "
                "or --max-frame-size of spider run and spider batch)"
            )
        return _HEADER.pack(len(body)) + body

    def decoder(self) -> MsgpackDecoder:
        return MsgpackDecoder(self.max_frame_size)


@hookimpl(trylast=True)
def spider_framing(max_frame_size: int) -> MsgpackFraming:
    return MsgpackFraming(max_frame_size)
