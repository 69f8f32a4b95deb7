"""The messages between the pool and its executors and their codec.

:class:`Execute` and :class:`Shutdown` go from the pool to an executor, :class:`Ready` and
:class:`Result` come back. A message travels as a msgpack-ready array, its class name, then its
fields in declaration order (as rmp-serde writes a struct). :func:`decode_request`,
:func:`decode_result` and :func:`decode_ready` give the verdict on what arrives: each tries the
hand-written fast path first and falls back to the strict, field-by-field path, which names
what is wrong.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import attrs
from attrs import frozen


@frozen(kw_only=True)
class Execute:
    """Run ``task`` of ``package``; the executor answers with a :class:`Result` echoing ``seq``.

    ``raw_ctx`` is the msgpack ``TaskContext`` and ``raw_inputs`` the wire-format inputs, both
    as spider encodes them (docs/abi.md §3.5 and §4). ``soft_timeout_us``, if not 0, is when
    the executor raises ``SoftTimeout`` inside a task that can be interrupted (a Python task).
    """

    seq: int
    package: str
    task: str
    raw_ctx: bytes
    raw_inputs: bytes
    soft_timeout_us: int = 0


@frozen(kw_only=True)
class Shutdown:
    """Ask the executor to exit 0."""


@frozen(kw_only=True)
class Result:
    """The answer to :class:`Execute`.

    ``ok``: ``payload`` is the wire-format outputs; otherwise it is a msgpack ``ExecutorError``.
    ``elapsed_us`` covers the package call only.
    """

    seq: int
    ok: bool
    payload: bytes
    elapsed_us: int


@frozen(kw_only=True)
class Ready:
    """Sent once by the executor when it is ready for requests."""

    pid: int
    abi_version: str


Request = Execute | Shutdown
Response = Result | Ready
Message = Execute | Shutdown | Result | Ready


#
# An array, not a map: no key strings to write and read on each side of every call. Fields are
# checked as strictly as rmp-serde checks them: no "5" for an int, no True for 1.

_MESSAGES = {cls.__name__: cls for cls in (Execute, Shutdown, Result, Ready)}
_FIELDS: dict[type, tuple[tuple[str, type], ...]] = {}
for _cls in _MESSAGES.values():
    attrs.resolve_types(_cls)
    _FIELDS[_cls] = tuple((a.name, a.type) for a in attrs.fields(_cls))


class ProtocolError(ValueError):
    """A message that breaks the protocol: malformed, unexpected, or answering another request."""


def message_to_primitive(message: Message) -> list[Any]:
    """``[class name, field, ...]``."""
    return [type(message).__name__, *attrs.astuple(message, recurse=False)]


def message_from_primitive(primitive: Any) -> Message:
    """The message an array from :func:`message_to_primitive` stands for.

    :raises ProtocolError: not a message: not an array, an unknown class name, the wrong number
        of fields, or a field of the wrong type.
    """
    if type(primitive) is not list or not primitive:
        raise ProtocolError(f"a message must be a non-empty array, got {type(primitive).__name__} {primitive!r:.40}")
    tag, *values = primitive
    cls = _MESSAGES.get(tag) if type(tag) is str else None
    if cls is None:
        raise ProtocolError(f"unknown message type {tag!r:.40}")
    fields = _FIELDS[cls]
    if len(values) != len(fields):
        names = ", ".join(name for name, _ in fields) or "none"
        raise ProtocolError(f"invalid {tag} message: {len(values)} fields, expected {len(fields)} ({names})")
    for (name, tp), value in zip(fields, values, strict=True):
        if type(value) is not tp:
            raise ProtocolError(
                f"invalid {tag} message: {name}: expected {tp.__name__}, got {type(value).__name__} {value!r:.40}"
            )
    return cls(**{name: value for (name, _), value in zip(fields, values, strict=True)})


# The two messages of every call, Execute and Result, have hand-written fast paths: the general
# path walks the field table, and after each wake-up every microsecond of Python here costs
# several. They accept exactly the well-formed messages (the right length, the exact types) and
# leave everything else to message_from_primitive, which gives the verdict and the error; tests
# check that both agree.


def execute_primitive(
    seq: int, package: str, task: str, raw_ctx: bytes, raw_inputs: bytes, soft_timeout_us: int = 0
) -> list[Any]:
    """``message_to_primitive(Execute(...))``, without building the Execute."""
    return ["Execute", seq, package, task, raw_ctx, raw_inputs, soft_timeout_us]


def result_primitive(seq: int, ok: bool, payload: bytes | memoryview, elapsed_us: int) -> list[Any]:
    """``message_to_primitive(Result(...))``, without building the Result."""
    return ["Result", seq, ok, payload, elapsed_us]


def execute_fields(primitive: Any) -> tuple[int, str, str, bytes, bytes, int] | None:
    """``(seq, package, task, raw_ctx, raw_inputs, soft_timeout_us)`` of a well-formed Execute
    array; None for anything else (then :func:`decode_request` decides)."""
    if type(primitive) is list and len(primitive) == 7 and primitive[0] == "Execute":
        _, seq, package, task, raw_ctx, raw_inputs, soft_timeout_us = primitive
        if type(seq) is int and type(package) is str and type(task) is str and type(raw_ctx) in _BUFFERS:
            if type(raw_inputs) in _BUFFERS and type(soft_timeout_us) is int:
                return seq, package, task, raw_ctx, raw_inputs, soft_timeout_us
    return None


#: What a framing may decode a ``bytes`` field of an Execute as: a ``memoryview`` is a field
#: that lies elsewhere, such as in shared memory (``spider_shm``); the executor hands it to
#: packages that take buffers and copies it for the others.
_BUFFERS = (bytes, memoryview)


def result_fields(primitive: Any) -> tuple[int, bool, bytes, int] | None:
    """``(seq, ok, payload, elapsed_us)`` of a well-formed Result array; None for anything
    else (then :func:`decode_result` decides)."""
    if type(primitive) is list and len(primitive) == 5 and primitive[0] == "Result":
        _, seq, ok, payload, elapsed_us = primitive
        if type(seq) is int and type(ok) is bool and type(payload) is bytes and type(elapsed_us) is int:
            return seq, ok, payload, elapsed_us
    return None


_M = TypeVar("_M")


def _decode_as(primitive: Any, expected: type[_M] | tuple[type[_M], ...], invalid: str, unexpected: str) -> _M:
    """The message of an expected class that ``primitive`` stands for.

    :raises ProtocolError: ``invalid: <reason>`` for a malformed message, ``unexpected`` (with
        ``{name}``, the class name) for a message of another class.
    """
    try:
        message = message_from_primitive(primitive)
    except ProtocolError as e:
        raise ProtocolError(f"{invalid}: {e}") from None
    if not isinstance(message, expected):
        raise ProtocolError(unexpected.format(name=type(message).__name__))
    return message


def decode_request(primitive: Any) -> tuple[int, str, str, bytes, bytes, int] | Shutdown:
    """What the executor was asked: the fields of an Execute, or Shutdown.

    :raises ProtocolError: anything else, with the reason.
    """
    fields = execute_fields(primitive)
    if fields is not None:
        return fields
    # a tuple of classes infers their join (object) for _M: name the union
    request = cast(Request, _decode_as(primitive, (Execute, Shutdown), "not a protocol message", "unexpected {name} message"))
    if isinstance(request, Execute):
        return request.seq, request.package, request.task, request.raw_ctx, request.raw_inputs, request.soft_timeout_us
    return request


def decode_result(primitive: Any, seq: int) -> tuple[int, bool, bytes, int]:
    """The fields of the Result that answers request ``seq``.

    :raises ProtocolError: not a Result, or the answer to another request.
    """
    fields = result_fields(primitive)
    if fields is None:
        message = _decode_as(
            primitive, Result, "the executor sent an invalid message", f"expected the result of request {seq}, got {{name}}"
        )
        fields = message.seq, message.ok, message.payload, message.elapsed_us
    if fields[0] != seq:
        raise ProtocolError(f"expected the result of request {seq}, got seq {fields[0]}")
    return fields


def decode_ready(primitive: Any) -> Ready:
    """The executor's first message.

    :raises ProtocolError: anything but a well-formed Ready.
    """
    return _decode_as(primitive, Ready, "sent an invalid first message", "sent {name} instead of Ready")
