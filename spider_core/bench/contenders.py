"""The latency contenders, each behind the :class:`Contender` protocol (start, one timed call
returning its samples, one checked call, close): ``_Ours`` is spider-core's ProcessPool
running the C test package (also its ``OUR_VARIANTS``), ``_OursSync`` its
``SyncProcessPool`` (the sync workload's ``SYNC_CONTENDERS``), ``_SyncPipeFloor`` and
``_AsyncPipeFloor`` drive the floor child, and ``_BlockingPeer`` wraps the other Python process
pools (concurrent.futures, multiprocessing, pebble, loky, billiard); ``_make_peer`` builds a
contender from its name in ``PEERS``, or says why it is skipped. ``BLOCKING_PEERS`` opens those
pools with any number of workers, for one call at a time or a batch submitted at once (the
throughput workload, :mod:`spider_core.bench.throughput`, opens them with N).
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import msgpack

from spider_core.bench.floor import (
    _READ_SIZE,
    _floor_request,
    _frame,
    _read_frame,
    _spawn_floor_child,
    _take_frame,
    _write_all,
)
from spider_core.bench.workloads import SYNC_WORKLOAD, WORKLOAD_SPECS, Workload, peer_noop
from spider_core.models import ExecuteRequest, PoolConfig, Success
from spider_core.pool import ProcessPool, SyncProcessPool

PACKAGE = "integration_test_tasks"
OURS = "spider-core"
#: The optional contenders, in report order.
#: spider-core itself with other options, measured as extra contenders: ``spin_us`` (CPU for
#: latency), a fork server (the same calls from executors forked by a server).
OUR_VARIANTS: dict[str, dict[str, Any]] = {
    "spider-core-spin": {"spin_us": 300},
    "spider-core-forkserver": {"start_method": "forkserver"},
}
#: spider-core called back to back within each round (:mod:`spider_core.bench.backtoback`),
#: without and with the spin.
BACK_TO_BACK: dict[str, dict[str, Any]] = {"spider-core-b2b": {}, "spider-core-spin-b2b": {"spin_us": 300}}
PEERS = (
    "pipe-sync", "pipe-asyncio", "futures", "multiprocessing", "pebble", "loky", "billiard", *OUR_VARIANTS, *BACK_TO_BACK
)
HARD_TIMEOUT = 60.0
#: The sync workload's contenders beside ``spider-core`` (the async pool) and ``futures``:
#: ``SyncProcessPool.execute`` and ``SyncProcessPool.call``.
OURS_SYNC = f"{OURS}-sync"
OURS_SYNC_CALL = f"{OURS}-sync-call"


class Contender(Protocol):
    name: str
    #: What ``call`` returns, one sample per name; the first is always "e2e".
    metrics: tuple[str, ...]

    async def start(self) -> None: ...

    async def call(self, workload: Workload) -> tuple[float, ...]:
        """Make one call; return its samples (µs), one per metric."""
        ...

    async def check(self, workload: Workload) -> None:
        """Make one call and verify its result.

        :raises RuntimeError: the contender returned something else.
        """
        ...

    async def close(self) -> None: ...


OUR_METRICS = ("e2e", "executor", "executor_internal", "ipc_overhead")


class _Ours:
    """spider-core's ProcessPool running the C test package."""

    name = OURS
    metrics: tuple[str, ...] = OUR_METRICS

    def __init__(self, package_dir: Path, name: str = OURS, **config: Any) -> None:
        self.name = name
        self.pool = ProcessPool(PoolConfig(package_dir=package_dir, log_dir=None, **config))
        self._requests = {
            w.name: ExecuteRequest(package=PACKAGE, task=w.task, inputs=w.args)
            for w in (*WORKLOAD_SPECS.values(), SYNC_WORKLOAD)
        }

    async def start(self) -> None:
        await self.pool.start()

    async def _execute(self, workload: Workload) -> tuple[Success, float]:
        request = self._requests[workload.name]
        start = time.perf_counter()
        outcome = await self.pool.execute(request, hard_timeout=HARD_TIMEOUT)
        e2e = (time.perf_counter() - start) * 1e6
        if not isinstance(outcome, Success):
            raise RuntimeError(f"{OURS}: {workload.task} did not succeed: {outcome!r}")
        return outcome, e2e

    async def call(self, workload: Workload) -> tuple[float, ...]:
        outcome, e2e = await self._execute(workload)
        executor = float(outcome.elapsed_us)
        return e2e, executor, executor - workload.nominal_us, e2e - executor

    async def check(self, workload: Workload) -> None:
        outcome, _ = await self._execute(workload)
        _check(self.name, workload, outcome.values, list(workload.args))

    async def close(self) -> None:
        await self.pool.close()


