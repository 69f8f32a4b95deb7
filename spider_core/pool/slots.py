"""The pool's slots and the queue of callers waiting for one.

Callers are served first come, first served: a caller takes a free slot with a live executor
if there is one and nobody is waiting, else it queues. A slot goes back to the first caller in
the queue when its call ends. A slot whose executor could not be started (it failed, or the
respawn policy refused) is not handed to callers while another slot is alive: it recovers in
the background when the policy's ``retry_at`` comes, and callers are served by the others. Only
when no slot is alive does a caller drive a failed slot itself, so the policy answers it (with
``NotRunning`` while it backs off), exactly as in a single-slot pool.

A caller of ``execute`` queues with its request (a ticket): while every slot is busy, the
holder of a slot whose executor takes several requests at once may take the tickets at the
front of the queue (:meth:`Slots.adopt`) and send their requests ahead
(:mod:`spider_core.pool.pipeline`); those callers then leave the queue and wait for their turn on
that slot. A map lane or a thread in the queue ends what may be adopted, so nobody is passed.

The sync pool's callers take and give back slots from their own threads
(:meth:`Slots.take_now`, :meth:`Slots.release_threadsafe`); everything else happens on the
loop's thread. A lock, never held across an ``await``, keeps the free slots and the queue
consistent between them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from typing import Any

from spider_core.errors import InternalError, NotRunning
from spider_core.models import ExecutorState
from spider_core.pool.process import ExecutorProcess
from spider_core.pool.supervisor import Supervisor

logger = logging.getLogger("spider_core.pool")


class Slots:
    """Hands the pool's slots to callers, one caller per slot."""

    def __init__(self, loop: asyncio.AbstractEventLoop, slots: list[Supervisor]) -> None:
        self.loop = loop
        self.all = slots
        self._idle = list(reversed(slots))  # pop() takes the lowest-numbered slot first
        #: The queue: each waiter gets a slot, or None once its ticket is adopted.
        self._waiters: deque[asyncio.Future[Supervisor | None]] = deque()
        self._tickets: dict[asyncio.Future[Supervisor | None], Any] = {}  # waiters that may be adopted
        self._busy = 0
        self._all_free: asyncio.Future[None] | None = None
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._recoveries: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self.closed = False

    @property
    def waiting(self) -> int:
        """How many callers are queued for a slot."""
        return len(self._waiters)

    @property
    def alone(self) -> bool:
        """Whether exactly one caller holds a slot."""
        return self._busy == 1

    @property
    def busy(self) -> int:
        """Slots held now (by a call, or by the pool recovering a slot)."""
        return self._busy

    @property
    def queued(self) -> int:
        """Callers waiting for a slot now."""
        with self._lock:
            return sum(not waiter.done() for waiter in self._waiters)

    def executors(self) -> list[tuple[ExecutorProcess | None, ExecutorState]]:
        """Each slot's executor and its state (None, ``starting``: no live one), then each live
        standby (for ``pool.stats()``)."""
        found: list[tuple[ExecutorProcess | None, ExecutorState]] = []
        standbys: list[tuple[ExecutorProcess | None, ExecutorState]] = []
        for slot in self.all:
            current, standby = slot.current, slot.standby
            if current is not None and current.alive:
                found.append((current, "busy" if slot.busy else "idle"))
            else:
                found.append((None, "starting"))
            if standby is not None and standby.alive:
                standbys.append((standby, "standby"))
        return found + standbys

    # -- taking and giving back

    def take_now(self) -> Supervisor | None:
        """A free slot with a live executor, if one is ready and nobody is waiting (the fast
        path). From any thread."""
        with self._lock:
            idle = self._idle
            if self._waiters or not idle or self.closed:
                return None
            slot = idle[-1]
            if slot.healthy:
                idle.pop()
                slot.busy = True
                self._busy += 1
                return slot
        return None

    async def take(self) -> tuple[Supervisor, ExecutorProcess]:
        """Wait for a slot and make sure it has a live executor.

        :raises NotRunning: the pool closed, or no slot has an executor and the respawn policy
            refuses to start one now.
        :raises ExecutorCreationFailure: no slot is alive and starting an executor failed.
        """
        taken = await self.take_or_adopted(None)
        assert taken is not None  # nobody adopts a caller without a ticket
        return taken

    async def take_or_adopted(self, ticket: Any) -> tuple[Supervisor, ExecutorProcess] | None:
        """:meth:`take`, or None if the caller's ``ticket`` (unless None) was adopted
        (:meth:`adopt`) and the adopter then resolved the caller's place with None: the caller's
        turn on the adopter's slot has come.

        :raises NotRunning: the pool closed, or no slot has an executor and the respawn policy
            refuses to start one now.
        :raises ExecutorCreationFailure: no slot is alive and starting an executor failed.
        """
        if self.closed:
            raise NotRunning("the pool is closed")
        with self._lock:
            slot = None if self._waiters else self._pick()
            waiter = self._enqueue(False, ticket) if slot is None else None
        while True:
            if waiter is not None:
                slot = await self._wait(waiter)
                if slot is None:
                    return None
                waiter = None
            assert slot is not None
            if slot.healthy:
                return slot, slot.current  # type: ignore[return-value]  # healthy: it has an executor
            try:
                return slot, await slot.replace_dead()
            except InternalError:
                if slot.failed and self._others_alive(slot):
                    with self._lock:
                        slot.busy = False
                        self._busy -= 1
                        self._park(slot)  # the others serve; this one recovers in the background
                        waiter = self._enqueue(True, ticket)
                    continue
                self.release(slot)
                raise
            except BaseException:
                self.release(slot)
                raise

    def release(self, slot: Supervisor) -> None:
        """Give ``slot`` back: to the first caller waiting, or to the free slots. On the
        loop's thread."""
        with self._lock:
            slot.busy = False
            self._busy -= 1
            if self.closed:
                self._idle.append(slot)
                if not self._busy and self._all_free is not None and not self._all_free.done():
                    self._all_free.set_result(None)
                return
            if not (slot.failed and not slot.healthy and self._others_alive(slot)):
                waiters = self._waiters
                while waiters:
                    waiter = waiters.popleft()
                    self._tickets.pop(waiter, None)
                    if not waiter.done():
                        slot.busy = True
                        self._busy += 1
                        waiter.set_result(slot)
                        return
            self._park(slot)

    def release_threadsafe(self, slot: Supervisor) -> None:
        """:meth:`release` from any thread: at once if ``slot`` simply goes back to the free
        ones, else on the loop's thread."""
        with self._lock:
            if not (self.closed or self._waiters) and slot.healthy:
                slot.busy = False
                self._busy -= 1
                self._idle.append(slot)
                return
        self.loop.call_soon_threadsafe(self.release, slot)

    def _pick(self) -> Supervisor | None:
        """A free slot for a caller nobody is ahead of: one with a live executor, else one that
        only needs a new executor, else (no slot alive at all) a failed one for the policy to
        answer; None if the caller must wait."""
        idle = self._idle
        if not idle:
            return None
        choice = None
        for i in range(len(idle) - 1, -1, -1):
            slot = idle[i]
            if slot.healthy:
                choice = i
                break
            if choice is None and not slot.failed:
                choice = i
        if choice is None and self._others_alive(None):
            return None
        slot = idle.pop(len(idle) - 1 if choice is None else choice)
        slot.busy = True
        self._busy += 1
        return slot

    def adopt(self, limit: int) -> list[tuple[asyncio.Future[Supervisor | None], Any]]:
        """Take up to ``limit`` callers from the front of the queue, while the front is a
        caller that gave a ticket (on the loop's thread): each one's place (a future) and its
        ticket. The adopter serves them: it resolves a place with None when that caller's
        turn comes (its :meth:`take_or_adopted` then returns None), or with an exception."""
        adopted: list[tuple[asyncio.Future[Supervisor | None], Any]] = []
        with self._lock:
            waiters = self._waiters
            while waiters and len(adopted) < limit:
                waiter = waiters[0]
                if waiter.done():  # cancelled, on its way out
                    waiters.popleft()
                    self._tickets.pop(waiter, None)
                    continue
                ticket = self._tickets.pop(waiter, None)
                if ticket is None:
                    break
                waiters.popleft()
                adopted.append((waiter, ticket))
        return adopted

    def _enqueue(self, front: bool, ticket: Any = None) -> asyncio.Future[Supervisor | None]:
        """A place in the queue (under the lock)."""
        waiter: asyncio.Future[Supervisor | None] = self.loop.create_future()
        if front:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        if ticket is not None:
            self._tickets[waiter] = ticket
        return waiter

    async def _wait(self, waiter: asyncio.Future[Supervisor | None]) -> Supervisor | None:
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                slot = waiter.result()
                if slot is not None:
                    self.release(slot)  # handed a slot as it was cancelled: pass it on
            else:
                with self._lock:
                    self._tickets.pop(waiter, None)
                    try:
                        self._waiters.remove(waiter)
                    except ValueError:
                        pass
            raise

    def _others_alive(self, slot: Supervisor | None) -> bool:
        """Whether any slot but ``slot`` has a live executor or is in a caller's hands."""
        return any(other is not slot and (other.busy or other.healthy) for other in self.all)

    def _park(self, slot: Supervisor) -> None:
        self._idle.append(slot)
        if slot.failed and not slot.healthy:
            self._schedule_recovery(slot)

    # -- recovery of a failed slot

    def recover_failed(self) -> None:
        """Schedule the recovery of every free slot whose executor could not be started."""
        for slot in self._idle:
            if slot.failed and not slot.healthy:
                self._schedule_recovery(slot)

    def _schedule_recovery(self, slot: Supervisor) -> None:
        """Try the failed ``slot`` again when the respawn policy says it may (its ``retry_at``);
        a policy that gives no time leaves it to the next caller that finds no slot alive."""
        if self.closed or slot.index in self._timers:
            return
        retry_at = slot.retry_at()
        if retry_at is None:
            return
        delay = max(0.0, retry_at - time.monotonic())
        self._timers[slot.index] = self.loop.call_later(delay, self._recover, slot)

    def _recover(self, slot: Supervisor) -> None:
        del self._timers[slot.index]
        with self._lock:
            if self.closed or slot.busy or slot.healthy or slot not in self._idle:
                return
            self._idle.remove(slot)
            slot.busy = True
            self._busy += 1
        task = self.loop.create_task(self._respawn(slot))
        self._recoveries.add(task)
        task.add_done_callback(self._recoveries.discard)

    async def _respawn(self, slot: Supervisor) -> None:
        try:
            await slot.replace_dead()
        except InternalError as e:
            logger.warning("slot %d is still without an executor: %s", slot.index, e)
        finally:
            self.release(slot)

    # -- closing

    def close(self) -> None:
        """Refuse new callers, fail the waiting ones, stop recovering slots."""
        with self._lock:
            self.closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._recoveries:
            task.cancel()
        self._tickets.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(NotRunning("the pool is closed"))

    async def wait_all_free(self) -> None:
        """Wait until no caller holds a slot."""
        with self._lock:
            if not self._busy:
                return
            all_free = self._all_free = self.loop.create_future()
        await all_free
