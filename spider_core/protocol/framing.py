"""The framing interface: the messages' arrays as bytes on the pipes.

:class:`Framing`, :class:`FrameDecoder` and :class:`FramingError` are what the ``spider_framing``
hook provides; :class:`LengthDelimitedDecoder` is the incremental decoder a length-prefixed
framing builds on, and the rest moves frames through pipes (reading into a decoder, writing
whole or partial frames, widening a pipe for a large one).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Sequence
from typing import Any, Protocol

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