class _OursSync:
    """spider-core's SyncProcessPool (its event loop in a thread of its own) running the C test
    package, called from the benchmark's thread: ``execute``, or ``call`` (values, or an
    exception)."""

    metrics: tuple[str, ...] = ("e2e",)

    def __init__(self, package_dir: Path, name: str, **config: Any) -> None:
        self.name = name
        self._use_call = name == OURS_SYNC_CALL
        self._config = PoolConfig(package_dir=package_dir, log_dir=None, **config)
        self._requests = {
            w.name: ExecuteRequest(package=PACKAGE, task=w.task, inputs=w.args)
            for w in (*WORKLOAD_SPECS.values(), SYNC_WORKLOAD)
        }

    async def start(self) -> None:
        self.pool = SyncProcessPool(self._config)
        self.pool.start()

    def _run(self, workload: Workload) -> Any:
        if self._use_call:
            return self.pool.call(PACKAGE, workload.task, *workload.args, hard_timeout=HARD_TIMEOUT)
        outcome = self.pool.execute(self._requests[workload.name], hard_timeout=HARD_TIMEOUT)
        if not isinstance(outcome, Success):
            raise RuntimeError(f"{self.name}: {workload.task} did not succeed: {outcome!r}")
        return outcome

    async def call(self, workload: Workload) -> tuple[float, ...]:
        start = time.perf_counter()
        self._run(workload)
        return ((time.perf_counter() - start) * 1e6,)

    async def check(self, workload: Workload) -> None:
        got = self._run(workload)
        _check(self.name, workload, got if self._use_call else got.values, list(workload.args))

    async def close(self) -> None:
        self.pool.close()


class _SyncPipeFloor:
    """The floor driven with blocking reads and writes."""

    name = "pipe-sync"
    metrics: tuple[str, ...] = ("e2e",)

    async def start(self) -> None:
        self.proc = _spawn_floor_child()  # stdin and stdout are pipes (the ignores here and in close)
        self._out = self.proc.stdin.fileno()  # type: ignore[union-attr]
        self._in = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self._buffer = bytearray()

    def _roundtrip(self, frame: bytes) -> Any:
        _write_all(self._out, frame)
        body = _read_frame(self._in, self._buffer)
        if body is None:
            raise RuntimeError(f"{self.name}: the child exited")
        return msgpack.unpackb(body)

    async def call(self, workload: Workload) -> tuple[float, ...]:
        frame = _floor_request(workload)
        start = time.perf_counter()
        self._roundtrip(frame)
        return ((time.perf_counter() - start) * 1e6,)

    async def check(self, workload: Workload) -> None:
        _check(self.name, workload, self._roundtrip(_floor_request(workload)), workload.expected)

    async def close(self) -> None:
        _write_all(self._out, _frame(["stop", None]))
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]


class _AsyncPipeFloor:
    """The floor driven from the event loop: one write, one reader callback, one future."""

    name = "pipe-asyncio"
    metrics: tuple[str, ...] = ("e2e",)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.proc = _spawn_floor_child()  # stdin and stdout are pipes (the ignores here and in close)
        self._out = self.proc.stdin.fileno()  # type: ignore[union-attr]
        self._in = self.proc.stdout.fileno()  # type: ignore[union-attr]
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Any] | None = None
        os.set_blocking(self._in, False)
        self.loop.add_reader(self._in, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._in, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            self.loop.remove_reader(self._in)
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_exception(RuntimeError(f"{self.name}: the child exited"))
            return
        self._buffer += data
        body = _take_frame(self._buffer)
        if body is not None:
            self._waiter.set_result(msgpack.unpackb(body))  # type: ignore[union-attr]  # set by _roundtrip()

    async def _roundtrip(self, frame: bytes) -> Any:
        self._waiter = self.loop.create_future()
        _write_all(self._out, frame)  # small frames: the pipe takes them at once
        return await self._waiter

    async def call(self, workload: Workload) -> tuple[float, ...]:
        frame = _floor_request(workload)
        start = time.perf_counter()
        await self._roundtrip(frame)
        return ((time.perf_counter() - start) * 1e6,)

    async def check(self, workload: Workload) -> None:
        _check(self.name, workload, await self._roundtrip(_floor_request(workload)), workload.expected)

    async def close(self) -> None:
        self.loop.remove_reader(self._in)
        _write_all(self._out, _frame(["stop", None]))
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]


