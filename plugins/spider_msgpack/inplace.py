"""An ``Execute`` request whose inputs stay in the frame: the executor's side of the pipe.

msgpack copies every ``bin`` it unpacks into a new ``bytes``: for a request of many MiB, a
copy of the inputs (and the page faults of fresh memory) before the task even starts. The
executor reads a whole frame into one buffer of its own, and runs one request at a time, so
its large ``raw_inputs`` can be a view of that buffer instead, valid until the next frame is
read (after the task has returned). :func:`execute_in_place` parses exactly the shape the pool
writes; anything else is left to ``msgpack.unpackb``, which gives the verdict.
"""

from __future__ import annotations

import struct
from typing import Any

_EXECUTE = b"\x97\xa7Execute"  # fixarray(7), fixstr(7) "Execute"
_UINT = {0xCC: struct.Struct(">B"), 0xCD: struct.Struct(">H"), 0xCE: struct.Struct(">I"), 0xCF: struct.Struct(">Q")}
_STR = {0xD9: struct.Struct(">B"), 0xDA: struct.Struct(">H"), 0xDB: struct.Struct(">I")}
_BIN = {0xC4: struct.Struct(">B"), 0xC5: struct.Struct(">H"), 0xC6: struct.Struct(">I")}


class _NotThisShape(Exception):
    """Not the ``Execute`` shape this parser reads: let msgpack decode it."""


def _length(body: memoryview, pos: int, forms: dict[int, struct.Struct]) -> tuple[int, int]:
    form = forms.get(body[pos])
    if form is None:
        raise _NotThisShape
    return form.unpack_from(body, pos + 1)[0], pos + 1 + form.size


def _uint(body: memoryview, pos: int) -> tuple[int, int]:
    first = body[pos]
    if first < 0x80:
        return first, pos + 1
    return _length(body, pos, _UINT)


def _str(body: memoryview, pos: int) -> tuple[str, int]:
    first = body[pos]
    if 0xA0 <= first <= 0xBF:
        size, pos = first - 0xA0, pos + 1
    else:
        size, pos = _length(body, pos, _STR)
    try:
        return str(body[pos : pos + size], "utf-8"), pos + size
    except UnicodeDecodeError:
        raise _NotThisShape from None


def _bin(body: memoryview, pos: int, view: bool) -> tuple[bytes | memoryview, int]:
    size, pos = _length(body, pos, _BIN)
    end = pos + size
    if end > len(body):
        raise _NotThisShape
    return body[pos:end] if view else bytes(body[pos:end]), end


def execute_in_place(body: memoryview) -> list[Any] | None:
    """The ``Execute`` array in ``body`` with ``raw_inputs`` a view of ``body``; None if
    ``body`` is anything else (or malformed: msgpack then says how)."""
    if body[: len(_EXECUTE)] != _EXECUTE:
        return None
    try:
        seq, pos = _uint(body, len(_EXECUTE))
        package, pos = _str(body, pos)
        task, pos = _str(body, pos)
        raw_ctx, pos = _bin(body, pos, view=False)
        raw_inputs, pos = _bin(body, pos, view=True)
        soft_timeout_us, pos = _uint(body, pos)
    except (_NotThisShape, IndexError, struct.error):
        return None
    if pos != len(body):
        return None
    return ["Execute", seq, package, task, raw_ctx, raw_inputs, soft_timeout_us]
