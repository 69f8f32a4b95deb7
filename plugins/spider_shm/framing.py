"""The shared-memory framing: msgpack frames whose large ``bytes`` fields lie in a region.

Frames are length-prefixed msgpack, as ``spider_msgpack`` writes them, with two differences:

- a ``bytes`` field of at least ``threshold`` bytes is copied into a region and the frame
  carries a reference instead, a msgpack extension (type :data:`EXT_REF`, 16 bytes: offset
  and length, big-endian) into the region of that direction: the pool's requests use the
  *request region*, the executor's replies the *reply region*;
- a frame from the pool starts with a 28-byte header naming both regions (the pool's pid,
  then the descriptor and inode of each), so that any executor, the first after a crash
  included, finds them without a descriptor passing over the pipe.

On the executor's side a reference becomes a ``memoryview`` of the mapped region (a native
task's input ``CArray`` points into it: no copy); on the pool's side a reply's reference is
copied once out of the region into the ``bytes`` of ``Success.outputs``. A slot has one
request in flight at a time (the protocol is not pipelined), so one region per direction is
enough: the next request reuses the request region once the reply has come.

Sizes obey ``max_frame_size`` as on the pipes: a message whose fields add up to more is
refused before anything is copied or allocated, and a reference to more than that is refused
by whoever reads it, before it maps anything.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import msgpack

from spider_core.plugin import Frame, FramingError, LengthDelimitedDecoder
from spider_shm.region import Mapping, OwnedRegion, PeerRegion, RegionError

#: The msgpack extension type of a reference into a region.
EXT_REF = 0x53
_REF = struct.Struct(">QQ")
_HEADER = struct.Struct(">IiQiQ")  # pool pid, request region fd and inode, reply region fd and inode
_LENGTH = struct.Struct(">I")
_KEEP_PACKER_BELOW = 1 << 20


def _too_large(size: int, max_frame_size: int) -> FramingError:
    return FramingError(
        f"message of {size} bytes exceeds the maximum frame size of {max_frame_size} bytes (raise "
        "max_frame_size to allow it: PoolConfig(max_frame_size=...), or --max-frame-size of spider run and spider batch)"
    )


class ShmFraming:
    """One side's framing: the pool's (``owner``: it creates and owns both regions) or an
    executor's (it opens the regions the pool's frames name). Used from one thread."""

    name = "shared-memory"

    def __init__(self, max_frame_size: int, threshold: int, *, owner: bool) -> None:
        if max_frame_size <= 0 or threshold <= 0:
            raise ValueError(f"max_frame_size and threshold must be positive, got {max_frame_size} and {threshold}")
        self.max_frame_size = max_frame_size
        self.threshold = threshold
        self.owner = owner
        self._packer = msgpack.Packer()
        self._header = b""
        #: The region this side writes large fields into, and the one it reads them from.
        self.outgoing: Mapping | None = None
        self.incoming: Mapping | None = None
        if owner:
            requests, replies = OwnedRegion(), OwnedRegion()
            self.outgoing, self.incoming = requests, replies
            self._header = _HEADER.pack(os.getpid(), requests.fd, requests.ino, replies.fd, replies.ino)

    # -- encoding

    def encode(self, message: Any) -> Frame:
        if type(message) is list and self.outgoing is not None:
            for item in message:
                if (type(item) is bytes or type(item) is memoryview) and len(item) >= self.threshold:
                    return self._frame(*self._share(message))
        return self._frame(message)

    def _share(self, message: list[Any]) -> tuple[list[Any], int]:
        """``message`` with its large fields copied into the outgoing region and replaced by
        references (checked against ``max_frame_size`` before anything is copied), and how
        many bytes went there."""
        large = [(type(i) is bytes or type(i) is memoryview) and len(i) >= self.threshold for i in message]
        total = sum(len(item) for item, big in zip(message, large, strict=True) if big)
        if total > self.max_frame_size:
            raise _too_large(total, self.max_frame_size)
        try:
            region = self.outgoing.grow(total, self.max_frame_size)  # type: ignore[union-attr]  # checked by encode
        except (OSError, RegionError) as e:
            raise FramingError(f"cannot grow the shared-memory region to {total} bytes: {e}") from None
        shared: list[Any] = []
        offset = 0
        for item, big in zip(message, large, strict=True):
            if big:
                end = offset + len(item)
                region[offset:end] = item
                item = msgpack.ExtType(EXT_REF, _REF.pack(offset, len(item)))
                offset = end
            shared.append(item)
        return shared, total

    def _frame(self, message: Any, shared: int = 0) -> bytes:
        """The frame of ``message``; ``shared``: bytes of it already in the region (they count
        toward ``max_frame_size`` as if they were on the pipe)."""
        try:
            body: bytes = self._packer.pack(message)  # the packer resets itself, also on errors
        except (TypeError, ValueError, OverflowError) as e:
            raise FramingError(f"cannot encode message as msgpack: {e}") from None
        if len(body) > _KEEP_PACKER_BELOW:
            self._packer = msgpack.Packer()  # do not hold on to a large internal buffer
        size = len(self._header) + len(body)
        if size + shared > self.max_frame_size:
            raise _too_large(size + shared, self.max_frame_size)
        return _LENGTH.pack(size) + self._header + body

    # -- decoding

    def decoder(self) -> ShmDecoder:
        return ShmDecoder(self)

    def unpack(self, body: memoryview) -> Any:
        """The message of a frame body, its references resolved."""
        if not self.owner:
            body = self._attach(body)
        return msgpack.unpackb(body, ext_hook=self._resolve)

    def _attach(self, body: memoryview) -> memoryview:
        """Map the regions a pool's frame names (if they are not mapped yet); the rest of it."""
        if len(body) < _HEADER.size:
            raise FramingError(f"frame of {len(body)} bytes is too short for the shared-memory header")
        pid, in_fd, in_ino, out_fd, out_ino = _HEADER.unpack_from(body)
        self.incoming = self._peer(self.incoming, pid, in_fd, in_ino)
        self.outgoing = self._peer(self.outgoing, pid, out_fd, out_ino)
        return body[_HEADER.size :]

    @staticmethod
    def _peer(current: Mapping | None, pid: int, fd: int, ino: int) -> PeerRegion:
        if isinstance(current, PeerRegion) and current.key == (pid, ino):
            return current
        try:
            region = PeerRegion(pid, fd, ino)
        except RegionError as e:
            raise FramingError(str(e)) from None
        if current is not None:
            current.close()
        return region

    def _resolve(self, code: int, data: bytes) -> Any:
        """A reference as the caller wants it: on the executor's side a view of the region,
        on the pool's a copy (the region is reused by the next call)."""
        if code != EXT_REF or len(data) != _REF.size:
            raise FramingError(f"unknown msgpack extension type {code} of {len(data)} bytes")
        offset, length = _REF.unpack(data)
        end = offset + length
        if end > self.max_frame_size:
            raise _too_large(end, self.max_frame_size)
        if self.incoming is None:
            raise FramingError("a shared-memory reference came after the regions were closed")
        try:
            region = self.incoming.cover(end)
        except (OSError, RegionError) as e:
            raise FramingError(str(e)) from None
        if self.owner:
            return region[offset:end]
        return memoryview(region)[offset:end]

    def close(self) -> None:
        """Unmap and close both regions (the pool's: freeing them)."""
        for region in (self.outgoing, self.incoming):
            if region is not None:
                region.close()
        self.outgoing = self.incoming = None

    def forsake(self) -> None:
        """In a forked child of the pool: let go of the child's copies of the regions."""
        for region in (self.outgoing, self.incoming):
            if isinstance(region, OwnedRegion):
                region.forsake()
        self.outgoing = self.incoming = None


class ShmDecoder(LengthDelimitedDecoder):
    """Frames of a :class:`ShmFraming`, read in place; references resolved as its side wants."""

    def __init__(self, framing: ShmFraming) -> None:
        super().__init__(framing.max_frame_size)
        self.framing = framing

    def next_message(self) -> Any | None:
        body = self.next_body()
        if body is None:
            return None
        try:
            return self.framing.unpack(body)
        except FramingError:
            raise
        except Exception as e:
            raise FramingError(f"frame of {len(body)} bytes is not a msgpack message: {e}") from None
