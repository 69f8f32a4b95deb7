"""The protocol channel to one executor, as the two ways of driving it share it: its pipes,
its decoder, the answers it owes, and why it was lost.

The event loop drives it for the async pool (:mod:`~spider_core.pool.loop_channel`); the sync
pool's callers drive it from their own threads (:mod:`~spider_core.pool.thread_channel`).
What travels on the pipes is the protocol's business
(:class:`~spider_core.protocol.ExecutorProtocol`); a channel only moves frames and notices
when it is gone.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from spider_core.plugin import ExecutorHandle
from spider_core.protocol import ExecutorProtocol, Frame, frame_size, frame_views, widen_pipe

#: What a fresh pipe holds (Linux's default); the pool widens the request pipe when a larger
#: frame comes (:func:`~spider_core.protocol.widen_pipe`).
_PIPE_SIZE = 64 * 1024

#: What a waiter gets when its deadline passes first.
TIMED_OUT = object()


class Lost:
    """The executor's protocol channel became unusable: what a waiter gets instead of a message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class Channel:
    """The state both ways of driving the channel share, and how it is lost."""

    def __init__(self, loop: asyncio.AbstractEventLoop, handle: ExecutorHandle, protocol: ExecutorProtocol) -> None:
        self.loop = loop
        self.encode = protocol.encode_request
        self.result_fields = protocol.result_fields
        self.decoder = protocol.decoder()
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
        self._out = handle.stdin
        self._in = handle.stdout
        self._pending: list[memoryview] | None = None  # what send() could not write yet
        self._pipe_size = _PIPE_SIZE  # what the request pipe holds
        self._reading = True  # whether the loop reads the protocol channel

    def _lose(self, reason: str, *, violation: bool = False) -> str:
        """Mark the channel lost (the first reason stays) and tell the waiter; the reason."""
        if self.lost is None:
            self.lost = reason
            self.violated = violation
            self._stop_reading()
            self._stop_writing()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(Lost(self.lost))
        return self.lost

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self._in)

    def _stop_writing(self) -> None:
        if self._pending is not None:
            self.loop.remove_writer(self._out)
            self._pending = None

    def _views(self, frame: Frame) -> list[memoryview]:
        """``frame`` as views to write, the request pipe widened first if it is too narrow."""
        if type(frame) is bytes and len(frame) <= self._pipe_size:  # the usual small request
            return [memoryview(frame)]
        size = frame_size(frame)
        if size > self._pipe_size:
            self._pipe_size = widen_pipe(self._out, size)
        return frame_views(frame)
