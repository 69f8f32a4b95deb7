"""The contract between the pool and its executor processes, in one place.

Everything both sides must agree on lives here, and nowhere else:

- **the messages**: :class:`Execute` and :class:`Shutdown` (pool to executor), :class:`Ready`
  and :class:`Result` (executor to pool);
- **their codec**: a message travels as a msgpack-ready array, its class name, then its fields
  in declaration order (as rmp-serde writes a struct). :func:`decode_request`,
  :func:`decode_result` and :func:`decode_ready` give the verdict on what arrives: each tries
  the hand-written fast path first and falls back to the strict, field-by-field path, which
  names what is wrong;
- **the framing interface** that turns those arrays into bytes on the pipes
  (:class:`Framing`, :class:`FrameDecoder`, :class:`FramingError`), provided by the
  ``spider_framing`` hook;
- **the executor protocol interface** (:class:`ExecutorProtocol`): everything the pool
  assumes about the conversation with an executor (encoding, framing, handshake, matching
  replies to requests, how to ask it to stop), provided by the ``spider_protocol`` hook.
  :class:`CoreProtocol` is spider-core's own (the messages above in a :class:`Framing`);
  another protocol lets the pool drive a different executor, such as spider's Rust
  ``spider-task-executor``;
- **the executor process contract**: the environment the pool sets (``ENV_*``), the exit
  statuses the executor uses (``EXIT_*``) and :func:`die_with_parent`.

The pool (:mod:`spider_core.pool`) and the executor (:mod:`spider_core.executor`) both import
this module; neither imports the other. It imports nothing else of spider-core.
"""

from __future__ import annotations

import ctypes
import os
import signal
import struct
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar, cast

import attrs
from attrs import frozen

# -------------------------------------------------------------------------------------------
# messages
# -------------------------------------------------------------------------------------------


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

# -------------------------------------------------------------------------------------------
# the codec: messages to msgpack-ready arrays and back
# -------------------------------------------------------------------------------------------
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


def result_primitive(seq: int, ok: bool, payload: bytes, elapsed_us: int) -> list[Any]:
    """``message_to_primitive(Result(...))``, without building the Result."""
    return ["Result", seq, ok, payload, elapsed_us]


def execute_fields(primitive: Any) -> tuple[int, str, str, bytes, bytes, int] | None:
    """``(seq, package, task, raw_ctx, raw_inputs, soft_timeout_us)`` of a well-formed Execute
    array; None for anything else (then :func:`decode_request` decides)."""
    if type(primitive) is list and len(primitive) == 7 and primitive[0] == "Execute":
        _, seq, package, task, raw_ctx, raw_inputs, soft_timeout_us = primitive
        if type(seq) is int and type(package) is str and type(task) is str and type(raw_ctx) is bytes:
            if type(raw_inputs) is bytes and type(soft_timeout_us) is int:
                return seq, package, task, raw_ctx, raw_inputs, soft_timeout_us
    return None


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


# -------------------------------------------------------------------------------------------
# framing: the arrays above as bytes on the pipes (implemented by the spider_framing hook)
# -------------------------------------------------------------------------------------------

#: The smallest maximum frame size a framing must accept (task inputs and outputs of
#: several MiB must fit).
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024


class FramingError(Exception):
    """A frame that is oversized, truncated or undecodable."""


class FrameDecoder(Protocol):
    """An incremental decoder for one byte stream."""

    def feed(self, data: bytes) -> None:
        """Append bytes read from the pipe."""

    def next_message(self) -> Any | None:
        """The next complete message, or None until more bytes arrive.

        :raises FramingError: the buffered bytes can never form a valid message.
        """

    def pending(self) -> int:
        """Bytes buffered that do not yet form a complete message."""

    def wanted(self) -> int:
        """How many more bytes the current frame needs (a hint for the read size)."""


