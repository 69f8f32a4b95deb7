"""The executor's protocol channel: its descriptors, moved out of a task's way and guarded
against what a task does to the process, the request side (which may spin before it blocks)
and the reply side.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource
import select
import sys
from typing import TYPE_CHECKING, cast

from spider_core.protocol import Frame, FrameDecoder, frame_size, read_into, widen_pipe, write_all
from spider_core.spin import AdaptiveSpin

if TYPE_CHECKING:
    import io

#: Protocol descriptors go at or above this number, out of the way of tasks that open files
#: or clean up low descriptors (``os.closerange(3, 64)``).
_PROTOCOL_FD_FLOOR = 200

#: What :meth:`Guard.problem` says when the reply descriptor is no longer the channel.
REPLACED = "a task closed or replaced the executor's protocol descriptors"
#: What :meth:`Guard.problem` says in a forked copy of the executor.
FORKED = "forked"


def _move_high(fd: int) -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    floor = max(3, min(_PROTOCOL_FD_FLOOR, soft - 16))
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)


def take_protocol_fds() -> tuple[int, int]:
    """Move the protocol to private, high, close-on-exec descriptors; fd 0 becomes
    /dev/null and fd 1 stderr, so whatever a task prints only adds log lines."""
    in_fd, out_fd = _move_high(0), _move_high(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    cast("io.TextIOWrapper", sys.stdout).reconfigure(line_buffering=True)  # typeshed says TextIO
    return in_fd, out_fd


class Guard:
    """Guards the protocol descriptors against what a task does to the process."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self.forked = False
        self.fds = (in_fd, out_fd)
        self.out_fd = out_fd
        self.identity = self._identity(out_fd)
        # A task that forks (without exec) must not leave a second reader and writer.
        os.register_at_fork(after_in_child=self._close_in_child)

    @staticmethod
    def _identity(fd: int) -> tuple[int, int] | None:
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _close_in_child(self) -> None:
        self.forked = True
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def problem(self) -> str | None:
        """Why the channel can no longer be trusted after a task ran, if it cannot
        (:data:`FORKED` or :data:`REPLACED`). (Only the reply side is checked per task: a
        replaced request side yields garbage, which is already a protocol error.)"""
        if self.forked:
            return FORKED
        try:
            st = os.fstat(self.out_fd)
        except OSError:
            return REPLACED
        if (st.st_dev, st.st_ino) != self.identity:
            return REPLACED
        return None


class Input:
    """The request channel. With ``spin_us``, a read first polls for up to that long before
    it blocks, as an :class:`~spider_core.spin.AdaptiveSpin` allows: a pool that sends
    calls back to back then finds the executor awake (a cross-CPU wake-up costs far more than
    the spin on some virtual machines), and one that pauses costs no spinning. Each empty
    poll yields the CPU, which the pool may be waiting for when the scheduler put both on one
    CPU."""

    def __init__(self, fd: int, spin_us: int) -> None:
        self.fd = fd
        self.spin = AdaptiveSpin(spin_us) if spin_us else None
        if self.spin is not None:
            os.set_blocking(fd, False)
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN)

    def read_into(self, decoder: FrameDecoder) -> int:
        """Read the next bytes of the request channel into ``decoder``; 0 at end of input."""
        spin = self.spin
        if spin is None:
            return read_into(self.fd, decoder)
        count = spin.read(read_into, self.fd, decoder)
        if count is not None:
            return count
        while True:
            self._poller.poll()
            try:
                return read_into(self.fd, decoder)
            except BlockingIOError:
                continue


class Output:
    """The reply channel: writes whole frames, after widening the pipe for one larger than it
    holds (:func:`~spider_core.protocol.widen_pipe`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pipe_size = 64 * 1024  # a fresh pipe's

    def write(self, frame: Frame) -> None:
        if type(frame) is bytes and len(frame) <= self.pipe_size:  # the usual small answer
            written = os.write(self.fd, frame)
            if written == len(frame):
                return
            frame = frame[written:]  # interrupted by a signal: the rest as below
        size = frame_size(frame)
        if size > self.pipe_size:
            self.pipe_size = widen_pipe(self.fd, size)
        write_all(self.fd, frame)
