"""The throughput workload's contenders: each runs a batch of no-op tasks, all queued at once,
through ``N`` workers and returns how long the batch took, from the first submission to the
last result. ``_OursBatch`` is spider-core's ProcessPool with ``PoolConfig.slots=N`` (the
batch queued with ``asyncio.gather`` over ``execute``, or fed through ``ProcessPool.map``),
``_OursSubmit`` submits it to a SyncProcessPool from 8 threads at once, ``_BlockingBatch`` wraps the blocking peers of :mod:`spider_core.bench.contenders`, opened the
same way as for the latency workloads but with ``N`` workers; ``_throughput_contenders`` builds
them in report order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from spider_core.bench.contenders import BLOCKING_PEERS, HARD_TIMEOUT, OURS, PACKAGE, _missing, _Opened
from spider_core.bench.workloads import WORKLOAD_SPECS, peer_noop
from spider_core.models import ExecuteRequest, PoolConfig, Success
from spider_core.pool import ProcessPool, SyncProcessPool

#: The work of one task in a throughput batch.
THROUGHPUT_TASK = WORKLOAD_SPECS["noop"]
#: spider-core's extra throughput contenders: the same batch through ``ProcessPool.map``, and
#: through a one-slot pool (the reference the N slots are compared with).
OURS_MAP = f"{OURS}-map"
OURS_SYNC_MAP = f"{OURS}-sync-map"
#: The batch through ``SyncProcessPool.submit`` from :data:`SUBMIT_THREADS` threads at once.
OURS_SUBMIT = f"{OURS}-submit"
SUBMIT_THREADS = 8
OURS_ONE_SLOT = f"{OURS}-slots1"


class BatchContender(Protocol):
    name: str
    #: Worker processes (executors, for spider-core).
    workers: int

    async def start(self) -> None: ...

    async def batch(self, size: int) -> float:
        """Run ``size`` no-op tasks queued at once; return the seconds from the first
        submission to the last result.

        :raises RuntimeError: a task did not return what the no-op returns.
        """
        ...

    async def close(self) -> None: ...


class _OursBatch:
    """spider-core's ProcessPool with ``slots`` executors, a batch queued from the event loop."""

    def __init__(
        self, package_dir: Path, name: str, slots: int, how: Literal["gather", "map"], start_method: str = "exec"
    ) -> None:
        self.name = name
        self.workers = slots
        self.how = how
        self.pool = ProcessPool(PoolConfig(package_dir=package_dir, log_dir=None, slots=slots, start_method=start_method))
        self._request = ExecuteRequest(package=PACKAGE, task=THROUGHPUT_TASK.task, inputs=THROUGHPUT_TASK.args)

    async def start(self) -> None:
        await self.pool.start()

    async def batch(self, size: int) -> float:
        pool, request = self.pool, self._request
        start = time.perf_counter()
        if self.how == "map":
            outcomes = [outcome async for outcome in pool.map(itertools.repeat(request, size), HARD_TIMEOUT)]
        else:
            outcomes = await asyncio.gather(*[pool.execute(request, HARD_TIMEOUT) for _ in range(size)])
        elapsed = time.perf_counter() - start
        for outcome in outcomes:
            if not isinstance(outcome, Success) or outcome.values != []:
                raise RuntimeError(f"{self.name}: {THROUGHPUT_TASK.task} did not succeed: {outcome!r:.200}")
        if len(outcomes) != size:
            raise RuntimeError(f"{self.name}: {len(outcomes)} outcomes for {size} tasks")
        return elapsed

    async def close(self) -> None:
        await self.pool.close()