class LengthDelimitedDecoder:
    """The frame splitting of a :class:`FrameDecoder` for frames with a 4-byte big-endian
    length prefix, as tokio-util's default ``LengthDelimitedCodec`` writes them: spider's own
    executor speaks it, and so does spider-core's msgpack framing. Subclasses implement
    ``next_message`` by decoding what :meth:`next_body` returns."""

    #: Appended to the error for an oversized frame (what it may mean for this protocol).
    oversize_hint = ""

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def pending(self) -> int:
        return len(self._buffer)

    def wanted(self) -> int:
        buffer = self._buffer
        if len(buffer) < _LENGTH_SIZE:
            return _LENGTH_SIZE - len(buffer)
        size: int = _unpack_length(buffer)[0]
        return _LENGTH_SIZE + size - len(buffer)

    def next_body(self) -> bytearray | None:
        """The next complete frame's body (its prefix removed), or None until more bytes arrive.

        :raises FramingError: the prefix announces more than ``max_frame_size`` bytes.
        """
        buffer = self._buffer
        if len(buffer) < _LENGTH_SIZE:
            return None
        size: int = _unpack_length(buffer)[0]
        if size > self.max_frame_size:
            raise FramingError(
                f"frame of {size} bytes exceeds the maximum frame size of {self.max_frame_size} bytes"
                f"{self.oversize_hint}"
            )
        end = _LENGTH_SIZE + size
        if len(buffer) < end:
            return None
        body = buffer[_LENGTH_SIZE:end]
        del buffer[:end]
        return body


_LENGTH = struct.Struct(">I")
_LENGTH_SIZE = _LENGTH.size
_unpack_length = _LENGTH.unpack_from


class Framing(Protocol):
    """Turns msgpack-ready primitives into frames and back; it never sees message classes.

    Each pool and each executor process gets its own framing from the ``spider_framing`` hook
    and uses it from one thread only, so it may keep state (buffers, a reusable packer).
    """

    name: str
    max_frame_size: int

    def encode(self, message: Any) -> bytes:
        """One complete frame holding ``message``.

        :raises FramingError: the message cannot be encoded or is over the size limit.
        """

    def decoder(self) -> FrameDecoder:
        """A fresh incremental decoder for one byte stream."""


# -------------------------------------------------------------------------------------------
# the executor protocol: the whole conversation (implemented by the spider_protocol hook)
# -------------------------------------------------------------------------------------------

#: The name of spider-core's own protocol, :class:`CoreProtocol` (``PoolConfig.protocol``).
CORE_PROTOCOL = "spider-core"


class ExecutorProtocol(Protocol):
    """Everything the pool assumes about the conversation with one kind of executor.

    The pool holds one protocol per slot (from the ``spider_protocol`` hook) and uses it from
    the event loop's thread only, so it may keep state. Each slot has at most one request in
    flight, so a protocol without sequence numbers matches a reply to the last request it
    encoded. What the pool still owns: the pipes (the executor's stdin and stdout; its stderr
    is its log), the hard timeout, killing, reaping and respawning.

    The pool calls, per executor: :meth:`decoder` when it spawns one; :meth:`check_ready` on
    the first message if :attr:`handshake` is true (within ``PoolConfig.spawn_timeout``); per
    call :meth:`encode_request`, then :meth:`result_fields` on the reply (the fast path) and,
    if that gives no plain answer, :meth:`decode_result`; and :meth:`encode_shutdown` to ask
    the executor to exit. A reply that cannot be decoded (:class:`FramingError` from the
    decoder, :class:`ProtocolError` from :meth:`decode_result`) means ``ExecutorCrash``.
    """

    #: The name ``PoolConfig.protocol`` selects it by.
    name: str
    #: Largest frame, in bytes, either side may send.
    max_frame_size: int
    #: Whether a new executor sends a first message (checked by :meth:`check_ready`) before it
    #: takes requests. Without one, an executor takes requests as soon as it is spawned.
    handshake: bool
    #: Whether several requests may be sent before their replies come (each reply names its
    #: request): ``map`` then sends an executor a batch in one write, and ``execute`` sends
    #: the requests of queued callers ahead. Without it (or if the attribute is missing), the
    #: pool sends one request at a time.
    pipelined: bool
    #: Environment variables every executor gets on top of what the pool sets (the
    #: ``spider_launcher`` hook sees them in its ``env``): settings in the executor's terms.
    environment: Mapping[str, str]

    def encode_request(self, message: list[Any]) -> bytes:
        """The frame that asks the executor to run a task.

        :param message: The request, as :func:`execute_primitive` builds it:
            ``["Execute", seq, package, task, raw_ctx, raw_inputs, soft_timeout_us]``
            (:func:`execute_fields` unpacks it). ``seq`` numbers the request; a protocol that
            cannot carry it remembers it for :meth:`result_fields`.
        :raises FramingError: the request cannot be encoded or is over the size limit (the
            caller gets ``EncodeTaskInputs``).
        """

    def encode_shutdown(self) -> bytes:
        """The frame that asks the executor to exit (sent when the pool closes or recycles it)."""

    def decoder(self) -> FrameDecoder:
        """A fresh incremental decoder for one executor's output: it yields the replies
        :meth:`result_fields` and :meth:`decode_result` read (and the greeting, with a
        handshake), and raises :class:`FramingError` for bytes that can never be one."""

    def check_ready(self, message: Any) -> None:
        """Accept the executor's first message (only called if :attr:`handshake`).

        :raises ProtocolError: it is not the expected greeting (the spawn fails).
        """

    def result_fields(self, message: Any) -> tuple[int, bool, bytes, int] | None:
        """``(seq, ok, payload, elapsed_us)`` of a well-formed result, or None to leave the
        verdict to :meth:`decode_result`. The hot path: keep it cheap. The pool also passes its
        own markers (a timeout, a lost channel) here: None for anything that is not a reply.

        ``seq`` is the number of the request the reply answers (a protocol without sequence
        numbers gives the one it last encoded); ``ok``: ``payload`` is the wire-format
        outputs, else a msgpack ``ExecutorError``; ``elapsed_us`` as the executor measured it.
        """

    def decode_result(self, message: Any, seq: int) -> tuple[int, bool, bytes, int]:
        """The fields of the result that answers request ``seq``, as :meth:`result_fields`.

        :raises ProtocolError: not a result, or the answer to another request (the executor
            is then treated as crashed).
        """


