"""The ``execute`` path of an asyncio caller (``ProcessPool.execute``),
which sends the requests of the callers queued behind it ahead to its executor.

Pipelining: an ``execute`` caller that holds a slot whose protocol is pipelined sends the
requests of callers queued behind it ahead to its executor (:meth:`Calls.execute`), as a map
lane sends its batch (:meth:`~spider_core.pool.call.CallPath.run_batch`): with one slot, every caller that queues; with
more, only from a deep queue (at least half :data:`.DEPTH` callers per slot), each slot's
holder its share (:meth:`CallPath.share <spider_core.pool.call.CallPath.share>`), so that a handful of queued callers still take the
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
import itertools
import signal
import time
from collections import deque
from typing import Any

import attrs

from spider_core.errors import EncodeTaskInputs, NotRunning
from spider_core.models import Outcome, PoolConfig
from spider_core.pool.call import CallPath
from spider_core.pool.process import ExecutorProcess
from spider_core.pool.requests import Prepared
from spider_core.pool.slots import Slots
from spider_core.pool.supervisor import Supervisor


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


class Calls(CallPath):
    """The call path of one pool, with the pipelined ``execute`` of an asyncio caller."""

    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        #: By slot index, made on a slot's first ``execute`` and kept: the callers waiting
        #: behind its holder (none, and no executor, while no ``execute`` caller holds it).
        self._pipes: dict[int, _Pipe] = {}
        self._drains: set[asyncio.Task[None]] = set()

    # -- an asyncio caller (ProcessPool.execute)

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

    def _kill_if_started(self, ticket: _Ticket) -> None:
        """The caller of ``ticket`` left before its turn: if the executor has already started
        its request (every answer before it has come, though the loop has not yet handed the
        slot on), it is a running call's cancellation: the executor is killed now, and
        replaced when the slot comes to this ticket (:meth:`_drain`)."""
        slot, executor = ticket.slot, ticket.executor
        if slot is None or executor is None or executor is not slot.current or not executor.alive:
            return  # still in the pool's queue, or sent to an executor since replaced
        pipe = self._pipes[slot.index]  # a ticket on a slot is on its pipe, or was
        if ticket not in pipe.tickets:
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
        (:meth:`share`) and that executor has room."""
        if slots.waiting or not self.share(1):
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
        Adopted callers come in batches of at least half :data:`.DEPTH` once some are there:
        each write wakes the executor and costs the pool a system call, as ``map``'s batches
        do once."""
        room = self.room(executor, self._depth) - 1  # the holder's own request
        there = 0
        complete = True  # every ticket's request is on this executor
        frames = []
        numbered = []
        for ticket in list(pipe.tickets):
            if ticket.executor is executor:
                room -= 1
                there += 1
                continue
            ticket.executor = None
            if room <= 0 or ticket.gone:
                complete = False
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
        for place, ticket in slots.adopt(min(room, self.share(slots.waiting))) if adopt else ():
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
            pipe.executor = None  # nobody may join: the slot goes back
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
