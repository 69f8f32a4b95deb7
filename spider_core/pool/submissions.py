"""``SyncProcessPool.submit``: calls handed from any thread to the pool's thread, and run there
in lanes, as ``map`` runs its requests.

A thread that submits checks and encodes its request, appends it to a queue and, if the pool's
thread is not already on its way, wakes it (one wake-up for all the calls submitted while it is
busy). On the pool's thread the calls wait in order; a lane per slot takes the first slot free
(in the pool's queue, first come first served with ``execute`` callers and ``map``'s lanes),
sends its executor a batch of calls in one write (:meth:`CallPath.lane
<spider_core.pool.call.CallPath.lane>`) and settles each call's future as its answer comes. So
each call keeps every guarantee of a call of ``execute``: its hard-timeout clock starts when
the executor starts it, the calls sent behind one that timed out or crashed run once, on the
successor, and ``recycle_after`` and ``max_executor_rss`` fall between tasks.

Cancelling a future (:class:`Submitted`): a call still waiting, or sent ahead behind another,
costs no executor (a call sent ahead runs, and its answer is dropped, as
``concurrent.futures`` runs a call it has handed to a worker); a call its executor is running
is a running call's cancellation: the executor is killed and replaced, and the calls sent
behind it run on the successor.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
from collections import deque

from spider_core.errors import InternalError, NotRunning
from spider_core.models import Outcome
from spider_core.pool.call import CallPath
from spider_core.pool.process import ExecutorProcess
from spider_core.pool.requests import Prepared


class Submitted(concurrent.futures.Future[Outcome]):
    """The future ``submit`` returns: cancelling it cancels its call (see the module's doc)."""

    _key = 0
    _submissions: Submissions | None = None

    def cancel(self) -> bool:
        cancelled = super().cancel()
        submissions = self._submissions
        if cancelled and submissions is not None:
            submissions.cancelled(self._key)
        return cancelled


class _Lane:
    """One lane's batch: the calls sent to ``executor`` whose outcomes have not come yet, in
    order (the first is the one the executor runs, or will once the answer before it comes)."""

    __slots__ = ("executor", "items", "killed", "task")

    def __init__(self) -> None:
        self.executor: ExecutorProcess | None = None
        self.items: dict[int, Prepared] = {}
        self.killed = False  # cancelled on purpose: its running call's caller left
        self.task: asyncio.Task[None] | None = None


class Submissions:
    """The calls of ``submit``, from the threads that submit them to the lanes that run them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, calls: CallPath) -> None:
        self.loop = loop
        self.calls = calls
        # No lock: deque appends and pops are atomic, a caller appends before it looks at
        # _woken, and the pool's thread clears _woken before it takes what is waiting; so
        # every call is taken, at worst by one wake-up too many.
        self._waiting: deque[tuple[Prepared, Submitted]] = deque()
        self._woken = False  # the pool's thread will take what is waiting
        self._refusal: BaseException | None = None  # the pool's thread is gone
        self._keys = itertools.count()  # next() is atomic
        # On the pool's thread only:
        self._futures: dict[int, Submitted] = {}  # taken, not yet settled
        self._queue: deque[tuple[int, Prepared]] = deque()  # taken, not yet sent
        self._lanes: list[_Lane] = []

    # -- any thread

    def submit(self, prepared: Prepared) -> Submitted:
        """Run ``prepared`` on the pool's thread; its outcome (or error) comes in the future."""
        future = Submitted()
        future._key, future._submissions = next(self._keys), self
        self._waiting.append((prepared, future))
        if self._refusal is not None:  # (set before refuse() empties the queue: see there)
            self._refuse_waiting()
        elif not self._woken:
            self._woken = True
            self.loop.call_soon_threadsafe(self._take)
        return future

    def cancelled(self, key: int) -> None:
        """The future of call ``key`` was cancelled (see the module's doc)."""
        with contextlib.suppress(RuntimeError):  # the pool's loop is closed: nothing runs
            self.loop.call_soon_threadsafe(self._cancel, key)

    def refuse(self, error: BaseException) -> None:
        """The pool's thread has stopped: every call not settled, and every later one, gets
        ``error``."""
        self._refusal = error
        self._refuse_waiting()
        futures, self._futures = self._futures, {}
        self._queue.clear()
        for future in futures.values():
            _settle(future, error)

    def _refuse_waiting(self) -> None:
        waiting = self._waiting
        while waiting:
            try:
                _, future = waiting.popleft()
            except IndexError:  # another thread took the last one
                return
            _settle(future, self._refusal)  # type: ignore[arg-type]  # set: refused

    # -- the pool's thread

    def _take(self) -> None:
        """Queue every call submitted, and start a lane per slot while calls wait."""
        self._woken = False
        waiting, queue, futures = self._waiting, self._queue, self._futures
        while waiting:
            prepared, future = waiting.popleft()
            futures[future._key] = future
            queue.append((future._key, prepared))
        self._start_lanes()

    def _start_lanes(self) -> None:
        calls = self.calls
        try:
            slots = len(calls.slots.all)
        except NotRunning as e:
            self._fail(e, everyone=True)
            return
        while self._queue and len(self._lanes) < slots:
            lane = _Lane()
            lane.task = self.loop.create_task(self._run(lane))
            self._lanes.append(lane)

    async def _run(self, lane: _Lane) -> None:
        """One lane: a batch on the first slot free, then the next, while calls wait."""
        again: list[tuple[int, Prepared]] = []
        try:
            again = await self.calls.lane(lambda executor: self._batch(lane, executor), lambda k, r: self._deliver(lane, k, r))
        except asyncio.CancelledError:
            if not lane.killed:
                raise
            asyncio.current_task().uncancel()  # type: ignore[union-attr]  # in a task
            # the calls sent behind the one cancelled never ran: they run again
            again = list(lane.items.items())[1:]
        except Exception as e:
            # no slot could serve (InternalError), or a bug: the calls of the batch, which
            # reached no live executor, get the error; so does the first call waiting, if the
            # lane got no batch, or every call waiting, if the pool closed (or for a bug)
            for key in lane.items:
                future = self._futures.pop(key, None)
                if future is not None:
                    _settle(future, e)
            if not lane.items or not isinstance(e, InternalError) or isinstance(e, NotRunning):
                self._fail(e, everyone=not isinstance(e, InternalError) or isinstance(e, NotRunning))
        finally:
            self._lanes.remove(lane)
        self._queue.extendleft(reversed(again))
        self._start_lanes()

    def _batch(self, lane: _Lane, executor: ExecutorProcess) -> list[tuple[int, Prepared]]:
        """The calls to send ``executor`` in one write: from the front of the queue, the one it
        runs and its share of the rest (:meth:`CallPath.batch_size
        <spider_core.pool.call.CallPath.batch_size>`); a call cancelled meanwhile is dropped."""
        calls, queue, futures = self.calls, self._queue, self._futures
        limit = calls.batch_size(executor, calls.depth(), len(queue))
        items: list[tuple[int, Prepared]] = []
        while queue and len(items) < limit:
            key, prepared = queue.popleft()
            future = futures.get(key)
            if future is None:  # cancelled, and already let go (_cancel)
                continue
            if future.cancelled():
                del futures[key]
                future.set_running_or_notify_cancel()
                continue
            items.append((key, prepared))
        lane.executor = executor
        lane.items = dict(items)
        return items

    def _deliver(self, lane: _Lane, key: int, result: Outcome | BaseException) -> None:
        lane.items.pop(key, None)
        future = self._futures.pop(key, None)
        if future is not None:
            _settle(future, result)

    def _cancel(self, key: int) -> None:
        """The caller of call ``key`` left: if a lane's executor is running it (every answer
        before it has come, its own has not), the lane is cancelled, which kills and replaces
        the executor; else its answer, if it gets one, is dropped."""
        future = self._futures.pop(key, None)
        if future is None:  # still on its way to the pool's thread, or settled: nothing to do here
            return
        future.set_running_or_notify_cancel()  # (it is cancelled) wait() and as_completed() see it end
        for lane in self._lanes:
            executor = lane.executor
            if executor is not None and lane.items and next(iter(lane.items)) == key:
                executor.catch_up()
                waiter = executor.waiter
                if waiter is not None and not waiter.done():  # the lane waits for this answer
                    lane.killed = True
                    lane.task.cancel()  # type: ignore[union-attr]  # started with the lane
                return

    def _fail(self, error: BaseException, *, everyone: bool) -> None:
        """``error`` for the first call waiting, or for every call waiting."""
        queue, futures = self._queue, self._futures
        while queue:
            key, _ = queue.popleft()
            future = futures.pop(key, None)
            if future is not None:
                _settle(future, error)
                if not everyone:
                    return


def _settle(future: Submitted, result: Outcome | BaseException) -> None:
    """Give ``future`` its result; if it was cancelled, let ``wait()`` and ``as_completed()``
    see it end instead (what an executor does when it finds a work item cancelled). Called
    once per future, by whoever takes it out of the queue or the lanes."""
    if not future.cancelled():
        try:
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
            return
        except concurrent.futures.InvalidStateError:  # cancelled just now
            pass
    future.set_running_or_notify_cancel()
