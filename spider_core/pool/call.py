"""One call, from a prepared request to its outcome: the path every entry point takes.

``ProcessPool.execute`` (an asyncio caller), ``SyncProcessPool.execute`` (a thread that drives
the executor's pipe itself), ``SyncProcessPool.submit`` (``execute`` on the pool's thread) and
the lanes of ``map`` all go through :class:`Calls`. It owns everything between a
:class:`~spider_core.pool.requests.Prepared` request and its outcome: numbering and sending
the request (to the successor if the executor died idle, unnoticed), reading the answer
(with the adaptive spin), the fast path for a plain ``Success``, every other outcome (a
timeout, a crash, a failure, a protocol violation), recycling between tasks, and the
``spider_task_finished`` event. The entry points differ only in how they wait: on the loop,
or in the calling thread.

Pipelining: an ``execute`` caller that holds a slot whose protocol is pipelined sends the
requests of callers queued behind it ahead to its executor (:meth:`Calls.execute`), as a map
lane sends its batch (:meth:`Calls.run_batch`): with one slot, every caller that queues; with
more, only from a deep queue (at least half :data:`DEPTH` callers per slot), each slot's
holder its share (:meth:`Calls._share`), so that a handful of queued callers still take the
first slot that frees. The executor still runs one task at a time, in order, and each caller
still reads its own answer: the slot passes from one caller to the next as the answers come.
So:

- a request's hard-timeout clock starts when the answer before it arrives (when the executor
  starts it), not when it was sent;
- a caller cancelled while its request waits behind another (sent ahead or not) costs no
  executor and gets no result: a request already sent runs, and its answer is read and
  dropped (as ``concurrent.futures`` runs a call it has handed to a worker); only a running
  call's cancellation kills and replaces the executor, and a request sent ahead is running
  once every answer before it has come (read by the pool or still in the pipe);
- after a timeout or a crash, the requests sent behind the failed one never ran: they are
  sent to the successor, once;
- callers are served first come, first served with the lanes of ``map``: only the callers
  queued right behind, before any map lane or thread caller, are sent ahead;
- ``recycle_after`` and ``max_executor_rss`` still fall between tasks: an executor is never
  sent more requests than it has left of its share, and with ``max_executor_rss`` nothing is
  sent ahead (the memory check comes after each task);
- a protocol that is not pipelined (spider-rust) gets one request at a time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import attrs

from spider_core.errors import EncodeTaskInputs, InvalidRequest, NotRunning
from spider_core.models import ExecuteRequest, ExecutorCrash, InTaskFailure, Outcome, PoolConfig, Success, Timeout
from spider_core.pool.channel import TIMED_OUT, Lost
from spider_core.pool.events import Events
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


@attrs.define(slots=True, eq=False)
class _Ticket:
    """An ``execute`` caller whose request waits behind another on a slot (sent ahead, or to
    be sent once there is room)."""

    prepared: Prepared
    #: Set when the caller holds the slot: its answer is the next one. (For a caller
    #: adopted from the pool's queue, its place there; None until then.)
    turn: asyncio.Future[Any] | None = None
    #: The slot it waits on (None while it is still in the pool's queue).
    slot: Supervisor | None = None
    #: The executor its request was sent to, and with which number (None: not sent).
    executor: ExecutorProcess | None = None
    seq: int = 0
    #: The caller left once its turn had come.
    dropped: bool = False
    #: The caller left while the executor ran its request: the executor was killed.
    killed: bool = False

    @property
    def gone(self) -> bool:
        """Whether nobody waits for the answer any more."""
        return self.dropped or (self.turn is not None and self.turn.cancelled())

    def go(self, error: BaseException | None = None) -> None:
        """Its turn: the caller holds the slot now; or it gets ``error`` instead."""
        assert self.turn is not None  # on a slot's pipeline: joined or adopted
        if error is None:
            self.turn.set_result(None)
        else:
            self.turn.set_exception(error)


@attrs.define(slots=True, eq=False)
class _Pipe:
    """The callers waiting behind the ``execute`` caller that holds a slot, in order."""

    tickets: deque[_Ticket] = attrs.field(factory=deque)
    #: The executor the holder's request and every ticket's were sent to, while callers may
    #: join (None: some are not sent, or the executor changed).
    executor: ExecutorProcess | None = None


class Calls:
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
        self._pipes: dict[int, _Pipe] = {}  # by slot index: the slots execute callers hold
        self._drains: set[asyncio.Task[None]] = set()

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

    # -- an asyncio caller (ProcessPool.execute, SyncProcessPool.submit)

    async def execute(self, prepared: Prepared) -> Outcome:
        """Run ``prepared`` on the first free slot, or behind the caller that holds a slot
        (see the module's doc), and return its outcome (on the loop).

        :raises InternalError: no slot could serve it (``NotRunning``,
            ``ExecutorCreationFailure``), or the protocol cannot encode it.
        """
        slots = self.slots
        slot = slots.take_now()
        ticket = None
        if slot is not None and not self.direct:
            executor: ExecutorProcess = slot.current  # type: ignore[assignment]  # take_now(): healthy slots only
        elif slot is None and self._depth > 1:
            ticket, slot, executor = await self._queue(slots, prepared)
        else:
            slot, executor = await self._take(slots, slot)
        pipe = self._pipes.get(slot.index)
        if pipe is None:
            pipe = self._pipes[slot.index] = _Pipe()
        try:
            started = time.perf_counter()
            if ticket is not None and ticket.executor is executor:  # sent ahead
                seq = ticket.seq
            else:
                seq, frame = self.frame(executor, prepared)
                if not self._write(executor, [frame]):
                    executor, (seq,) = await self._resend(slot, (prepared,))
            if self._depth > 1 and (pipe.tickets or slots.waiting):
                self._send_ahead(slots, slot, executor, pipe)
            else:
                pipe.executor = executor
            waiter = executor.expect()
            deadline = self._loop.time() + prepared.hard_timeout  # type: ignore[union-attr]  # set by open()
            # Poll only while this is the one call in flight: the loop runs nothing else meanwhile.
            spin = slot.spin.budget() if slot.spin.window_ns and slots.alone and not waiter.done() else 0
            if spin:
                slot.spin.answered(executor.poll(waiter, min(spin, int(min(prepared.hard_timeout, 1.0) * 1e9))))
            reply = await slot.answer(executor, waiter, deadline)  # at once if answered while we spun
            outcome = self.success(executor, seq, reply)
            if outcome is None:
                outcome = await self.outcome(slot, executor, seq, reply, prepared.hard_timeout)
        finally:
            self._hand_on(slots, slot)
        self.finished(prepared, outcome, executor.id, started)
        return outcome

    # -- pipelining

    async def _queue(self, slots: Slots, prepared: Prepared) -> tuple[_Ticket | None, Supervisor, ExecutorProcess]:
        """Every slot is busy: join the pipeline of a slot an ``execute`` caller holds (if
        nobody is queued and one has room), or queue for a slot with a ticket (which the
        holder of a slot may adopt); then wait for the turn. The ticket (None: the caller
        got a slot of its own), the slot and its executor."""
        ticket = self._join(slots, prepared)
        try:
            if ticket is not None:
                await ticket.turn  # type: ignore[misc]  # joined: a future of its own
            else:
                ticket = _Ticket(prepared)
                taken = await slots.take_or_adopted(ticket)
                if taken is not None:
                    return None, *await self._take(slots, taken[0])
        except asyncio.CancelledError:
            turn = ticket.turn if ticket is not None else None
            if turn is not None and turn.done() and not turn.cancelled():  # its turn came as it left
                self._drop(slots, ticket)  # type: ignore[arg-type]  # it has a turn
            elif ticket is not None:
                self._kill_if_started(ticket)
            raise  # else it was still queued or waiting behind: its answer, if it gets one, is dropped
        slot: Supervisor = ticket.slot  # type: ignore[assignment]  # its turn: on a slot
        executor: ExecutorProcess | None = slot.current
        if executor is not None and executor is ticket.executor:
            return ticket, slot, executor  # its answer comes next (or Lost: it died running this request)
        if executor is None or not executor.alive:  # replaced, and the successor is gone too
            try:
                executor = await slot.replace_dead()
            except BaseException:
                self._hand_on(slots, slot)
                raise
        return ticket, slot, executor

    def _share(self, slots: Slots, waiting: int) -> int:
        """How many of ``waiting`` queued callers a slot's holder may send ahead. With one
        slot, all of them (the order is the queue's anyway). With more, only a deep queue (at
        least half :data:`DEPTH` per slot), and then each slot's share of it: a caller sent
        ahead is bound to that slot, while one that waits in the queue takes the first slot
        that frees (a short task's, not a long one's), which is what a handful of queued
        callers should get; a deep queue gains more from pipelining than it loses there."""
        count = len(slots.all)
        if count == 1:
            return waiting
        return waiting // count if waiting >= count * (self._depth // 2) else 0

    def _kill_if_started(self, ticket: _Ticket) -> None:
        """The caller of ``ticket`` left before its turn: if the executor has already started
        its request (every answer before it has come, though the loop has not yet handed the
        slot on), it is a running call's cancellation: the executor is killed now, and
        replaced when the slot comes to this ticket (:meth:`_drain`)."""
        slot, executor = ticket.slot, ticket.executor
        if slot is None or executor is None or executor is not slot.current or not executor.alive:
            return  # still in the pool's queue, or sent to an executor since replaced
        pipe = self._pipes.get(slot.index)
        if pipe is None or ticket not in pipe.tickets:
            return  # its answer is already being read and dropped
        executor.catch_up()
        tickets = pipe.tickets
        behind = sum(1 for other in itertools.islice(tickets, tickets.index(ticket) + 1, None) if other.executor is executor)
        if executor.owed <= 1 + behind:
            ticket.killed = True
            executor.signal(signal.SIGKILL)  # before anything else: its answer is void

    def _drop(self, slots: Slots, ticket: _Ticket) -> None:
        """The caller of ``ticket`` left as its turn came: the executor runs its request (the
        answer before it came), so this is a running call's cancellation: the executor is
        killed, and replaced before the slot is handed on (:meth:`_drain`)."""
        slot: Supervisor = ticket.slot  # type: ignore[assignment]  # it had a turn on a slot
        ticket.dropped = True
        if ticket.executor is not None and ticket.executor is slot.current:
            ticket.killed = True
            ticket.executor.signal(signal.SIGKILL)  # before anything else: its answer is void
        self._pipes[slot.index].tickets.appendleft(ticket)
        self._hand_on(slots, slot)

    def _join(self, slots: Slots, prepared: Prepared) -> _Ticket | None:
        """Send ``prepared`` ahead to the slot an ``execute`` caller holds with the fewest
        requests behind it, if nobody is queued (they come first), it is its share
        (:meth:`_share`) and that executor has room."""
        if slots.waiting or not self._share(slots, 1):
            return None
        best = None
        for index, pipe in self._pipes.items():
            executor = pipe.executor
            slot = slots.all[index]
            if executor is None or executor is not slot.current or not executor.alive:
                continue
            if 1 + len(pipe.tickets) < self.room(executor, self._depth) and (
                best is None or len(pipe.tickets) < len(best[1].tickets)
            ):
                best = (slot, pipe)
        if best is None:
            return None
        slot, pipe = best
        executor = pipe.executor
        assert executor is not None
        seq, frame = self.frame(executor, prepared)
        ticket = _Ticket(prepared, self._loop.create_future(), slot, executor, seq)  # type: ignore[union-attr]
        self._write(executor, [frame])  # refused: the holder's answer is lost too, and its successor gets this
        pipe.tickets.append(ticket)
        return ticket

    def _send_ahead(self, slots: Slots, slot: Supervisor, executor: ExecutorProcess, pipe: _Pipe) -> None:
        """The holder of ``slot`` sent its request to ``executor``: send those of the tickets
        behind it that are not there yet (they were sent to an executor since replaced), and
        adopt the callers at the front of the pool's queue, as far as the executor has room.
        Adopted callers come in batches of at least half :data:`DEPTH` once some are there:
        each write wakes the executor and costs the pool a system call, as ``map``'s batches
        do once."""
        room = self.room(executor, self._depth) - 1  # the holder's own request
        there = 0
        frames = []
        numbered = []
        for ticket in list(pipe.tickets):
            if ticket.executor is executor:
                room -= 1
                there += 1
                continue
            ticket.executor = None
            if room <= 0 or ticket.gone:
                continue  # sent later, by the holder whose turn it is then; or dropped
            try:
                seq, frame = self.frame(executor, ticket.prepared)
            except EncodeTaskInputs as e:
                pipe.tickets.remove(ticket)
                ticket.go(e)
                continue
            frames.append(frame)
            numbered.append((ticket, seq))
            room -= 1
        adopt = room > 0 and (not there or room >= self._depth // 2)
        for place, ticket in slots.adopt(min(room, self._share(slots, slots.waiting))) if adopt else ():
            ticket.slot, ticket.turn = slot, place
            try:
                seq, frame = self.frame(executor, ticket.prepared)
            except EncodeTaskInputs as e:
                ticket.go(e)
                continue
            pipe.tickets.append(ticket)
            frames.append(frame)
            numbered.append((ticket, seq))
        if frames:
            self._write(executor, frames)  # refused: the holder's answer is lost too (see _join)
            for ticket, seq in numbered:
                ticket.executor, ticket.seq = executor, seq
        complete = all(ticket.executor is executor for ticket in pipe.tickets)
        pipe.executor = executor if complete else None

    def _hand_on(self, slots: Slots, slot: Supervisor) -> None:
        """The holder of ``slot`` is done: the slot goes to the next caller waiting behind it
        (whose answer comes next), or back to the pool. An answer nobody waits for any more
        is read and dropped first (:meth:`_drain`)."""
        pipe = self._pipes.get(slot.index)
        if pipe is not None:
            tickets = pipe.tickets
            if self.closed:  # the requests behind count as queued: refused, as the pool's queue is
                for ticket in tickets:
                    if not ticket.gone:
                        ticket.go(NotRunning("the pool is closed"))
                tickets.clear()
            while tickets:
                ticket = tickets[0]
                if not ticket.gone:
                    tickets.popleft()
                    ticket.go()
                    return
                executor = ticket.executor
                if executor is not None and executor is slot.current:  # its answer (or Lost) is next
                    drain = self._loop.create_task(self._drain(slots, slot))  # type: ignore[union-attr]  # set by open()
                    self._drains.add(drain)
                    drain.add_done_callback(self._drains.discard)
                    return
                tickets.popleft()  # never sent, or sent to an executor since replaced: nothing to read
            del self._pipes[slot.index]
        self._release(slots, slot)

    async def _drain(self, slots: Slots, slot: Supervisor) -> None:
        """Read and drop the answers of the requests at the front of ``slot``'s pipeline whose
        callers left (they were sent ahead: the executor runs them, as it started the ones
        before them); then hand the slot on."""
        loop: asyncio.AbstractEventLoop = self._loop  # type: ignore[assignment]  # set by open()
        tickets = self._pipes[slot.index].tickets
        try:
            while tickets and tickets[0].gone:
                ticket = tickets.popleft()
                executor = ticket.executor
                if executor is None or executor is not slot.current:
                    continue
                if ticket.killed:  # cancelled while it ran
                    await slot.replace(executor, "cancelled")
                    continue
                started = time.perf_counter()
                reply = await slot.answer(executor, executor.expect(), loop.time() + ticket.prepared.hard_timeout)
                outcome = self.success(executor, ticket.seq, reply)
                if outcome is None:
                    outcome = await self.outcome(slot, executor, ticket.seq, reply, ticket.prepared.hard_timeout)
                self.finished(ticket.prepared, outcome, executor.id, started)
        finally:
            self._hand_on(slots, slot)

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
            # at once if it came with the answer before; its clock starts when that one ended
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

        :raises InternalError: as :meth:`execute`.
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
