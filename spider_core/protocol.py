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
import fcntl
import mmap
import os
import signal
import struct
from collections.abc import Mapping, Sequence
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


# -------------------------------------------------------------------------------------------
# framing: the arrays above as bytes on the pipes (implemented by the spider_framing hook)
# -------------------------------------------------------------------------------------------

#: The smallest maximum frame size a framing must accept (task inputs and outputs of
#: several MiB must fit).
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024


class FramingError(Exception):
    """A frame that is oversized, truncated or undecodable."""


class FrameDecoder(Protocol):
    """An incremental decoder for one byte stream.

    A decoder may also offer ``buffer()`` and ``filled(count)`` (as
    :class:`LengthDelimitedDecoder` does): then :func:`read_into` reads the stream straight
    into the decoder's own buffer (a large frame into one buffer of its announced length)
    instead of handing it bytes to :meth:`feed`.
    """

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


#: Bytes a decoder reads at once while no large frame is under way (the default pipe size).
READ_SIZE = 64 * 1024

#: Buffers at least this large are anonymous mappings with every page mapped at once
#: (``MAP_POPULATE``, on Linux): one system call instead of a page fault per page, where a
#: bytearray takes the faults and a pass over memory that the read then overwrites.
_MAP_FROM = 1024 * 1024
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)

_LENGTH = struct.Struct(">I")
_LENGTH_SIZE = _LENGTH.size
_unpack_length = _LENGTH.unpack_from


def _allocate(size: int) -> bytearray | mmap.mmap:
    if size < _MAP_FROM:
        return bytearray(size)
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | _POPULATE)  # private: not shared with a child a task forks


class LengthDelimitedDecoder:
    """The frame splitting of a :class:`FrameDecoder` for frames with a 4-byte big-endian
    length prefix, as tokio-util's default ``LengthDelimitedCodec`` writes them: spider's own
    executor speaks it, and so does spider-core's msgpack framing. Subclasses implement
    ``next_message`` by decoding what :meth:`next_body` returns.

    Bytes land in one buffer, read into in place (:meth:`buffer` and :meth:`filled`, which
    :func:`read_into` uses): small frames share a :data:`READ_SIZE` buffer, so that one read
    can bring several; a frame larger than that gets a buffer of its announced length, once the
    length is checked against ``max_frame_size``, and is read into it directly, so its bytes
    are copied once, from the pipe, however many reads they take.
    """

    #: Appended to the error for an oversized frame (what it may mean for this protocol).
    oversize_hint = ""

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = memoryview(bytearray(READ_SIZE))  # a view: slicing it copies nothing
        self._start = 0  # the first byte not yet taken by next_body
        self._end = 0  # the end of the bytes read

    def feed(self, data: bytes) -> None:
        size = len(data)
        if self._end + size > len(self._buffer):
            needed = self._end - self._start + size
            # growing: at least double, so that feeding a large frame piece by piece stays linear
            self._make_room(needed if needed <= len(self._buffer) else max(needed, 2 * len(self._buffer)))
        self._buffer[self._end : self._end + size] = data
        self._end += size

    def buffer(self) -> memoryview:
        """Where the next bytes read from the stream go: the free space after the bytes
        buffered, which holds at least the rest of the frame under way (a large frame's
        buffer holds exactly that frame).

        :raises FramingError: the frame under way announces more than ``max_frame_size`` bytes
            (nothing is allocated for it).
        """
        pending = self._end - self._start
        if pending < _LENGTH_SIZE:  # no prefix yet: any free byte will do
            if self._end == len(self._buffer):
                self._make_room(pending + 1)
        else:
            needed: int = self._frame_size()  # type: ignore[assignment]  # a prefix is there
            if needed <= pending:  # complete: room for the next one
                needed = pending + 1
            if self._start + needed > len(self._buffer):
                self._make_room(needed)
        return self._buffer[self._end :]

    def filled(self, count: int) -> None:
        """``count`` bytes were read into :meth:`buffer`."""
        self._end += count

    def pending(self) -> int:
        return self._end - self._start

    def wanted(self) -> int:
        pending = self._end - self._start
        if pending < _LENGTH_SIZE:
            return _LENGTH_SIZE - pending
        size: int = _unpack_length(self._buffer, self._start)[0]
        return _LENGTH_SIZE + size - pending

    def next_body(self) -> memoryview | None:
        """The next complete frame's body (its prefix removed), or None until more bytes
        arrive. The view is valid until the decoder's next call: decode it at once.

        :raises FramingError: the prefix announces more than ``max_frame_size`` bytes.
        """
        size = self._frame_size()
        if size is None or self._end - self._start < size:
            return None
        start = self._start
        self._start += size
        body = self._buffer[start + _LENGTH_SIZE : self._start]
        if self._start == self._end:  # all taken: start over, and drop a large frame's buffer
            self._start = self._end = 0
            if len(self._buffer) > READ_SIZE:
                self._buffer = memoryview(bytearray(READ_SIZE))
        return body

    def _frame_size(self) -> int | None:
        """The size, prefix included, of the frame under way; None before its prefix is complete.

        :raises FramingError: it is over ``max_frame_size``.
        """
        if self._end - self._start < _LENGTH_SIZE:
            return None
        size: int = _unpack_length(self._buffer, self._start)[0]
        if size > self.max_frame_size:
            raise FramingError(
                f"frame of {size} bytes exceeds the maximum frame size of {self.max_frame_size} bytes"
                f"{self.oversize_hint}"
            )
        return _LENGTH_SIZE + size

    def _make_room(self, needed: int) -> None:
        """Move the buffered bytes to the start of a buffer that holds ``needed`` bytes: the
        same one if it fits (and is not much larger), else a new one."""
        pending = self._end - self._start
        size = max(needed, READ_SIZE)
        old = self._buffer
        if size <= len(old) <= 2 * size:
            if self._start:
                old[:pending] = old[self._start : self._end]
        else:
            self._buffer = memoryview(_allocate(size))
            self._buffer[:pending] = old[self._start : self._end]
        self._start, self._end = 0, pending


