"""The protocol channel driven by a thread (the sync pool): the caller that holds the slot
writes the request and waits for the answer itself, in blocking ``poll()`` calls, after the
loop let go of the channel (:meth:`ThreadChannel.detach`; the loop keeps the log and the
exit). It spins for the answer first, as an :class:`~spider_core.spin.AdaptiveSpin` allows.
"""

from __future__ import annotations

import asyncio
import math
import os
import select
import time
from typing import Any

from spider_core.plugin import ExecutorHandle
from spider_core.pool.channel import TIMED_OUT, Channel, Lost
from spider_core.protocol import ExecutorProtocol, Frame, FramingError, read_into, write_some
from spider_core.spin import AdaptiveSpin

#: The longest single wait of ``poll()``, in milliseconds (what a C int holds); a longer
#: timeout is several waits.
_MAX_POLL_MS = 2**31 - 1


def _poll_ms(seconds: float) -> int:
    """``seconds`` (> 0) as a ``poll()`` timeout, rounded up and capped at what one wait allows."""
    return min(math.ceil(seconds * 1000), _MAX_POLL_MS)


class ThreadChannel(Channel):
    """Drives the channel from the thread that holds the slot, once detached from the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handle: ExecutorHandle, protocol: ExecutorProtocol) -> None:
        super().__init__(loop, handle, protocol)
        self._poller = select.poll()  # for the answers, while detached
        self._poller.register(self._in, select.POLLIN)

    def detach(self) -> None:
        """Stop reading the protocol channel on the loop, so that the slot's holder can drive it
        from its own thread with :meth:`exchange`. On the loop's thread; undone by
        :meth:`~spider_core.pool.loop_channel.LoopChannel.expect`."""
        if self.lost is None:  # a closed channel is lost too: nothing to hand over
            self._stop_reading()

    def quiet(self) -> bool:
        """Whether the detached channel is as it should be between calls: nothing arrived that
        nobody asked for, and it is open. If not, the channel is lost (the executor is then
        not ``alive``)."""
        if self.lost is not None:
            return False
        if self.decoder.pending():
            self._lose("the executor sent a message nobody asked for", violation=True)
            return False
        if self._poller.poll(0):
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
            return Lost(self._lose(f"writing to the executor failed: {e.strerror}"))
        decoder = self.decoder
        try:
            count = spin.read(read_into, self._in, decoder)  # None: no answer yet, wait for it
        except OSError as e:
            return Lost(self._lose(f"reading from the executor failed: {e.strerror}"))
        while True:
            if count is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return TIMED_OUT
                self._poller.poll(_poll_ms(remaining))
                try:
                    count = read_into(self._in, decoder)
                except BlockingIOError:
                    continue
                except OSError as e:
                    return Lost(self._lose(f"reading from the executor failed: {e.strerror}"))
            if not count:
                return Lost(self._lose("the executor closed its protocol channel"))
            try:
                message = decoder.next_message()
            except FramingError as e:
                return Lost(self._lose(f"the executor sent an undecodable frame: {e}", violation=True))
            if message is not None:
                return message  # more after it is a message nobody asked for: quiet() says so
            count = None

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