class _OursSyncMap:
    """spider-core's SyncProcessPool with ``slots`` executors, a batch through its ``map``
    (iterated in a thread, as a caller without an event loop would)."""

    def __init__(self, package_dir: Path, slots: int) -> None:
        self.name = OURS_SYNC_MAP
        self.workers = slots
        self.pool = SyncProcessPool(PoolConfig(package_dir=package_dir, log_dir=None, slots=slots))
        self._request = ExecuteRequest(package=PACKAGE, task=THROUGHPUT_TASK.task, inputs=THROUGHPUT_TASK.args)

    async def start(self) -> None:
        await asyncio.to_thread(self.pool.start)

    def _run(self, size: int) -> tuple[float, list[Any]]:
        start = time.perf_counter()
        outcomes = list(self.pool.map(itertools.repeat(self._request, size), HARD_TIMEOUT))
        return time.perf_counter() - start, outcomes

    async def batch(self, size: int) -> float:
        elapsed, outcomes = await asyncio.to_thread(self._run, size)
        if len(outcomes) != size or any(not isinstance(o, Success) or o.values != [] for o in outcomes):
            raise RuntimeError(f"{self.name}: {THROUGHPUT_TASK.task} did not succeed, or too few outcomes")
        return elapsed

    async def close(self) -> None:
        await asyncio.to_thread(self.pool.close)


class _OursSubmit(_OursSyncMap):
    """spider-core's SyncProcessPool with ``slots`` executors, a batch submitted from
    :data:`SUBMIT_THREADS` threads at once (each its share, ``submit`` after ``submit``, then
    every future waited for), as independent callers without an event loop would."""

    def __init__(self, package_dir: Path, slots: int) -> None:
        super().__init__(package_dir, slots)
        self.name = OURS_SUBMIT

    def _submit(self, count: int, go: threading.Barrier) -> list[Any]:
        submit, request = self.pool.submit, self._request
        go.wait()
        futures = [submit(request, HARD_TIMEOUT) for _ in range(count)]
        return [future.result() for future in futures]

    def _run(self, size: int) -> tuple[float, list[Any]]:
        go = threading.Barrier(SUBMIT_THREADS + 1)
        shares = [size // SUBMIT_THREADS + (i < size % SUBMIT_THREADS) for i in range(SUBMIT_THREADS)]
        with concurrent.futures.ThreadPoolExecutor(SUBMIT_THREADS) as threads:
            parts = [threads.submit(self._submit, share, go) for share in shares]
            go.wait()
            start = time.perf_counter()
            outcomes = [outcome for part in parts for outcome in part.result()]
            return time.perf_counter() - start, outcomes


class _BlockingBatch:
    """A blocking peer with ``workers`` workers: every task submitted, then every result waited for."""

    def __init__(self, name: str, opener: Callable[[int], _Opened], workers: int) -> None:
        self.name = name
        self.workers = workers
        self._opener = opener

    async def start(self) -> None:
        self._run_many, self._close = self._opener(self.workers)[1:]
        # Some pools start their workers on the first calls; have them all up before
        # spider-core's executors start, so forked workers do not inherit their pipes.
        self._run_many(peer_noop, 4 * self.workers)

    async def batch(self, size: int) -> float:
        run_many = self._run_many
        start = time.perf_counter()
        results = run_many(peer_noop, size)
        elapsed = time.perf_counter() - start
        if len(results) != size or any(result is not None for result in results):
            raise RuntimeError(f"{self.name}: the no-op returned something else, or too few results")
        return elapsed

    async def close(self) -> None:
        self._close()


def _throughput_contenders(
    package_dir: Path, slots: int, peers: Sequence[str], start_method: str = "exec"
) -> tuple[list[BatchContender], list[str]]:
    """The throughput contenders in report order (spider-core first), and notes on skipped peers."""
    contenders: list[Any] = [
        _OursBatch(package_dir, OURS, slots, "gather", start_method),
        _OursBatch(package_dir, OURS_MAP, slots, "map", start_method),
        _OursSyncMap(package_dir, slots),
        _OursSubmit(package_dir, slots),
    ]
    if slots > 1:
        contenders.append(_OursBatch(package_dir, OURS_ONE_SLOT, 1, "gather"))
    notes = []
    for name, (_, opener) in BLOCKING_PEERS.items():
        if name not in peers:
            continue
        missing = _missing(name)
        if missing is not None:
            notes.append(missing)
        else:
            contenders.append(_BlockingBatch(name, opener, slots))
    return contenders, notes