def read_into(fd: int, decoder: FrameDecoder) -> int:
    """Read what ``fd`` holds, up to what the frame under way needs, into ``decoder``; the
    count read, 0 at end of input.

    :raises BlockingIOError: a non-blocking ``fd`` has nothing to read.
    :raises OSError: the read failed.
    :raises FramingError: the frame under way is over the decoder's maximum frame size.
    """
    buffer = getattr(decoder, "buffer", None)
    if buffer is None:  # a decoder that only takes bytes
        data = os.read(fd, READ_SIZE)
        decoder.feed(data)
        return len(data)
    count = os.readv(fd, (buffer(),))
    decoder.filled(count)  # type: ignore[attr-defined]  # offered with buffer()
    return count


#: A frame as it is written to a pipe: its bytes, or the buffers that form it, in order. A
#: framing returns the buffers for a message with large ``bytes`` fields, so that those are
#: written from where they lie (``writev``) instead of being copied into one frame.
Frame = bytes | list[bytes | memoryview]

# writev takes at most IOV_MAX buffers at once (1024 on Linux)
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024


def frame_size(frame: Frame) -> int:
    """The length of ``frame`` in bytes."""
    return len(frame) if isinstance(frame, bytes) else sum(map(len, frame))


def join_frames(frames: Sequence[Frame]) -> Frame:
    """Several frames as one, to be written at once: small frames joined, large buffers kept
    by reference."""
    if all(isinstance(frame, bytes) for frame in frames):
        return b"".join(frames)  # type: ignore[arg-type]  # all bytes, checked just above
    return [part for frame in frames for part in ([frame] if isinstance(frame, bytes) else frame)]


def frame_views(frame: Frame) -> list[memoryview]:
    """The buffers of ``frame`` as views, for :func:`write_some`."""
    return [memoryview(frame)] if isinstance(frame, bytes) else [memoryview(part) for part in frame]


def write_some(fd: int, views: list[memoryview]) -> list[memoryview]:
    """Write what ``fd`` takes now of ``views`` (one ``writev``); what is left of them (empty:
    everything was written).

    :raises BlockingIOError: a non-blocking ``fd`` took nothing.
    :raises OSError: the write failed.
    """
    if len(views) == 1:  # the usual small frame: a plain write
        view = views[0]
        count = os.write(fd, view)
        return [view[count:]] if count < len(view) else []
    count = os.writev(fd, views[:_IOV_MAX])
    done = 0
    while done < len(views) and count >= len(views[done]):
        count -= len(views[done])
        done += 1
    rest = views[done:]
    if count:
        rest[0] = rest[0][count:]
    return rest


def write_all(fd: int, frame: Frame) -> None:
    """Write ``frame`` to the blocking ``fd``.

    :raises OSError: the write failed.
    """
    views = frame_views(frame)
    while views:
        views = write_some(fd, views)


_DEFAULT_PIPE_SIZE = 64 * 1024


def _pipe_max_size() -> int:
    try:
        with open("/proc/sys/fs/pipe-max-size", "rb") as f:
            return int(f.read())
    except (OSError, ValueError):
        return _DEFAULT_PIPE_SIZE


