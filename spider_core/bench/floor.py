"""The floor: a raw length-prefixed msgpack ping-pong with a child process, the least any
process pool can cost. It holds the framing (a 4-byte big-endian length, then a msgpack body),
the child's loop (:func:`floor_child_main`, run in a fresh interpreter by
``_spawn_floor_child``) and the request frame for a workload; the two contenders that drive
the child, ``pipe-sync`` and ``pipe-asyncio``, are in :mod:`spider_core.bench.contenders`.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from typing import Any

import msgpack

from spider_core.bench.workloads import ECHO_SLEEP_S, Workload

_HEADER = struct.Struct(">I")
_READ_SIZE = 64 * 1024


def _frame(message: Any) -> bytes:
    body: bytes = msgpack.packb(message)
    return _HEADER.pack(len(body)) + body


def _take_frame(buffer: bytearray) -> bytes | None:
    """Remove and return the first complete frame body in ``buffer``, if there is one."""
    if len(buffer) < _HEADER.size:
        return None
    end = _HEADER.size + _HEADER.unpack_from(buffer)[0]
    if len(buffer) < end:
        return None
    body = bytes(buffer[_HEADER.size : end])
    del buffer[:end]
    return body


def _read_frame(fd: int, buffer: bytearray) -> bytes | None:
    """The next frame body from blocking ``fd``, or None at end of input."""
    while (body := _take_frame(buffer)) is None:
        data = os.read(fd, _READ_SIZE)
        if not data:
            return None
        buffer += data
    return body


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def floor_child_main() -> None:
    """The floor's child: answer ``[workload, argument]`` frames on stdin/stdout until ``stop``.

    An explicit ``stop`` ends it: forked peer workers inherit the write end of its stdin, so
    end of input may never come.
    """
    buffer = bytearray()
    while (body := _read_frame(0, buffer)) is not None:
        workload, argument = msgpack.unpackb(body)
        if workload == "stop":
            return
        if workload == "echo":
            time.sleep(ECHO_SLEEP_S)
            reply = argument
        else:
            reply = None
        _write_all(1, _frame(reply))


def _spawn_floor_child() -> subprocess.Popen[bytes]:
    code = "from spider_core.bench.floor import floor_child_main; floor_child_main()"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _floor_request(workload: Workload) -> bytes:
    return _frame([workload.name, workload.expected])
