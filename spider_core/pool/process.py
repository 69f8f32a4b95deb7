"""One executor process as the pool sees it: its pipes and pidfd on the event loop, its log.

The hot path is one frame written, one reader callback, one future: the pipes and a pidfd are
registered with the loop once per spawn. The sync pool drives the protocol channel from the
calling thread instead (:meth:`ExecutorProcess.exchange`, after :meth:`~ExecutorProcess.detach`),
while the loop keeps the log and the exit. What travels on the pipes is the protocol's business
(:class:`~spider_core.protocol.ExecutorProtocol`); this handle only moves frames and notices
when the process or its channel is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import signal
import time
from collections import deque
from typing import Any

from spider_core.plugin import ExecutorHandle
from spider_core.pool.guard import Guard
from spider_core.pool.logsink import LogSink
from spider_core.protocol import (
    READ_SIZE,
    ExecutorProtocol,
    Frame,
    FramingError,
    frame_size,
    frame_views,
    read_into,
    widen_pipe,
    write_some,
)
from spider_core.spin import AdaptiveSpin

#: What a fresh pipe holds (Linux's default); the pool widens the request pipe when a larger
#: frame comes (:func:`~spider_core.protocol.widen_pipe`).
_PIPE_SIZE = 64 * 1024
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

#: Seconds a dying executor gets to exit by itself before SIGKILL.
EXIT_GRACE = 1.0

#: The longest single wait of ``poll()``, in milliseconds (what a C int holds); a longer
#: timeout is several waits.
_MAX_POLL_MS = 2**31 - 1

#: What a waiter gets when its deadline passes first.
TIMED_OUT = object()


def _poll_ms(seconds: float) -> int:
    """``seconds`` (> 0) as a ``poll()`` timeout, rounded up and capped at what one wait allows."""
    return min(math.ceil(seconds * 1000), _MAX_POLL_MS)


class Lost:
    """The executor's protocol channel became unusable: what a waiter gets instead of a message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class ExecutorProcess:
    """A spawned executor: its pipes and pidfd registered with the loop, its log sink."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        executor_id: int,
        handle: ExecutorHandle,
        protocol: ExecutorProtocol,
        sink: LogSink,
        guard: Guard | None = None,
    ) -> None:
        self.loop = loop
        self.id = executor_id
        self.handle = handle
        self.pid = handle.pid
        self.sink = sink
        self.encode = protocol.encode_request
        self.result_fields = protocol.result_fields
        self.decoder = protocol.decoder()
        self.tasks_run = 0
        self.recycle_after: int | None = None
        self.waiter: asyncio.Future[Any] | None = None
        #: Messages the executor owes: its greeting (with a handshake), then one answer per
        #: request sent.
        self.owed = 1 if protocol.handshake else 0
        #: Answers that came before anyone waited for them (requests sent together).
        self.inbox: deque[Any] = deque()
        self.lost: str | None = None
        #: Whether the channel was lost to a protocol violation (the executor is still alive).
        self.violated = False
        #: Whether the executor was gone before it got the first byte of a request (the
        #: request never reached it: it may be sent to another executor).
        self.refused = False
        self.exited = loop.create_future()
        self._out = handle.stdin
        self._in = handle.stdout
        self._err = handle.stderr
        self._pending: list[memoryview] | None = None  # what send() could not write yet
        self._pipe_size = _PIPE_SIZE  # what the request pipe holds
        self._closed = False
        for fd in (self._out, self._in, self._err):
            os.set_blocking(fd, False)
        self._own_pidfd = handle.pidfd is None
        self._pidfd = os.pidfd_open(self.pid) if handle.pidfd is None else handle.pidfd
        self._poller: select.poll | None = None  # made by detach()
        self._reading = True  # whether the loop reads the protocol channel
        loop.add_reader(self._in, self._on_readable)
        loop.add_reader(self._err, self._on_stderr)
        loop.add_reader(self._pidfd, self._on_exit)
        self._guard = guard
        if guard is not None:
            guard.watch(self.pid)  # it leads its own process group

    @property
    def alive(self) -> bool:
        return self.lost is None and not self.exited.done()

    def expect(self) -> asyncio.Future[Any]:
        """A future for the next message (or :class:`Lost`). On the loop's thread only."""
        if self.inbox:
            waiter = self.loop.create_future()
            waiter.set_result(self.inbox.popleft())
            return waiter
        waiter = self.waiter = self.loop.create_future()
        if self.lost is not None:
            waiter.set_result(Lost(self.lost))
        elif not self._reading:
            self._reading = True
            self.loop.add_reader(self._in, self._on_readable)
        return waiter

    # -- protocol channel

    def _lose(self, reason: str, *, violation: bool = False) -> None:
        if self.lost is None:
            self.lost = reason
            self.violated = violation
            if self._reading:
                self._reading = False
                self.loop.remove_reader(self._in)
            self._stop_writing()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Lost(self.lost))

    def _on_readable(self) -> bool:
        """Read what the executor sent and deliver complete messages; False if nothing was read."""
        decoder = self.decoder
        try:
            count = read_into(self._in, decoder)
        except BlockingIOError:
            return False
        except OSError as e:
            self._lose(f"reading from the executor failed: {e.strerror}")
            return False
        if not count:
            self._lose("the executor closed its protocol channel")
            return False
        while self.lost is None:
            try:
                message = decoder.next_message()
            except FramingError as e:
                self._lose(f"the executor sent an undecodable frame: {e}", violation=True)
                break
            if message is None:
                break
            if not self.owed:
                self._lose("the executor sent a message nobody asked for", violation=True)
                break
            if self._pending is not None:
                self._lose("the executor answered before it had read the whole request", violation=True)
                break
            self.owed -= 1
            waiter = self.waiter
            if waiter is None or waiter.done():
                self.inbox.append(message)
            else:
                self.waiter = None
                waiter.set_result(message)
        return True

    def catch_up(self) -> None:
        """Take in every answer the executor has sent so far (on the loop's thread, while the
        loop reads the channel): what a waiter or the inbox gets, without waiting."""
        while self._reading and self.lost is None and self._on_readable():
            pass

    def poll(self, budget_ns: int) -> bool:
        """Read the answer without the event loop for up to ``budget_ns``; whether it came."""
        waiter: asyncio.Future[Any] = self.waiter  # type: ignore[assignment]  # called after expect()
        deadline = time.perf_counter_ns() + budget_ns
        while not waiter.done() and self._pending is None and time.perf_counter_ns() < deadline:
            if not self._on_readable():
                os.sched_yield()  # the executor may be waiting for this very CPU
        return waiter.done()

    def send(self, frame: Frame, replies: int = 1) -> None:
        """Write ``frame`` (one or more requests, owing ``replies`` answers; its bytes or its
        buffers, see :func:`~spider_core.protocol.join_frames`) without blocking; what the
        pipe does not take now is written as it drains."""
        if self.lost is not None:
            return
        self.owed += replies
        views = self._views(frame)
        try:
            rest = write_some(self._out, views)
        except BlockingIOError:
            rest = views
        except OSError as e:
            self.refused = True
            while self._reading and self.lost is None and self._on_readable():
                pass  # answers it wrote before it died still count (requests sent ahead of this one)
            self._lose(f"writing to the executor failed: {e.strerror}")
            return
        if rest:
            self._pending = rest
            self.loop.add_writer(self._out, self._on_writable)

    def _views(self, frame: Frame) -> list[memoryview]:
        """``frame`` as views to write, the request pipe widened first if it is too narrow."""
        size = frame_size(frame)
        if size > self._pipe_size:
            self._pipe_size = widen_pipe(self._out, size)
        return frame_views(frame)

    def _on_writable(self) -> None:
        # registered by send() while a frame is pending, removed (by _stop_writing) with it
        try:
            rest = write_some(self._out, self._pending)  # type: ignore[arg-type]
        except BlockingIOError:
            return
        except OSError as e:
            self._lose(f"writing to the executor failed: {e.strerror}")
            return
        if rest:
            self._pending = rest
        else:
            self._stop_writing()

    def _stop_writing(self) -> None:
        if self._pending is not None:
            self.loop.remove_writer(self._out)
            self._pending = None

    # -- the protocol channel driven by a thread (the sync pool)

    def detach(self) -> None:
        """Stop reading the protocol channel on the loop, so that the slot's holder can drive it
        from its own thread with :meth:`exchange`. On the loop's thread; undone by :meth:`expect`."""
        if self._closed or self.lost is not None:
            return
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(self._in, select.POLLIN)
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self._in)

    def quiet(self) -> bool:
        """Whether the detached channel is as it should be between calls: nothing arrived that
        nobody asked for, and it is open. If not, the channel is lost (the executor is then
        not ``alive``)."""
        if self.lost is not None:
            return False
        if self.decoder.pending():
            self._lose("the executor sent a message nobody asked for", violation=True)
            return False
        if self._poller.poll(0):  # type: ignore[union-attr]  # detached
            try:
                data = os.read(self._in, 1)
            except BlockingIOError:
                return True
            except OSError as e:
                self._lose(f"reading from the executor failed: {e.strerror}")
                return False
            if data:
                self._lose("the executor sent a message nobody asked for", violation=True)
            else:
                self._lose("the executor closed its protocol channel")
            return False
        return True

    def exchange(self, frame: Frame, deadline: float, spin: AdaptiveSpin) -> Any:
        """Send ``frame`` (its bytes or its buffers) and wait for the answer, in the calling
        thread: the message, :class:`Lost`, or :data:`TIMED_OUT` once ``deadline``
        (``time.monotonic()``) passes. Polls for the answer without blocking first, as
        ``spin`` allows. The channel must be detached, and the caller must hold the slot."""
        views = self._views(frame)
        first = views[0]
        try:
            while True:
                try:
                    views = write_some(self._out, views)
                except BlockingIOError:
                    pass
                if not views:
                    break
                if not self._wait_for(select.POLLOUT, self._out, deadline):
                    return TIMED_OUT
        except OSError as e:
            self.refused = views[0] is first  # not a byte of it was written
            self._lose(f"writing to the executor failed: {e.strerror}")
            return Lost(self.lost)  # type: ignore[arg-type]  # set by _lose
        decoder = self.decoder
        budget = spin.budget()
        spin_until = time.perf_counter_ns() + budget if budget else 0
        poller: select.poll = self._poller  # type: ignore[assignment]  # detached
        # Without a spin, wait before reading: the answer is not there yet (a read would only
        # say so, one system call for nothing).
        wait = not spin_until
        while True:
            if wait:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return TIMED_OUT
                poller.poll(_poll_ms(remaining))
            try:
                count = read_into(self._in, decoder)
            except BlockingIOError:
                if spin_until:
                    if time.perf_counter_ns() < spin_until:
                        os.sched_yield()  # the executor may be waiting for this very CPU
                        continue
                    spin.answered(False)
                    spin_until = 0
                wait = True
                continue
            except OSError as e:
                self._lose(f"reading from the executor failed: {e.strerror}")
                return Lost(self.lost)  # type: ignore[arg-type]
            if spin_until:
                spin.answered(True)
                spin_until = 0
            if not count:
                self._lose("the executor closed its protocol channel")
                return Lost(self.lost)  # type: ignore[arg-type]
            try:
                message = decoder.next_message()
            except FramingError as e:
                self._lose(f"the executor sent an undecodable frame: {e}", violation=True)
                return Lost(self.lost)  # type: ignore[arg-type]
            if message is not None:
                return message  # more after it is a message nobody asked for: quiet() says so

    def _wait_for(self, event: int, fd: int, deadline: float) -> bool:
        """Wait until ``fd`` is ready for ``event`` (or broken); False once ``deadline`` passes."""
        poller = select.poll()
        poller.register(fd, event)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if poller.poll(_poll_ms(remaining)):
                return True

    # -- log and exit

    def _on_stderr(self) -> None:
        try:
            data = os.read(self._err, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.sink.feed(data)
        else:
            self.loop.remove_reader(self._err)

    def _on_exit(self) -> None:
        self.loop.remove_reader(self._pidfd)
        if self._reading:
            while self.lost is None and self._on_readable():
                pass  # a response written just before exiting still counts
            self._lose("the executor exited")
        # else a thread drives the channel: it reads what is left, then EOF
        if not self.exited.done():
            self.exited.set_result(None)

    def rss(self) -> int:
        """Resident memory of the process, in bytes (0 if it cannot be read)."""
        try:
            with open(f"/proc/{self.pid}/statm", "rb") as f:
                return int(f.read().split()[1]) * _PAGE_SIZE
        except (OSError, ValueError, IndexError):
            return 0

    def signal(self, signum: int) -> None:
        if not self.exited.done():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signum)

    async def wait_exit(self, timeout: float) -> bool:
        """Whether the process exited within ``timeout`` seconds."""
        if not self.exited.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), timeout)
        return self.exited.done()

    async def reap(self, grace: float = 0.0) -> tuple[int | None, int | None]:
        """Give the process ``grace`` seconds to exit, SIGKILL it, reap it and release
        everything; return (exit status, signal)."""
        try:
            if grace > 0:
                await self.wait_exit(grace)
            self.signal(signal.SIGKILL)
            await asyncio.shield(self.exited)
        except asyncio.CancelledError:
            # The caller gave up, the cleanup may not: SIGKILLed, the process exits at once.
            self.signal(signal.SIGKILL)
            self.handle.wait()
            self._close()
            raise
        status = self.handle.wait()  # and SIGKILLs what its tasks left in its process group
        self._close()
        if status is None:
            return None, None
        return (status, None) if status >= 0 else (None, -status)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lose("the executor was stopped")
        self._drain_stderr()
        self.loop.remove_reader(self._err)
        self.loop.remove_reader(self._pidfd)
        if self._own_pidfd:
            os.close(self._pidfd)
        if self._guard is not None:
            self._guard.forget(self.pid)  # reaped: its group id may be reused
        self.handle.close()
        self.sink.close()

    def forsake(self) -> None:
        """In a forked child: close the child's copies of the pipes and the pidfd, and nothing
        else. The process is the parent's, and so is the event loop's interest list (the
        child shares the parent's epoll instance: removing a reader here would remove the
        parent's)."""
        if self._closed:
            return
        self._closed = True
        self.lost = "the pool belongs to another process"
        if self._own_pidfd:
            os.close(self._pidfd)
        self.handle.close()
        self.sink.forsake()

    def _drain_stderr(self) -> None:
        """Log what is left in the stderr pipe; bounded, since a process that escaped the
        executor's group may still hold the pipe and write to it forever."""
        for _ in range(64):
            try:
                data = os.read(self._err, READ_SIZE)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self.sink.feed(data)