class CoreProtocol:
    """spider-core's own protocol: :class:`Execute`, :class:`Result`, :class:`Ready` and
    :class:`Shutdown` as arrays, carried by a :class:`Framing` (the ``spider_framing`` hook's).
    The executor greets with ``Ready``; every result echoes its request's ``seq``."""

    name = CORE_PROTOCOL
    handshake = True
    pipelined = True
    environment: Mapping[str, str] = {}  # its settings are the pool's own (executor_environment)

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self.max_frame_size = framing.max_frame_size
        # Bound once: the pool's per-call work is the framing's encode and result_fields,
        # exactly as without a protocol object in between.
        self.encode_request = framing.encode
        self.decoder = framing.decoder
        self._shutdown = framing.encode(message_to_primitive(Shutdown()))

    result_fields = staticmethod(result_fields)

    def encode_shutdown(self) -> bytes:
        return self._shutdown

    def check_ready(self, message: Any) -> None:
        decode_ready(message)

    def decode_result(self, message: Any, seq: int) -> tuple[int, bool, bytes, int]:
        return decode_result(message, seq)


# -------------------------------------------------------------------------------------------
# the executor process: its environment, its exit statuses, its tie to the parent
# -------------------------------------------------------------------------------------------
#
# The executor speaks the protocol on its stdin and stdout and logs JSON lines to stderr. It
# gets a clean environment: PATH, PoolConfig.inherited_env, the plugin settings
# (spider_core.plugin.PluginSettings.to_env) and the names below.

#: Root of the task packages (spider's own name for it).
ENV_PACKAGE_DIR = "SPIDER_TDL_PACKAGE_DIR"
#: The pool's pid: an executor whose parent is already another process exits at once.
ENV_PARENT_PID = "SPIDER_EXECUTOR_PARENT_PID"
#: ``PoolConfig.max_frame_size``.
ENV_MAX_FRAME_SIZE = "SPIDER_MAX_FRAME_SIZE"
#: ``PoolConfig.executor_log_level``.
ENV_LOG_LEVEL = "SPIDER_EXECUTOR_LOG_LEVEL"
#: ``PoolConfig.executor_spin_us``.
ENV_SPIN_US = "SPIDER_EXECUTOR_SPIN_US"

#: ``Shutdown``, end of input, or the parent gone.
EXIT_OK = 0
#: A request the executor could not decode, or a task broke the protocol channel.
EXIT_PROTOCOL_ERROR = 3
#: Setup failed: no framing, or a malformed setting.
EXIT_SETUP_ERROR = 4


def executor_environment(*, package_dir: str, max_frame_size: int, spin_us: int, log_level: str) -> dict[str, str]:
    """The spider-core settings the pool passes to each executor (see the ``ENV_*`` names)."""
    return {
        ENV_PACKAGE_DIR: package_dir,
        ENV_PARENT_PID: str(os.getpid()),
        ENV_MAX_FRAME_SIZE: str(max_frame_size),
        ENV_SPIN_US: str(spin_us),
        ENV_LOG_LEVEL: log_level,
    }


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Get SIGKILL when the parent dies: for the executor and for any helper process a plugin
    starts (an inspector, a listing child). Call it first thing in the child."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: EOF on the protocol channel still ends us
        pass
    expected = os.environ.get(ENV_PARENT_PID)
    if expected and os.getppid() != int(expected):
        os._exit(EXIT_OK)  # the parent died before prctl took effect
