"""spider's executor messages, byte for byte (docs/abi.md §7).

``spider-task-executor`` and spider's execution manager exchange
``spider_task_executor::protocol::{Request, Response}`` encoded by bincode 1.3.3's
``serialize``: little-endian, fixed-width integers, enum variants as a ``u32`` index, byte
vectors and strings as a ``u64`` length and the bytes, struct fields in declaration order.
Each message travels in one frame of tokio's ``LengthDelimitedCodec``: a 4-byte big-endian
length, then the body, at most 8 MiB.

::

    Request::Execute { tdl_context: TdlContext { package: String, task_func: String },
                       raw_ctx: Vec<u8>, raw_inputs: Vec<u8> }            variant 0
    Request::Shutdown                                                     variant 1
    Response::Result { outcome: ExecutorOutcome, elapsed_us: u64 }        variant 0
    ExecutorOutcome::Success { outputs: Vec<u8> }                         variant 0
    ExecutorOutcome::Failure { error: Vec<u8> }  (a msgpack ExecutorError) variant 1

Small explicit functions with byte-exact tests (tests/test_rustexec.py), because this is a
contract with code we did not write.
"""

from __future__ import annotations

import struct

#: tokio-util's ``LengthDelimitedCodec::new()`` default ``max_frame_length``: 8 MiB.
MAX_FRAME_SIZE = 8 * 1024 * 1024

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size

EXECUTE = 0
SHUTDOWN = 1
RESULT = 0
SUCCESS = 0
FAILURE = 1


class BincodeError(ValueError):
    """Bytes that are not the bincode of the message expected."""


def _vec(data: bytes) -> bytes:
    return _U64.pack(len(data)) + data


# -- requests (the pool writes them; spider-task-executor reads them) -----------------------


def encode_execute(package: str, task_func: str, raw_ctx: bytes, raw_inputs: bytes) -> bytes:
    """The body of ``Request::Execute``.

    :raises BincodeError: a name that is not valid UTF-8 (a Rust ``String`` must be).
    """
    try:
        package_bytes = package.encode("utf-8")
        task_bytes = task_func.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BincodeError(f"a package or task name must be valid UTF-8: {e}") from None
    return b"".join(
        (_U32.pack(EXECUTE), _vec(package_bytes), _vec(task_bytes), _vec(raw_ctx), _vec(raw_inputs))
    )


#: The body of ``Request::Shutdown``.
SHUTDOWN_BODY = _U32.pack(SHUTDOWN)


# -- responses (spider-task-executor writes them; the pool reads them) ----------------------


def encode_result(ok: bool, payload: bytes, elapsed_us: int) -> bytes:
    """The body of ``Response::Result``: ``Success { outputs: payload }`` if ``ok``, else
    ``Failure { error: payload }``."""
    return b"".join((_U32.pack(RESULT), _U32.pack(SUCCESS if ok else FAILURE), _vec(payload), _U64.pack(elapsed_us)))


def decode_result(body: bytes | memoryview) -> tuple[bool, bytes, int]:
    """``(ok, payload, elapsed_us)`` of a ``Response::Result`` body.

    Stricter than bincode, which ignores trailing bytes: a body with bytes after the result
    is refused, since spider's executor never writes one and stray bytes on its stdout mean a
    task wrote there.

    :raises BincodeError: anything but exactly one well-formed ``Response``.
    """
    size = len(body)
    if size < 16:
        raise BincodeError(f"a response of {size} bytes is too short to be a Response::Result")
    (variant,) = _U32.unpack_from(body, 0)
    if variant != RESULT:
        raise BincodeError(f"unknown Response variant {variant}")
    (outcome,) = _U32.unpack_from(body, 4)
    if outcome not in (SUCCESS, FAILURE):
        raise BincodeError(f"unknown ExecutorOutcome variant {outcome}")
    (length,) = _U64.unpack_from(body, 8)
    end = 16 + length
    if end + 8 > size:
        raise BincodeError(f"a Response::Result of {size} bytes cannot hold a payload of {length} bytes")
    if end + 8 < size:
        raise BincodeError(f"{size - end - 8} bytes follow the Response::Result")
    (elapsed_us,) = _U64.unpack_from(body, end)
    return outcome == SUCCESS, bytes(body[16:end]), elapsed_us


# -- framing --------------------------------------------------------------------------------


def frame(body: bytes, max_frame_size: int = MAX_FRAME_SIZE) -> bytes:
    """``body`` with its 4-byte big-endian length in front.

    :raises BincodeError: the body is larger than ``max_frame_size``.
    """
    if len(body) > max_frame_size:
        raise BincodeError(f"a frame of {len(body)} bytes exceeds the maximum frame size of {max_frame_size} bytes")
    return _HEADER.pack(len(body)) + body
