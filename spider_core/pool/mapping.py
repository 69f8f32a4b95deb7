"""``ProcessPool.map``: many requests through every slot, several to an executor at a time.

A call of ``execute`` sends one request and waits for its answer: each task costs the pool a
write, a wake-up and a coroutine. ``map`` knows what comes next, so it keeps a lane per slot:
a lane holds its slot for one batch of up to :data:`~spider_core.pool.call.DEPTH` requests, sends them in one write,
and reads the answers as they come. The executor still runs one task at a time, in order; a
request's hard-timeout clock starts when the answer before it arrives (when the executor
starts it). After a timeout, a crash or a lost channel the executor is replaced as for any
call, and the requests of the batch it had not started go back to the front of the queue:
they never ran, so they run once, on the next executor. Between batches the slot goes back
to the pool, so callers of ``execute`` keep their place in the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Iterable

from spider_core.errors import InternalError
from spider_core.models import ExecuteRequest, Outcome
from spider_core.pool.call import BATCH_BYTES, CallPath
from spider_core.pool.process import ExecutorProcess
from spider_core.pool.requests import Prepared

# (index in the map, the request prepared)
_Item = tuple[int, Prepared]


class _Mapper:
    """One ``map`` call: the requests read and not yet sent, the outcomes not yet yielded, and
    one lane task per slot. A lane puts each outcome in :attr:`results` as it comes and wakes
    the map (:meth:`deliver`)."""

    def __init__(self, calls: CallPath, depth: int) -> None:
        self.calls = calls
        self.slots = calls.slots
        self.depth = depth
        self.pending: deque[_Item] = deque()
        self.results: dict[int, Outcome | BaseException] = {}
        self.lanes: set[asyncio.Task[list[_Item]]] = set()
        self._wake: asyncio.Future[None] | None = None

    def start_lanes(self) -> None:
        while self.pending and len(self.lanes) < len(self.slots.all):
            lane = asyncio.ensure_future(self.calls.lane(self.batch, self.deliver))
            lane.add_done_callback(self._wake_up)
            self.lanes.add(lane)

    def deliver(self, index: int, result: Outcome | BaseException) -> None:
        self.results[index] = result
        self._wake_up()

    def _wake_up(self, _: object = None) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def wait(self) -> None:
        """Until a lane delivers an outcome or ends (at once if one has ended: the map handles
        that before it waits again)."""
        if any(lane.done() for lane in self.lanes):
            return
        wake = self._wake = asyncio.get_running_loop().create_future()
        try:
            await wake
        finally:
            self._wake = None

    def batch(self, executor: ExecutorProcess) -> list[_Item]:
        """The requests to send ``executor`` in one write: from the front of the queue, the
        one it runs and its share of the rest (:meth:`CallPath.batch_size`: a short queue is
        spread over the slots, one request each), within :data:`BATCH_BYTES`."""
        pending = self.pending
        limit = self.calls.batch_size(executor, self.depth, len(pending))
        items: list[_Item] = []
        size = 0
        while pending and len(items) < limit:
            size += pending[0][1].size
            if items and size > BATCH_BYTES:
                break
            items.append(pending.popleft())
        return items


async def pipelined_map(
    calls: CallPath, requests: Iterable[ExecuteRequest], hard_timeout: float, soft_timeout: float | None, depth: int
) -> AsyncGenerator[Outcome, None]:
    """The outcomes of ``requests`` in request order (see :meth:`ProcessPool.map`)."""
    mapper = _Mapper(calls, depth)
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
                    prepared = calls.prepare(request, hard_timeout, soft_timeout)
                except InternalError as e:
                    results[read] = e  # raised at its place
                else:
                    mapper.pending.append((read, prepared))
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
