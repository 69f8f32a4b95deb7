"""Shared-memory regions: a ``memfd`` the pool creates and owns, mapped by both processes.

The pool creates each region with ``os.memfd_create`` (close-on-exec, so no process it
spawns inherits it) and keeps its descriptor for the pool's lifetime. An executor opens the
same file through ``/proc/<pool pid>/fd/<fd>`` (pipes cannot carry descriptors, and this
works for executors started by ``exec`` and by the fork server alike), checks that the inode
is the one the pool named (a descriptor number alone could, after a close, name another
file), and maps it. A region only grows: the pool grows the one that carries requests, the
executor the one that carries replies, never past ``max_frame_size`` (rounded up to
:data:`GRAIN`). When an executor dies, its mappings and its descriptors die with it; the
regions themselves go when the pool closes (or drops) the framing that owns them.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import weakref

#: Regions grow in steps of this many bytes (a few system calls per size, not per payload).
GRAIN = 1 << 20
#: The memfd name prefix (``/proc/<pid>/fd`` shows ``memfd:spider-shm-<pid> (deleted)``).
NAME_PREFIX = "spider-shm"

_PROT = mmap.PROT_READ | mmap.PROT_WRITE
# Map every page at once: the executor's mapping of pages the pool just wrote (and the pool's
# of pages the executor wrote) costs one system call instead of a fault per page.
_FLAGS = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)


class RegionError(Exception):
    """A region that cannot be opened, mapped or grown (the message says which and why)."""


def _round_up(size: int) -> int:
    return -(-size // GRAIN) * GRAIN


class Mapping:
    """One process's mapping of a region's file, remapped when the file has grown."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.map: mmap.mmap | None = None

    @property
    def size(self) -> int:
        return 0 if self.map is None else len(self.map)

    def cover(self, end: int) -> mmap.mmap:
        """The mapping, holding at least bytes ``[0, end)`` of the file.

        :raises RegionError: the file is shorter than ``end``.
        """
        current = self.map
        if current is not None and len(current) >= end:
            return current
        size = os.fstat(self.fd).st_size
        if size < end:
            raise RegionError(f"the shared-memory region holds {size} bytes, not the {end} announced")
        self._unmap()
        self.map = mmap.mmap(self.fd, size, flags=_FLAGS, prot=_PROT)
        return self.map

    def grow(self, end: int, limit: int) -> mmap.mmap:
        """The mapping, the file grown first if it holds fewer than ``end`` bytes (to ``end``
        rounded up to :data:`GRAIN`, at most ``limit`` rounded up so). Never shrinks it: the
        other process may map more of it."""
        if os.fstat(self.fd).st_size < end:
            os.ftruncate(self.fd, min(_round_up(end), _round_up(limit)))
        return self.cover(end)

    def _unmap(self) -> None:
        old, self.map = self.map, None
        if old is not None:
            # A task may still hold a view of its inputs: then the last view unmaps it.
            with contextlib.suppress(BufferError):
                old.close()

    def close(self) -> None:
        self._unmap()


class OwnedRegion(Mapping):
    """A region the pool created: its memfd and the pool's mapping of it."""

    def __init__(self) -> None:
        super().__init__(os.memfd_create(f"{NAME_PREFIX}-{os.getpid()}", os.MFD_CLOEXEC))
        self.ino = os.fstat(self.fd).st_ino
        self._closer = weakref.finalize(self, _close_fd, self.fd)

    def close(self) -> None:
        """Unmap and close it: the memory goes once no other process maps it."""
        super().close()
        self._closer()

    def forsake(self) -> None:
        """In a forked child: close the child's copy of the descriptor, nothing else."""
        self.map = None  # the child's copy of the mapping goes with the child
        self._closer()


def _close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


class PeerRegion(Mapping):
    """The pool's region as the executor sees it: opened through ``/proc``."""

    def __init__(self, pid: int, fd: int, ino: int) -> None:
        path = f"/proc/{pid}/fd/{fd}"
        try:
            opened = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise RegionError(f"cannot open the pool's shared-memory region {path}: {e.strerror}") from None
        if os.fstat(opened).st_ino != ino:
            os.close(opened)
            raise RegionError(f"{path} is not the pool's shared-memory region (another file took its descriptor)")
        super().__init__(opened)
        self.key = (pid, ino)

    def close(self) -> None:
        super().close()
        _close_fd(self.fd)
