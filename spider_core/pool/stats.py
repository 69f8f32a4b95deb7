"""The counts behind ``pool.stats()`` (:class:`~spider_core.PoolStats`).

The pool counts as it goes (:class:`Tally`, kept by :class:`~spider_core.pool.events.Events`).
The sync pool's callers finish calls on their own threads, so a call's outcome is only
appended to a queue (atomic, and cheaper than a lock on the hot path) and counted at the next
snapshot (or when the queue is long); a replaced executor, rare, is counted under the lock.
A snapshot copies the counts and looks at each slot; reading an executor's resident memory
from ``/proc/PID/statm`` is its only system call, and nothing is asked of the executors.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from spider_core.models import (
    OUTCOMES,
    RESPAWN_REASONS,
    ExecutorState,
    ExecutorStats,
    Outcome,
    PoolStats,
    outcome_name,
)

if TYPE_CHECKING:
    from spider_core.pool.process import ExecutorProcess

#: Outcomes queued before they are counted, at most.
_BACKLOG = 1024
#: An executor's exit reason (``spider_executor_exited``) -> the respawn it causes.
_RESPAWNS = {"timeout": "timeout", "crash": "crash", "cancelled": "cancel", "recycle": "recycle", "memory": "memory"}


def _executor_stats(executor: ExecutorProcess, state: ExecutorState) -> ExecutorStats:
    return ExecutorStats(
        executor_id=executor.id, pid=executor.pid, state=state, tasks_run=executor.tasks_run, rss_bytes=executor.rss()
    )


class Tally:
    """The counts behind :attr:`PoolStats.outcomes` and :attr:`PoolStats.respawns`."""

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.respawns = dict.fromkeys(RESPAWN_REASONS, 0)
        self._lock = threading.Lock()
        self._finished: deque[type[Outcome]] = deque()

    def finished(self, outcome: Outcome) -> None:
        """Count a call's outcome (at the next snapshot)."""
        self._finished.append(type(outcome))
        if len(self._finished) > _BACKLOG:
            self._count()

    def _count(self) -> None:
        """Count the outcomes queued so far."""
        with self._lock:
            take = self._finished.popleft
            for _ in range(len(self._finished)):
                self.outcomes[outcome_name(take())] += 1

    def exited(self, reason: str) -> None:
        """Count an executor gone for ``reason`` (an ``ExitReason``): the respawn it causes
        (none for ``shutdown``), and for ``cancelled`` the call cancelled while it ran."""
        key = _RESPAWNS.get(reason)
        if key is None:
            return
        with self._lock:
            self.respawns[key] += 1
            if key == "cancel":
                self.outcomes["cancelled"] += 1

    def spawn_failed(self) -> None:
        """Count an executor that could not be started."""
        with self._lock:
            self.respawns["spawn-failure"] += 1

    def snapshot(
        self, slots: int, busy: int, queued: int, executors: Iterable[tuple[ExecutorProcess | None, ExecutorState]]
    ) -> PoolStats:
        """A :class:`PoolStats` of these counts and ``executors`` (None for a slot still
        ``starting``), from :meth:`Slots.executors <spider_core.pool.slots.Slots.executors>`."""
        found = [
            ExecutorStats(executor_id=None, pid=None, state=state) if executor is None else _executor_stats(executor, state)
            for executor, state in executors
        ]
        self._count()
        with self._lock:
            outcomes, respawns = dict(self.outcomes), dict(self.respawns)
        return PoolStats(
            slots=slots, busy=busy, queued=queued, outcomes=outcomes, respawns=respawns,
            executors=found,
        )