class _Opened(NamedTuple):
    """A blocking peer, opened with some number of workers."""

    #: ``run(fn, args)``: one call, waited for; its result.
    run: Callable[[Callable[..., Any], tuple[Any, ...]], Any]
    #: ``run_many(fn, n)``: ``n`` calls of ``fn()`` submitted at once, then every result, in order.
    run_many: Callable[[Callable[..., Any], int], list[Any]]
    close: Callable[[], None]


def _close_and_join(pool: Any) -> Callable[[], None]:
    def close() -> None:
        pool.close()
        pool.join()

    return close


def _with_futures(submit: Callable[..., Any], close: Callable[[], None]) -> _Opened:
    """A pool whose ``submit(fn, *args)`` returns a future with ``result()``."""

    def run_many(fn: Callable[..., Any], n: int) -> list[Any]:
        pending = [submit(fn) for _ in range(n)]
        return [future.result() for future in pending]

    return _Opened(lambda fn, args: submit(fn, *args).result(), run_many, close)


def _with_apply_async(pool: Any) -> _Opened:
    """A ``multiprocessing.Pool``-like pool: ``apply``, ``apply_async(...).get()``, close and join."""

    def run_many(fn: Callable[..., Any], n: int) -> list[Any]:
        pending = [pool.apply_async(fn) for _ in range(n)]
        return [result.get() for result in pending]

    return _Opened(pool.apply, run_many, _close_and_join(pool))


def _open_futures(workers: int) -> _Opened:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork, named: the default until Python 3.14 (forkserver since), and what the targets quote.
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    return _with_futures(pool.submit, pool.shutdown)


def _open_multiprocessing(workers: int) -> _Opened:
    import multiprocessing

    return _with_apply_async(multiprocessing.Pool(workers))


def _open_pebble(workers: int) -> _Opened:
    import pebble

    pool = pebble.ProcessPool(max_workers=workers)
    return _with_futures(lambda fn, *args: pool.schedule(fn, args=args), _close_and_join(pool))


def _open_loky(workers: int) -> _Opened:
    import loky

    executor = loky.get_reusable_executor(max_workers=workers)
    return _with_futures(executor.submit, executor.shutdown)


def _open_billiard(workers: int) -> _Opened:
    import billiard

    return _with_apply_async(billiard.Pool(workers))


#: name -> (module that must be importable, opener taking the number of workers), in report order
BLOCKING_PEERS: dict[str, tuple[str, Callable[[int], _Opened]]] = {
    "futures": ("concurrent.futures", _open_futures),
    "multiprocessing": ("multiprocessing", _open_multiprocessing),
    "pebble": ("pebble", _open_pebble),
    "loky": ("loky", _open_loky),
    "billiard": ("billiard", _open_billiard),
}


def _missing(name: str) -> str | None:
    """Why the blocking peer ``name`` is skipped, or None if it can run."""
    module = BLOCKING_PEERS[name][0]
    if importlib.util.find_spec(module) is None:
        return f"{name}: skipped, not installed (pip install {module})"
    return None


class _BlockingPeer:
    """A process pool with a blocking API, called from the event loop (calls are sequential)."""

    metrics: tuple[str, ...] = ("e2e",)

    def __init__(self, name: str, opener: Callable[[int], _Opened]) -> None:
        self.name = name
        self._opener = opener

    async def start(self) -> None:
        self._run, _, self._close = self._opener(1)
        self._run(peer_noop, ())  # some pools start their worker on the first call

    async def call(self, workload: Workload) -> tuple[float, ...]:
        run, fn, args = self._run, workload.peer_fn, workload.args
        start = time.perf_counter()
        run(fn, args)
        return ((time.perf_counter() - start) * 1e6,)

    async def check(self, workload: Workload) -> None:
        _check(self.name, workload, self._run(workload.peer_fn, workload.args), workload.expected)

    async def close(self) -> None:
        self._close()


def _check(name: str, workload: Workload, got: Any, expected: Any) -> None:
    if got != expected:
        raise RuntimeError(f"{name}: {workload.name} returned {got!r:.200}, expected {expected!r:.200}")


def _make_peer(name: str, package_dir: Path) -> Contender | str:
    """The contender ``name``, or why it is skipped."""
    if name == "pipe-sync":
        return _SyncPipeFloor()
    if name == "pipe-asyncio":
        return _AsyncPipeFloor()
    if name in OUR_VARIANTS:
        return _Ours(package_dir, name, **OUR_VARIANTS[name])
    missing = _missing(name)
    if missing is not None:
        return missing
    return _BlockingPeer(name, BLOCKING_PEERS[name][1])
