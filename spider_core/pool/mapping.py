"""``ProcessPool.map``: many requests through every slot, several to an executor at a time.

A call of ``execute`` sends one request and waits for its answer: each task costs the pool a
write, a wake-up and a coroutine. ``map`` knows what comes next, so it keeps a lane per slot:
a lane holds its slot for one batch of up to :data:`DEPTH` requests, sends them in one write,
and reads the answers as they come. The executor still runs one task at a time, in order; a
request's hard-timeout clock starts when the answer before it arrives (when the executor
starts it). After a timeout, a crash or a lost channel the executor is replaced as for any
call, and the requests of the batch it had not started go back to the front of the queue:
they never ran, so they run once, on the next executor. Between batches the slot goes back
to the pool, so callers of ``execute`` keep their place in the queue.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from spider_core.errors import EncodeTaskInputs, InternalError
from spider_core.models import ExecuteRequest, Outcome, Success
from spider_core.protocol import EXECUTE_SEQ, FramingError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from spider_core.pool.events import Events
    from spider_core.pool.process import ExecutorProcess
    from spider_core.pool.requests import RequestEncoder
    from spider_core.pool.slots import Slots
    from spider_core.pool.supervisor import Supervisor


class _Pool(Protocol):
    """What a map needs of :class:`~spider_core.pool.async_pool.ProcessPool`."""

    _direct: bool
    _seqs: Iterator[int]
    _loop: asyncio.AbstractEventLoop | None
    _max_rss: int | None
    _events: Events | None
    _requests: RequestEncoder

    def _running_slots(self) -> Slots: ...

    async def _outcome(
        self, slot: Supervisor, executor: ExecutorProcess, seq: int, reply: Any, hard_timeout: float
    ) -> Outcome: ...

#: Requests sent to one executor in one write, at most...
DEPTH = 16
#: ... and at most this many bytes (but always one request), so that the write never waits
#: for the executor to read: a pipe holds 64 KiB, and an answer must then follow the whole
#: request it answers.
BATCH_BYTES = 32 * 1024

# (index in the map, the request, its Execute message, when it was read)
_Item = tuple[int, ExecuteRequest, list[Any], float]


class _Mapper:
    """One ``map`` call: the requests read and not yet sent, the outcomes not yet yielded, and
    one lane task per slot. A lane puts each outcome in :attr:`results` as it comes and wakes
    the map (:meth:`deliver`)."""

    def __init__(self, pool: _Pool, hard_timeout: float, depth: int) -> None:
        self.pool = pool
        self.slots = pool._running_slots()
        self.hard_timeout = hard_timeout
        self.depth = depth
        self.pending: deque[_Item] = deque()
        self.results: dict[int, Outcome | BaseException] = {}
        self.lanes: set[asyncio.Task[list[_Item]]] = set()
        self._wake: asyncio.Future[None] | None = None

    def start_lanes(self) -> None:
        while self.pending and len(self.lanes) < len(self.slots.all):
            self.lanes.add(asyncio.ensure_future(self.lane()))

    def deliver(self, index: int, result: Outcome | BaseException) -> None:
        self.results[index] = result
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def wait(self) -> None:
        """Until a lane delivers an outcome or ends."""
        wake = self._wake = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait([*self.lanes, wake], return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            self._wake = None

    async def lane(self) -> list[_Item]:
        """Take a slot and run one batch on it; the requests to run again."""
        slots = self.slots
        slot = slots.take_now()
        if slot is None:
            slot, _ = await slots.take()
        executor: ExecutorProcess = slot.current  # type: ignore[assignment]  # taken: healthy
        try:
            if self.pool._direct and not executor.quiet():
                executor = await slot.replace_dead()
            return await self.run(slot, executor, self.batch(executor))
        finally:
            if self.pool._direct and slot.current is not None:
                slot.current.detach()  # back to the callers' threads
            slots.release(slot)

    def batch(self, executor: ExecutorProcess) -> list[_Item]:
        limit = self.depth
        if executor.recycle_after is not None:  # never past the recycle: it must come last
            limit = max(1, min(limit, executor.recycle_after - executor.tasks_run))
        pending = self.pending
        items: list[_Item] = []
        size = 0
        while pending and len(items) < limit:
            size += len(pending[0][2][3]) + len(pending[0][2][4])  # context and inputs
            if items and size > BATCH_BYTES:
                break
            items.append(pending.popleft())
        return items

    async def run(self, slot: Supervisor, executor: ExecutorProcess, items: list[_Item]) -> list[_Item]:
        pool = self.pool
        sent: list[tuple[_Item, int]] = []
        frames = []
        for item in items:
            message = item[2]
            message[EXECUTE_SEQ] = seq = next(pool._seqs)
            try:
                frames.append(executor.encode(message))
            except FramingError as e:
                self.deliver(item[0], EncodeTaskInputs(f"cannot send the request: {e}"))
                continue
            sent.append((item, seq))
        if not sent:
            return []
        loop: asyncio.AbstractEventLoop = pool._loop  # type: ignore[assignment]  # started
        fast = executor.recycle_after is None and not pool._max_rss
        events = pool._events
        started = time.perf_counter()
        executor.send(b"".join(frames), replies=len(sent))
        for position, (item, seq) in enumerate(sent):
            # at once if it came with the answer before; its clock starts when that one ended
            reply = await slot.answer(executor, executor.expect(), loop.time() + self.hard_timeout)
            fields = executor.result_fields(reply)
            if fast and fields is not None and fields[0] == seq and fields[1]:
                executor.tasks_run += 1
                outcome: Outcome = Success(outputs=fields[2], elapsed_us=fields[3], executor_id=executor.id)
            else:
                outcome = await pool._outcome(slot, executor, seq, reply, self.hard_timeout)
            self.deliver(item[0], outcome)
            finished = time.perf_counter()
            if events is not None:
                events.task_finished(item[1], outcome, executor.id, started - item[3], finished - started)
            started = finished
            # Replaced (this request timed out, crashed it, or ended its share): the requests
            # after this one never reached a live executor. (One that died after answering is
            # replaced only once its answers so far are read, at the first request it owes.)
            if slot.current is not executor:
                return [later for later, _ in sent[position + 1 :]]
        return []


async def pipelined_map(
    pool: _Pool, requests: Iterable[ExecuteRequest], hard_timeout: float, soft_timeout: float | None, depth: int
) -> AsyncGenerator[Outcome, None]:
    """The outcomes of ``requests`` in request order (see :meth:`ProcessPool.map`)."""
    mapper = _Mapper(pool, hard_timeout, depth)
    window = 2 * depth * len(mapper.slots.all)
    source = iter(requests)
    results = mapper.results
    read = 0  # requests read from the iterable
    given = 0  # outcomes yielded
    exhausted = False
    try:
        while True:
            while not exhausted and read - given < window:
                try:
                    request = next(source)
                except StopIteration:
                    exhausted = True
                    break
                except Exception as e:  # the iterable's own error, raised at its place
                    results[read] = e
                    read += 1
                    exhausted = True
                    break
                try:
                    message = pool._requests.prepare(request, hard_timeout, soft_timeout)
                except InternalError as e:
                    results[read] = e  # raised at its place
                else:
                    mapper.pending.append((read, request, message, time.perf_counter()))
                read += 1
            mapper.start_lanes()
            while given in results:
                result = results.pop(given)
                given += 1
                if isinstance(result, BaseException):
                    raise result
                yield result
            if exhausted and given == read:
                return
            if not mapper.lanes:
                continue
            await mapper.wait()
            for lane in [lane for lane in mapper.lanes if lane.done()]:
                mapper.lanes.discard(lane)
                try:
                    again = lane.result()
                except InternalError as e:  # no slot could serve: the next request gets the error
                    if mapper.pending:
                        results[mapper.pending.popleft()[0]] = e
                    continue
                if again:
                    mapper.pending = deque(sorted([*again, *mapper.pending], key=lambda item: item[0]))
    finally:
        for lane in mapper.lanes:
            lane.cancel()  # a running request's executor is killed and replaced
        if mapper.lanes:  # closed with aclose() (or by the loop): done when that is done
            await asyncio.gather(*mapper.lanes, return_exceptions=True)
