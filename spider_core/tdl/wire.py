"""spider's wire format for task inputs and outputs (docs/abi.md §4).

``[count: u32 LE] ([len: u32 LE] [payload: len bytes]) * count``, each payload one msgpack
value. Like spider, decoding ignores bytes after the last payload and after the one msgpack
value inside a payload.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

from spider_core.tdl.errors import EncodingError

#: The frame of zero payloads: a task with no inputs, or one that returns ``()``.
EMPTY_FRAME = b"\x00\x00\x00\x00"

_U32 = struct.Struct("<I")
_U32_MAX = 2**32 - 1
#: A ``bytes`` or ``str`` value at least this long is framed from where it lies, behind the
#: msgpack header ``packb`` would give it (``bin 32`` or ``str 32``), instead of being packed
#: and copied again: one copy into the frame instead of three.
_OUT_OF_LINE = 64 * 1024
_HEADER32 = struct.Struct(">BI")
_BIN32, _STR32 = 0xC6, 0xDB


class WireFormatError(EncodingError):
    """A buffer that is not a valid wire frame, or values that cannot be framed."""


def frame_payloads(payloads: Sequence[bytes]) -> bytes:
    """Frame already-encoded msgpack payloads."""
    if len(payloads) > _U32_MAX:
        raise WireFormatError(f"cannot frame {len(payloads)} payloads: the count must fit in a u32")
    return frame_payload_parts([[payload] for payload in payloads])


def unframe_payloads(buffer: bytes) -> list[bytes]:
    """Split a frame into its payloads (raw msgpack bytes)."""
    return [bytes(view) for view in payload_views(buffer)]


def payload_views(buffer: bytes | memoryview) -> list[memoryview]:
    """:func:`unframe_payloads` without copying: each payload as a view into ``buffer``."""
    buffer = memoryview(buffer)
    size = len(buffer)
    if size < 4:
        raise WireFormatError(
            f"wire frame is {size} bytes, too small for the 4-byte payload count header"
        )
    (count,) = _U32.unpack_from(buffer, 0)
    if count > (size - 4) // 4:
        raise WireFormatError(
            f"wire frame claims {count} payloads but holds only {size} bytes"
        )
    payloads = []
    pos = 4
    for i in range(count):
        if pos + 4 > size:
            raise WireFormatError(f"wire frame is truncated in the length of payload {i}")
        (length,) = _U32.unpack_from(buffer, pos)
        pos += 4
        if pos + length > size:
            raise WireFormatError(
                f"payload {i} claims {length} bytes but only {size - pos} remain in the frame"
            )
        payloads.append(buffer[pos : pos + length])
        pos += length
    return payloads


def encode_value(value: Any) -> bytes:
    """Encode one value as rmp-serde would (see docs/abi.md §3.2 for the Python shapes)."""
    try:
        encoded: bytes = msgpack.packb(value)
        return encoded
    except (TypeError, ValueError, OverflowError) as e:
        raise WireFormatError(
            f"cannot encode {type(value).__name__} value {value!r:.80} as msgpack: {e}"
        ) from None


def decode_value(payload: bytes | memoryview) -> Any:
    """Decode the first msgpack value of a payload, ignoring trailing bytes like rmp-serde."""
    try:
        return msgpack.unpackb(payload, strict_map_key=False)
    except msgpack.ExtraData as e:
        return e.unpacked
    except Exception as e:
        raise WireFormatError(f"payload is not valid msgpack: {e}") from None


def encode_values(values: Iterable[Any]) -> bytes:
    """Frame one msgpack payload per value."""
    if not values:
        return EMPTY_FRAME
    payloads = []
    for i, value in enumerate(values):
        try:
            payloads.append(encode_value_parts(value))
        except WireFormatError as e:
            raise WireFormatError(f"value {i}: {e}") from None
    return frame_payload_parts(payloads)


def encode_value_parts(value: Any) -> list[bytes]:
    """``encode_value(value)`` as the buffers that form it: a large ``bytes`` or ``str`` value
    as its msgpack header and its bytes (the same bytes ``packb`` writes)."""
    if type(value) is bytes and _OUT_OF_LINE <= len(value) <= _U32_MAX:
        return [_HEADER32.pack(_BIN32, len(value)), value]
    if type(value) is str and _OUT_OF_LINE <= len(value):
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            data = b""  # encode_value says what is wrong
        if data and len(data) <= _U32_MAX:
            return [_HEADER32.pack(_STR32, len(data)), data]
    return [encode_value(value)]


def frame_payload_parts(payloads: Sequence[Sequence[bytes]]) -> bytes:
    """:func:`frame_payloads` of payloads each given as the buffers that form it: one copy."""
    parts = [_U32.pack(len(payloads))]
    for i, payload in enumerate(payloads):
        length = sum(map(len, payload))
        if length > _U32_MAX:
            raise WireFormatError(f"payload {i} is {length} bytes; a payload must be at most {_U32_MAX} bytes")
        parts.append(_U32.pack(length))
        parts += payload
    return b"".join(parts)


def decode_values(buffer: bytes | memoryview) -> list[Any]:
    """Unframe a buffer and decode each payload."""
    return [decode_value(p) for p in payload_views(buffer)]
