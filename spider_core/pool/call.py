"""One call, from a prepared request to its outcome: the path every entry point takes.

``ProcessPool.execute`` (an asyncio caller), ``SyncProcessPool.execute`` (a thread that drives
the executor's pipe itself) and the lanes of ``map`` and of ``SyncProcessPool.submit`` all go
through :class:`CallPath`. It owns everything between a
:class:`~spider_core.pool.requests.Prepared` request and its outcome: numbering and sending
the request (to the successor if the executor died idle, unnoticed), reading the answer
(with the adaptive spin), the fast path for a plain ``Success``, every other outcome (a
timeout, a crash, a failure, a protocol violation), recycling between tasks, and the
``spider_task_finished`` event. The entry points differ only in how they wait: on the loop,
or in the calling thread. The pool's :class:`~spider_core.pool.pipeline.Calls` adds the
``execute`` path of an asyncio caller, which pipelines (:mod:`spider_core.pool.pipeline`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

from spider_core.errors import EncodeTaskInputs, InvalidRequest, NotRunning
from spider_core.models import ExecuteRequest, ExecutorCrash, InTaskFailure, Outcome, PoolConfig, Success, Timeout
from spider_core.pool.channel import TIMED_OUT, Lost
from spider_core.pool.events import Events
from spider_core.pool.loop_channel import NOT_YET
from spider_core.pool.process import EXIT_GRACE, ExecutorProcess
from spider_core.pool.requests import Prepared, RequestEncoder
from spider_core.pool.slots import Slots
from spider_core.pool.supervisor import Supervisor
from spider_core.protocol import Frame, FramingError, ProtocolError, join_frames
from spider_core.tdl import EncodingError, ExecutorError

logger = logging.getLogger("spider_core.pool")

_T = TypeVar("_T")

#: Requests sent to one executor in one write, at most...
DEPTH = 16
#: ... and at most this many bytes (but always one request), so that the write never waits
#: for the executor to read: a pipe holds 64 KiB, and an answer must then follow the whole
#: request it answers.
BATCH_BYTES = 32 * 1024

#: What a batch delivers for each of its requests: an outcome, or the error it raised.
Deliver = Callable[[int, Outcome | BaseException], None]


class CallPath:
    """The call path of one pool: what ``execute``, the sync pool and ``map`` share.

    Made with the pool; :meth:`open` gives it the running pool's loop, slots and events.
    """

    def __init__(self, config: PoolConfig) -> None:
        self.config = config
        #: Whether callers drive the executors' channels from their own threads (set by
        #: ``SyncProcessPool`` before the pool starts).
        self.direct = False
        #: Set when the pool closes: no new call is taken.
        self.closed = False
        #: Why the pool may not be used here (set in a forked child), or None.
        self.foreign: str | None = None
        self.max_rss = config.max_executor_rss
        self._requests = RequestEncoder()
        self._seqs: Iterator[int] = itertools.count(1)  # next() is atomic: the sync pool's threads share it
        self._slots: Slots | None = None
        self._events: Events | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._depth = 1

    def open(self, loop: asyncio.AbstractEventLoop, slots: Slots, events: Events) -> None:
        """Serve calls on ``slots`` (the pool started)."""
        self._loop = loop
        self._slots = slots
        self._events = events
        pipelined = all(getattr(slot.protocol, "pipelined", False) for slot in slots.all)
        self._depth = DEPTH if pipelined and not self.max_rss else 1

    @property
    def slots(self) -> Slots:
        """The running pool's slots.

        :raises NotRunning: the pool is not started, closed, or another process's.
        """
        slots = self._slots
        if self.foreign is not None:
            raise NotRunning(self.foreign)
        if self.closed or slots is None:
            raise NotRunning("the pool is closed" if self.closed else "the pool is not started; use `async with` or start()")
        return slots

    # -- preparing

    def prepare(self, request: ExecuteRequest, hard_timeout: float | None, soft_timeout: float | None) -> Prepared:
        """Check and encode ``request`` (``hard_timeout`` None: ``PoolConfig.default_timeout``).

        :raises InternalError: ``InvalidRequest`` and the encoding errors of
            :meth:`~spider_core.pool.requests.RequestEncoder.prepare`.
        """
        return self._requests.prepare(request, self.hard_timeout(hard_timeout), soft_timeout)

    def hard_timeout(self, hard_timeout: float | None) -> float:
        """:raises InvalidRequest: None, and no ``PoolConfig.default_timeout``."""
        if hard_timeout is None:
            hard_timeout = self.config.default_timeout
            if hard_timeout is None:
                raise InvalidRequest(
                    "no hard timeout: pass hard_timeout= to the call or set PoolConfig.default_timeout"
                )
        return hard_timeout

    def depth(self) -> int:
        """How many requests a slot's executor may be sent at once: :data:`DEPTH` if every
        slot's protocol is pipelined and no memory limit must be checked after each task,
        else 1."""
        self.slots  # noqa: B018  # raises NotRunning
        return self._depth

    def room(self, executor: ExecutorProcess, depth: int) -> int:
        """How many requests ``executor`` may be sent now, up to ``depth``: never past its
        share (``recycle_after``), since the recycle must come after its last task."""
        if executor.recycle_after is None:
            return depth
        return max(1, min(depth, executor.recycle_after - executor.tasks_run))

    def share(self, waiting: int) -> int:
        """How many of ``waiting`` queued calls one slot may be sent ahead of its running one.
        With one slot, all of them (the order is the queue's anyway). With more, only from a
        deep queue (at least half :data:`.DEPTH` per slot), and then each slot's share of it:
        a call sent ahead is bound to that slot, while one that waits in the queue takes the
        first slot that frees (a short task's, not a long one's), which is what a handful of
        queued calls should get; a deep queue gains more from pipelining than it loses there."""
        count = len(self._slots.all)  # type: ignore[union-attr]  # set by open(); not .slots: no check, the pool may be closing
        if count == 1:
            return waiting
        return waiting // count if waiting >= count * (self._depth // 2) else 0

    def batch_size(self, executor: ExecutorProcess, depth: int, waiting: int) -> int:
        """How many of ``waiting`` queued requests to send ``executor`` in one write: the one it
        runs and its :meth:`share` of the rest, within its :meth:`room` (the lanes of ``map``
        and of ``submit``)."""
        return min(self.room(executor, depth), 1 + self.share(waiting - 1))

    # -- the pieces every path shares

    def frame(self, executor: ExecutorProcess, prepared: Prepared) -> tuple[int, Frame]:
        """A new sequence number for ``prepared`` and its frame for ``executor``.

        :raises EncodeTaskInputs: the protocol cannot encode it.
        """
        seq = next(self._seqs)
        try:
            return seq, prepared.frame(executor.encode, seq)
        except FramingError as e:
            raise EncodeTaskInputs(f"cannot send the request: {e}") from None

    def success(self, executor: ExecutorProcess, seq: int, reply: Any) -> Outcome | None:
        """The usual answer, a plain Success to request ``seq``, when nothing is to be checked
        after the task (no share, no memory limit); None for everything else
        (:meth:`outcome`). From any thread."""
        fields = executor.result_fields(reply)
        if fields is None or fields[0] != seq or not fields[1] or executor.recycle_after is not None or self.max_rss:
            return None
        executor.tasks_run += 1
        return Success(outputs=fields[2], elapsed_us=fields[3], executor_id=executor.id)

    async def outcome(
        self, slot: Supervisor, executor: ExecutorProcess, seq: int, reply: Any, hard_timeout: float
    ) -> Outcome:
        """Every answer but a plain Success: a timeout, a lost channel, a failure, a protocol
        violation, or a Success that ends the executor's share of tasks. Replaces or recycles
        the executor as the answer requires."""
        if reply is TIMED_OUT:
            executor.signal(signal.SIGKILL)
            await slot.replace(executor, "timeout")
            return Timeout(hard_timeout=hard_timeout, executor_id=executor.id)
        if isinstance(reply, Lost):
            return await self._crash(slot, executor, reply.reason, died=not executor.violated)
        try:
            _, ok, payload, elapsed_us = slot.protocol.decode_result(reply, seq)
        except ProtocolError as e:
            return await self._crash(slot, executor, str(e))
        executor.tasks_run += 1
        if ok:
            outcome: Outcome = Success(outputs=payload, elapsed_us=elapsed_us, executor_id=executor.id)
        else:
            try:
                error = ExecutorError.decode(payload)
            except EncodingError as e:
                return await self._crash(slot, executor, f"the executor sent an undecodable error: {e}")
            outcome = InTaskFailure(error=error, elapsed_us=elapsed_us, executor_id=executor.id)
        if executor.recycle_after is not None and executor.tasks_run >= executor.recycle_after:
            await slot.recycle(executor)
        elif self.max_rss and executor.rss() > self.max_rss:
            logger.info("executor %d holds %d bytes, over max_executor_rss: replacing it", executor.id, executor.rss())
            await slot.recycle(executor, "memory")
        return outcome

    async def _crash(self, slot: Supervisor, executor: ExecutorProcess, reason: str, *, died: bool = False) -> ExecutorCrash:
        """End ``executor`` and replace it. ``died``: it closed its channel (it is exiting: a
        moment to collect its exit status, and the outcome says how it died); else it broke the
        protocol, is killed at once, and the outcome's ``reason`` says how."""
        status, signum = await slot.retire(executor, "crash", EXIT_GRACE if died else 0.0)
        logger.warning(
            "executor %d (pid %d) crashed: %s (exit status %s, signal %s)",
            executor.id, executor.pid, reason, status, signum,
        )
        await slot.respawn("crash")
        return ExecutorCrash(exit_status=status, signal=signum, executor_id=executor.id, reason=None if died else reason)

    def finished(self, prepared: Prepared, outcome: Outcome, executor_id: int, started: float) -> float:
        """Report the ``spider_task_finished`` event of a request its executor started at
        ``started`` (``time.perf_counter()``); when it finished."""
        now = time.perf_counter()
        events: Events = self._events  # type: ignore[assignment]  # set by open()
        events.task_finished(prepared.request, outcome, executor_id, started - prepared.queued, now - started)
        return now

    def _write(self, executor: ExecutorProcess, frames: list[Frame]) -> bool:
        """Send ``frames`` in one write; whether they reached ``executor`` (False: it had died
        while idle, unnoticed, and never got a byte: see :meth:`_resend`)."""
        executor.send(frames[0] if len(frames) == 1 else join_frames(frames), replies=len(frames))
        return not executor.refused

    async def _resend(self, slot: Supervisor, prepared: Sequence[Prepared]) -> tuple[ExecutorProcess, list[int]]:
        """Send ``prepared`` (which never reached the slot's dead executor) to its successor;
        the successor and the requests' new numbers. Sent once: if the successor refuses
        too, its answers are lost (a crash)."""
        executor = await slot.replace_dead()
        numbered = [self.frame(executor, p) for p in prepared]
        self._write(executor, [frame for _, frame in numbered])
        return executor, [seq for seq, _ in numbered]

    async def _take(self, slots: Slots, slot: Supervisor | None) -> tuple[Supervisor, ExecutorProcess]:
        """``slot`` (taken at once) or the first slot free, with a live executor: one that
        died between calls of the sync pool's threads, unnoticed, is replaced first."""
        if slot is None:
            slot, executor = await slots.take()
        else:
            executor = slot.current  # type: ignore[assignment]  # taken: healthy
        if self.direct and not executor.quiet():
            try:
                executor = await slot.replace_dead()
            except BaseException:
                slots.release(slot)
                raise
        return slot, executor

    def _release(self, slots: Slots, slot: Supervisor) -> None:
        if self.direct and slot.current is not None:
            slot.current.detach()  # back to the callers' threads
        slots.release(slot)

    # -- a batch on one slot (the lanes of map)

    async def lane(self, choose: Callable[[ExecutorProcess], list[tuple[int, Prepared]]], deliver: Deliver) -> list[tuple[int, Prepared]]:
        """Take the first slot free, run the batch ``choose`` picks for its executor
        (:meth:`run_batch`) and give the slot back; the requests to run again."""
        slots = self.slots
        slot, executor = await self._take(slots, slots.take_now())
        try:
            return await self.run_batch(slot, executor, choose(executor), deliver)
        finally:
            self._release(slots, slot)

    async def run_batch(
        self, slot: Supervisor, executor: ExecutorProcess, batch: Sequence[tuple[int, Prepared]], deliver: Deliver
    ) -> list[tuple[int, Prepared]]:
        """Send ``batch`` to the executor of ``slot`` (which the caller holds) in one write and
        deliver each request's outcome, by its key, as its answer comes; the requests to run
        again: those sent behind one that timed out or crashed, which never ran."""
        sent: list[tuple[int, Prepared]] = []
        seqs: list[int] = []
        frames: list[Frame] = []
        for key, prepared in batch:
            try:
                seq, frame = self.frame(executor, prepared)
            except EncodeTaskInputs as e:
                deliver(key, e)
                continue
            sent.append((key, prepared))
            seqs.append(seq)
            frames.append(frame)
        if not sent:
            return []
        loop: asyncio.AbstractEventLoop = self._loop  # type: ignore[assignment]  # set by open()
        started = time.perf_counter()
        if not self._write(executor, frames):
            executor, seqs = await self._resend(slot, [prepared for _, prepared in sent])
        for position, ((key, prepared), seq) in enumerate(zip(sent, seqs, strict=True)):
            reply = executor.ready()  # it came with the answer before
            if reply is NOT_YET:  # its clock starts now, when the answer before it came
                reply = await slot.answer(executor, executor.expect(), loop.time() + prepared.hard_timeout)
            outcome = self.success(executor, seq, reply)
            if outcome is None:
                outcome = await self.outcome(slot, executor, seq, reply, prepared.hard_timeout)
            deliver(key, outcome)
            started = self.finished(prepared, outcome, executor.id, started)
            # Replaced (this request timed out, crashed it, or ended its share): the requests
            # after this one never reached a live executor. (One that died after answering is
            # replaced only once its answers so far are read, at the first request it owes.)
            if slot.current is not executor:
                return sent[position + 1 :]
        return []

    # -- a thread without an event loop (SyncProcessPool.execute)

    def execute_in_thread(self, prepared: Prepared) -> Outcome:
        """Run ``prepared`` from the calling thread: it takes a free slot, writes the request
        and waits for the answer on the executor's pipe itself; queueing for a busy slot,
        spawning and everything after a fault happen on the pool's loop, and it waits for
        them. Anything raised while the task runs (``KeyboardInterrupt``) kills and replaces
        the executor before it propagates, as cancelling an async caller does.

        :raises InternalError: as :meth:`~spider_core.pool.pipeline.Calls.execute`.
        """
        slots = self.slots
        slot = slots.take_now()
        if slot is not None and not slot.current.quiet():  # type: ignore[union-attr]  # take_now(): healthy
            slots.release_threadsafe(slot)  # it died while idle: the pool's thread replaces it
            slot = None
        if slot is None:
            slot = self._take_from_thread(slots)
        executor = slot.current
        assert executor is not None  # a slot handed out has a live executor
        try:
            started = time.perf_counter()
            seq, frame = self.frame(executor, prepared)
            try:
                reply = executor.exchange(frame, time.monotonic() + prepared.hard_timeout, slot.spin)
                if executor.refused:  # it died while idle, and nobody had noticed yet
                    executor = self._on_loop(slot.replace_dead())
                    seq, frame = self.frame(executor, prepared)
                    reply = executor.exchange(frame, time.monotonic() + prepared.hard_timeout, slot.spin)
            except BaseException:
                if slot.current is executor:  # (not if it was being replaced, unasked)
                    executor.signal(signal.SIGKILL)  # before anything else: its answer is void
                    self._on_loop(slot.replace(executor, "cancelled"))
                raise
            if reply is TIMED_OUT:
                executor.signal(signal.SIGKILL)  # the deadline is now, not when the pool's thread wakes
            outcome = self.success(executor, seq, reply)
            if outcome is None:
                outcome = self._on_loop(self.outcome(slot, executor, seq, reply, prepared.hard_timeout))
        finally:
            slots.release_threadsafe(slot)
        self.finished(prepared, outcome, executor.id, started)
        return outcome

    def _take_from_thread(self, slots: Slots) -> Supervisor:
        """Queue for a slot on the pool's loop (which also spawns its executor if needed). A
        caller interrupted while it waits leaves the queue, and gives back a slot handed to it
        meanwhile."""
        lock = threading.Lock()
        handed: list[Supervisor] = []
        abandoned = False

        async def take() -> None:
            slot, _ = await slots.take()
            with lock:
                if not abandoned:
                    handed.append(slot)
                    return
            slots.release(slot)

        future = asyncio.run_coroutine_threadsafe(take(), self._loop)  # type: ignore[arg-type]  # set by open()
        try:
            future.result()
        except BaseException:
            with lock:
                abandoned = True
            future.cancel()
            if handed:
                slots.release_threadsafe(handed[0])
            raise
        return handed[0]

    def _on_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the pool's loop and wait for it to finish, even through a
        ``KeyboardInterrupt`` (raised once it has finished): a fault is always cleaned up."""
        future: concurrent.futures.Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]
        interrupted: BaseException | None = None
        while True:
            try:
                result = future.result()
                break
            except (KeyboardInterrupt, SystemExit) as e:
                interrupted = interrupted or e
        if interrupted is not None:
            raise interrupted
        return result
