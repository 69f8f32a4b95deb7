"""One executor process as the pool sees it: its protocol channel, its log, its exit.

The hot path is one frame written, one reader callback, one future: the pipes and a pidfd are
registered with the loop once per spawn. The channel is driven by the loop
(:class:`~spider_core.pool.loop_channel.LoopChannel`) or, in the sync pool, by the calling
thread (:class:`~spider_core.pool.thread_channel.ThreadChannel`, after ``detach()``), while the
loop keeps the log and the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from spider_core.plugin import ExecutorHandle
from spider_core.pool.guard import Guard
from spider_core.pool.logsink import LogSink
from spider_core.pool.loop_channel import LoopChannel
from spider_core.pool.thread_channel import ThreadChannel
from spider_core.protocol import READ_SIZE, ExecutorProtocol

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

#: Seconds a dying executor gets to exit by itself before SIGKILL.
EXIT_GRACE = 1.0


class ExecutorProcess(LoopChannel, ThreadChannel):
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
        super().__init__(loop, handle, protocol)
        self.id = executor_id
        self.handle = handle
        self.pid = handle.pid
        self.sink = sink
        self.tasks_run = 0
        self.recycle_after: int | None = None
        self.exited = loop.create_future()
        self._err = handle.stderr
        self._closed = False
        for fd in (self._out, self._in, self._err):
            os.set_blocking(fd, False)
        self._own_pidfd = handle.pidfd is None
        self._pidfd = os.pidfd_open(self.pid) if handle.pidfd is None else handle.pidfd
        loop.add_reader(self._in, self._on_readable)
        loop.add_reader(self._err, self._on_stderr)
        loop.add_reader(self._pidfd, self._on_exit)
        self._guard = guard
        if guard is not None:
            guard.watch(self.pid)  # it leads its own process group

    @property
    def alive(self) -> bool:
        return self.lost is None and not self.exited.done()

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