_PIPE_MAX_SIZE = _pipe_max_size()


def widen_pipe(fd: int, size: int) -> int:
    """Let the pipe ``fd`` hold ``size`` bytes, up to ``/proc/sys/fs/pipe-max-size``, so that a
    large frame crosses in fewer, larger writes and reads, each a wake-up of the other side;
    return its capacity now. Called by the writer before it writes a frame larger than the
    pipe; a pipe is never narrowed. A refusal (the user's pipe buffers over
    ``/proc/sys/fs/pipe-user-pages-soft``, or not a pipe) leaves it as it was.
    """
    try:
        current: int = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    except OSError:
        return _PIPE_MAX_SIZE  # not a pipe: nothing to widen, and no reason to try again
    target = min(_PIPE_MAX_SIZE, 1 << max(size - 1, 0).bit_length())
    if target <= current:
        return current
    try:
        widened: int = fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, target)
    except OSError:
        return _PIPE_MAX_SIZE  # refused: do not ask again for every frame
    return widened


class Framing(Protocol):
    """Turns msgpack-ready primitives into frames and back; it never sees message classes.

    Each pool and each executor process gets its own framing from the ``spider_framing`` hook
    and uses it from one thread only, so it may keep state (buffers, a reusable packer).
    """

    name: str
    max_frame_size: int

    def encode(self, message: Any) -> Frame:
        """One complete frame holding ``message``: its bytes, or the buffers that form it (a
        framing may keep large ``bytes`` fields of ``message`` out of line, by reference).

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

    def encode_request(self, message: list[Any]) -> Frame:
        """The frame that asks the executor to run a task: its bytes, or the buffers that form
        it (see :data:`Frame`).

        :param message: The request, as :func:`execute_primitive` builds it:
            ``["Execute", seq, package, task, raw_ctx, raw_inputs, soft_timeout_us]``
            (:func:`execute_fields` unpacks it). ``seq`` numbers the request; a protocol that
            cannot carry it remembers it for :meth:`result_fields`.
        :raises FramingError: the request cannot be encoded or is over the size limit (the
            caller gets ``EncodeTaskInputs``).
        """

    def encode_shutdown(self) -> Frame:
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

    # A protocol may also have ``close()``: the pool calls it once, when the slot's executors
    # are stopped for good (the pool closes), to free what the protocol holds (``spider_shm``:
    # its shared-memory regions).


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

    def encode_shutdown(self) -> Frame:
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
#: Set for a fork server (``PoolConfig.start_method = "forkserver"``): the descriptor of its
#: control socket (``AF_UNIX``, ``SOCK_SEQPACKET``). The executor command then serves forks
#: (:mod:`spider_core.executor.forkserver` says how) instead of requests.
ENV_FORK_SERVER = "SPIDER_FORK_SERVER"
#: ``PoolConfig.max_frame_size``.
ENV_MAX_FRAME_SIZE = "SPIDER_MAX_FRAME_SIZE"
#: ``PoolConfig.executor_log_level``.
ENV_LOG_LEVEL = "SPIDER_EXECUTOR_LOG_LEVEL"
#: ``PoolConfig.executor_spin_us``.
ENV_SPIN_US = "SPIDER_EXECUTOR_SPIN_US"
#: ``PoolConfig.installed_packages``: ``"0"`` turns the installed-package lookup off.
ENV_INSTALLED_PACKAGES = "SPIDER_INSTALLED_PACKAGES"

#: ``Shutdown``, end of input, or the parent gone.
EXIT_OK = 0
#: A request the executor could not decode, or a task broke the protocol channel.
EXIT_PROTOCOL_ERROR = 3
#: Setup failed: no framing, or a malformed setting.
EXIT_SETUP_ERROR = 4


def executor_environment(
    *, package_dir: str | None, installed_packages: bool, max_frame_size: int, spin_us: int, log_level: str
) -> dict[str, str]:
    """The spider-core settings the pool passes to each executor (see the ``ENV_*`` names);
    without a package directory, ``SPIDER_TDL_PACKAGE_DIR`` is left out."""
    env = {
        ENV_INSTALLED_PACKAGES: "1" if installed_packages else "0",
        ENV_PARENT_PID: str(os.getpid()),
        ENV_MAX_FRAME_SIZE: str(max_frame_size),
        ENV_SPIN_US: str(spin_us),
        ENV_LOG_LEVEL: log_level,
    }
    if package_dir is not None:
        env[ENV_PACKAGE_DIR] = package_dir
    return env


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
