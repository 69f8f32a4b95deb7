"""spider_msgpack: the default framing, a 4-byte big-endian length prefix and a msgpack body.
The prefix is the one spider's executor uses (tokio's ``LengthDelimitedCodec``); the body is
msgpack instead of bincode; frames larger than ``max_frame_size`` are refused on both sides.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from spider_core.plugin import Frame, FramingError, LengthDelimitedDecoder, hookimpl
from spider_msgpack.inplace import execute_in_place

_HEADER = struct.Struct(">I")
_BIN32 = struct.Struct(">BI")  # msgpack's bin 32: 0xc6, then a 4-byte big-endian length
_KEEP_PACKER_BELOW = 1 << 20
#: ``bytes`` fields at least this long stay out of line (msgpack writes them as ``bin 32``
#: from 64 KiB on, so the header is the one it would write).
OUT_OF_LINE = 64 * 1024


class MsgpackDecoder(LengthDelimitedDecoder):
    """Incremental decoder: feed bytes, take complete messages. It reads a frame into one
    buffer of its announced length and unpacks it from there (msgpack copies each ``bin`` out
    into its ``bytes``: the one copy a received payload takes), except the ``raw_inputs`` of a
    large ``Execute`` (what only an executor reads), which it keeps in that buffer, as a view
    (:mod:`spider_msgpack.inplace`)."""

    def next_message(self) -> Any | None:
        body = self.next_body()
        if body is None:
            return None
        if len(body) >= OUT_OF_LINE:
            message = execute_in_place(body)
            if message is not None:
                return message
        try:
            return msgpack.unpackb(body)
        except Exception as e:
            raise FramingError(f"frame of {len(body)} bytes is not a msgpack message: {e}") from None


class MsgpackFraming:
    """Encodes with one reused ``msgpack.Packer`` (``packb`` builds a new one per call), so
    ``encode`` is for one thread at a time; each pool and each executor has its own framing.

    A message with a ``bytes`` (or ``memoryview``: a native package's own output buffer) field
    of :data:`OUT_OF_LINE` or more (a request's inputs, a result's outputs) is encoded as a list of buffers: the field itself is one of them, behind
    its msgpack ``bin 32`` header, so it is written to the pipe from where it lies, never
    copied into the frame. The bytes on the pipe are the same either way.
    """

    name = "msgpack"

    def __init__(self, max_frame_size: int) -> None:
        if max_frame_size <= 0:
            raise ValueError(f"max_frame_size must be positive, got {max_frame_size}")
        self.max_frame_size = max_frame_size
        self._packer = msgpack.Packer()

    def encode(self, message: Any) -> Frame:
        if type(message) is list:
            for item in message:
                if (type(item) is bytes or type(item) is memoryview) and len(item) >= OUT_OF_LINE:
                    return self._encode_parts(message)
        try:
            body: bytes = self._packer.pack(message)  # the packer resets itself, also on errors
        except (TypeError, ValueError, OverflowError) as e:
            raise FramingError(f"cannot encode message as msgpack: {e}") from None
        if len(body) > _KEEP_PACKER_BELOW:
            self._packer = msgpack.Packer()  # do not hold on to a large internal buffer
        self._check_size(len(body))
        return _HEADER.pack(len(body)) + body

    def _encode_parts(self, message: list[Any]) -> list[bytes | memoryview]:
        """The frame of an array whose large ``bytes`` items stay out of line: the prefix and
        the packed items up to the first large one, that one, the items up to the next, ..."""
        parts: list[bytes | memoryview] = []
        head = [self._packer.pack_array_header(len(message))]
        try:
            for item in message:
                if (type(item) is bytes or type(item) is memoryview) and len(item) >= OUT_OF_LINE:
                    self._check_size(len(item))  # before its header, which holds 4 bytes of length
                    head.append(_BIN32.pack(0xC6, len(item)))
                    parts += (b"".join(head), item)
                    head = []
                else:
                    head.append(self._packer.pack(item))
        except (TypeError, ValueError, OverflowError) as e:
            raise FramingError(f"cannot encode message as msgpack: {e}") from None
        parts.append(b"".join(head))
        size = sum(map(len, parts))
        self._check_size(size)
        parts[0] = _HEADER.pack(size) + parts[0]
        return parts

    def _check_size(self, size: int) -> None:
        if size > self.max_frame_size:
            raise FramingError(
                f"message of {size} bytes exceeds the maximum frame size of "
                f"{self.max_frame_size} bytes (raise max_frame_size to allow it: PoolConfig(max_frame_size=...), "
                "or --max-frame-size of spider run and spider batch)"
            )

    def decoder(self) -> MsgpackDecoder:
        return MsgpackDecoder(self.max_frame_size)


@hookimpl(trylast=True)
def spider_framing(max_frame_size: int) -> MsgpackFraming:
    return MsgpackFraming(max_frame_size)
