"""The adaptive spin: how long one side of the pipe polls for the other's next message before
it blocks. The pool (waiting for an answer, ``PoolConfig.spin_us``) and the executor (waiting
for the next request, ``PoolConfig.executor_spin_us``) each keep one; it is policy, not wire
format, so it lives apart from :mod:`spider_core.protocol`, and imports nothing of spider-core
(both sides import it; neither imports the other).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")


class AdaptiveSpin:
    """How long to poll for the other side's next message before blocking, learnt from the
    last polls: both the pool (waiting for an answer) and the executor (waiting for the next
    request) use one.

    A poll that is answered within the window earns the next poll the whole window. One that
    is not (a long task, a caller that paused) costs its window once; then the next 1, 2, 4,
    ... up to 64 waits block at once before polling is tried again. So a burst of quick
    calls is served without wake-ups, a steady stream of slow ones wastes at most 1/64 of a
    window per call, and an idle pool spins for no longer than one window after its last
    call.
    """

    __slots__ = ("window_ns", "_skip", "_backoff")

    MAX_BACKOFF = 64

    def __init__(self, window_us: int) -> None:
        self.window_ns = window_us * 1000
        self._skip = 0
        self._backoff = 1

    def budget(self) -> int:
        """Nanoseconds to poll before this wait blocks (0: block at once)."""
        if self._skip:
            self._skip -= 1
            return 0
        return self.window_ns

    def answered(self, hit: bool) -> None:
        """Report whether the poll that :meth:`budget` allowed was answered in time."""
        if hit:
            self._backoff = 1
        else:
            self._skip = self._backoff
            self._backoff = min(2 * self._backoff, self.MAX_BACKOFF)

    def read(self, read: Callable[[int, _T], int], fd: int, into: _T) -> int | None:
        """Poll a non-blocking ``fd`` with ``read(fd, into)`` for as long as :meth:`budget`
        allows, yielding the CPU after each read that finds nothing (the other side may be
        waiting for this very CPU), and report the result (:meth:`answered`). What ``read``
        returned, or None: the window passed, or this wait is to block at once. (How both
        sides poll: the pool for an answer, the executor for a request.)

        :raises OSError: ``read`` failed otherwise than ``BlockingIOError``.
        """
        budget = self.budget()
        if not budget:
            return None
        deadline = time.perf_counter_ns() + budget
        while True:
            try:
                count = read(fd, into)
            except BlockingIOError:
                if time.perf_counter_ns() > deadline:
                    self.answered(False)
                    return None
                os.sched_yield()
                continue
            self.answered(True)
            return count
