"""The protocol channel driven by the event loop (the async pool, and the sync pool's own
work on the loop): a reader callback delivers each answer to a future, and what the pipe does
not take at once is written as it drains.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from spider_core.pool.channel import Channel, Lost
from spider_core.protocol import Frame, FramingError, read_into, write_some

#: What :meth:`LoopChannel.ready` returns while the next message has not come.
NOT_YET: Any = object()


class LoopChannel(Channel):
    """Reads and writes the channel from the loop's callbacks."""

    def ready(self) -> Any:
        """The next message if it has already come (answers sent together arrive together),
        else :data:`NOT_YET`; then wait for it with :meth:`expect`. On the loop's thread only."""
        inbox = self.inbox
        return inbox.popleft() if inbox else NOT_YET

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

    def poll(self, waiter: asyncio.Future[Any], budget_ns: int) -> bool:
        """Read the answer for ``waiter`` (from :meth:`expect`) without the event loop for up
        to ``budget_ns``; whether it came."""
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
            self.catch_up()  # answers it wrote before it died still count (requests sent ahead of this one)
            self._lose(f"writing to the executor failed: {e.strerror}")
            return
        if rest:
            self._pending = rest
            self.loop.add_writer(self._out, self._on_writable)

    def _on_writable(self) -> None:
        # registered by send() while a frame is pending, removed (by _stop_writing) with it
        pending = self._pending
        if pending is None:
            return
        try:
            rest = write_some(self._out, pending)
        except BlockingIOError:
            return
        except OSError as e:
            self._lose(f"writing to the executor failed: {e.strerror}")
            return
        if rest:
            self._pending = rest
        else:
            self._stop_writing()
