"""The recovery workload: how long a pool takes to serve again after a task crashes its worker,
or outlives its hard timeout.

One **crash round** submits a task that kills its worker with SIGSEGV (the C package's
``segfault``; :func:`~spider_core.bench.workloads.peer_crash` for the peers) and, as soon as
the pool reports the failure, a no-op; one **timeout round** submits a task that sleeps 10 s
with a 200 ms hard timeout (``sleep_ms``; :func:`~spider_core.bench.workloads.peer_sleep`),
then the no-op. Each round returns two samples, in µs, both timed from the submission of the
faulting task: until the pool reported the fault (``fault``), and until the no-op's result
came back (``recovered``, the figure the targets are about).

The contenders (:class:`RecoveryContender`): spider-core's ProcessPool with
``PoolConfig(standby=True)`` (``spider-core-standby``; after each of its rounds the benchmark
waits, untimed, until its new standby executor is ready, as it would be in a service between
faults, and before the next contender's round, whose measure that spawn would disturb), without
(``spider-core``), with ``start_method="forkserver"`` and no standby
(``spider-core-forkserver``), pebble and billiard. ``NOT_KILLABLE`` names the peers
that cannot do this at all, and why; the report lists them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from spider_core.bench.contenders import OURS, PACKAGE, _missing
from spider_core.bench.workloads import peer_crash, peer_noop, peer_sleep
from spider_core.models import ExecuteRequest, ExecutorCrash, PoolConfig, Success, Timeout
from spider_core.plugin import hookimpl
from spider_core.plugin.manager import get_plugin_manager
from spider_core.pool import ProcessPool

Fault = Literal["crash", "timeout"]
#: The faults, in report order.
FAULTS: tuple[Fault, ...] = ("crash", "timeout")
#: The hard timeout of a timeout round, in seconds, and how long its task would sleep.
RECOVERY_TIMEOUT_S = 0.2
SLEEP_S = 10.0
#: No wait of a round lasts longer than this (seconds): a pool that has not answered by then
#: fails the run, with a sentence saying which.
GIVE_UP_S = 60.0
OURS_STANDBY = f"{OURS}-standby"
OURS_FORKSERVER = f"{OURS}-forkserver"
#: The recovery contenders, in report order (spider-core's two always run).
RECOVERY_PEERS = ("pebble", "billiard")
#: The peers that cannot take part, and why (the report lists them).
NOT_KILLABLE = {
    "futures": "concurrent.futures.ProcessPoolExecutor cannot kill a running task (no per-task timeout); "
    "a crashed worker breaks the whole pool (BrokenProcessPool), which must be replaced",
    "multiprocessing": "multiprocessing.Pool cannot kill a running task; a task whose worker crashed is "
    "never reported (its result never comes)",
    "loky": "loky cannot kill a running task (no per-task timeout); after a crash it replaces the whole "
    "executor (TerminatedWorkerError)",
}


class RecoveryContender(Protocol):
    name: str

    async def start(self) -> None: ...

    async def settle(self) -> None:
        """Wait, untimed, until the contender is as ready as it gets between faults."""
        ...

    async def fault(self, kind: Fault) -> tuple[float, float]:
        """Run one round: the faulting task, then a no-op.

        :return: µs from submitting the faulting task until the fault was reported, and until
            the no-op's result came back.
        :raises RuntimeError: the fault was not reported as one, the no-op failed, or either
            took longer than ``GIVE_UP_S``.
        """
        ...

    async def close(self) -> None: ...


class _StartedCounter:
    """A lifecycle plugin counting the executors that became ready."""

    def __init__(self) -> None:
        self.started = 0

    @hookimpl
    def spider_executor_started(self, executor_id: int, pid: int, log_path: Path | None) -> None:
        self.started += 1


class _OursRecovery:
    """spider-core's ProcessPool, with or without a standby executor."""

    def __init__(self, package_dir: Path, standby: bool, start_method: str = "exec") -> None:
        self.name = OURS_STANDBY if standby else OURS_FORKSERVER if start_method == "forkserver" else OURS
        self.standby = standby
        self._counter = _StartedCounter()
        pm = get_plugin_manager()
        pm.register(self._counter, name="spider-bench-started-counter")
        config = PoolConfig(package_dir=package_dir, log_dir=None, standby=standby, start_method=start_method)
        self.pool = ProcessPool(config, plugin_manager=pm)
        self._faults = 0
        self._noop = ExecuteRequest(package=PACKAGE, task="noop")
        self._faulty = {
            "crash": ExecuteRequest(package=PACKAGE, task="segfault"),
            "timeout": ExecuteRequest(package=PACKAGE, task="sleep_ms", inputs=[int(SLEEP_S * 1000)]),
        }

    async def start(self) -> None:
        await self.pool.start()
        await self._noop_call()

    async def _noop_call(self) -> None:
        outcome = await self.pool.execute(self._noop, hard_timeout=GIVE_UP_S)
        if not isinstance(outcome, Success):
            raise RuntimeError(f"{self.name}: the no-op after a fault did not succeed: {outcome!r}")

    async def settle(self) -> None:
        if not self.standby:
            return  # without a standby the pool replaces the executor before it reports the fault
        wanted = self._faults + 2  # the first executor, one per fault, and the standby
        deadline = time.monotonic() + GIVE_UP_S
        while self._counter.started < wanted:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no standby executor was ready after {GIVE_UP_S:.0f} s")
            await asyncio.sleep(0.005)

    async def fault(self, kind: Fault) -> tuple[float, float]:
        hard_timeout = RECOVERY_TIMEOUT_S if kind == "timeout" else GIVE_UP_S
        expected = Timeout if kind == "timeout" else ExecutorCrash
        start = time.perf_counter()
        outcome = await self.pool.execute(self._faulty[kind], hard_timeout=hard_timeout)
        reported = time.perf_counter()
        await self._noop_call()
        recovered = time.perf_counter()
        self._faults += 1
        if not isinstance(outcome, expected):
            raise RuntimeError(f"{self.name}: the {kind} task ended in {outcome!r}, not a {expected.__name__}")
        return (reported - start) * 1e6, (recovered - start) * 1e6

    async def close(self) -> None:
        await self.pool.close()


class _PeerRecovery:
    """pebble or billiard with one worker: ``submit(fn, args, timeout)`` returns a callable that
    waits (at most ``GIVE_UP_S``) for the result or raises the pool's exception."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self) -> None:
        if self.name == "pebble":
            import pebble

            pool: Any = pebble.ProcessPool(max_workers=1)

            def submit(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Callable[[], Any]:
                future = pool.schedule(fn, args=args, timeout=timeout)
                return lambda: future.result(timeout=GIVE_UP_S)

            def close() -> None:
                pool.stop()
                pool.join(GIVE_UP_S)
        else:
            from billiard.pool import Pool

            # The hard time limits need the pool's timeout handler, which enable_timeouts starts
            # (billiard.Pool() does not take the option; celery builds its pools this way too).
            pool = Pool(1, enable_timeouts=True)

            def submit(fn: Callable[..., Any], args: tuple[Any, ...], timeout: float | None) -> Callable[[], Any]:
                result = pool.apply_async(fn, args, timeout=timeout)
                return lambda: result.get(timeout=GIVE_UP_S)

            def close() -> None:
                pool.terminate()
                pool.join()

        self._submit, self._close = submit, close
        self._submit(peer_noop, (), None)()  # some pools start their worker on the first call

    async def settle(self) -> None:
        pass  # a new worker is what the no-op waits for: that is the measure

    async def fault(self, kind: Fault) -> tuple[float, float]:
        fn: Callable[..., Any]
        args: tuple[Any, ...]
        if kind == "crash":
            fn, args, timeout = peer_crash, (), None
        else:
            fn, args, timeout = peer_sleep, (SLEEP_S,), RECOVERY_TIMEOUT_S
        start = time.perf_counter()
        wait = self._submit(fn, args, timeout)
        try:
            wait()
        except Exception as e:  # the fault, as this pool reports it, unless our own wait expired
            if time.perf_counter() - start >= GIVE_UP_S:
                raise RuntimeError(f"{self.name}: the {kind} was not reported within {GIVE_UP_S:.0f} s") from e
        else:
            raise RuntimeError(f"{self.name}: the {kind} task returned instead of failing")
        reported = time.perf_counter()
        try:
            self._submit(peer_noop, (), None)()
        except Exception as e:
            raise RuntimeError(f"{self.name}: the no-op after a {kind} failed: {type(e).__name__}: {e}") from None
        return (reported - start) * 1e6, (time.perf_counter() - start) * 1e6

    async def close(self) -> None:
        self._close()


def recovery_contenders(package_dir: Path, peers: Sequence[str]) -> tuple[list[RecoveryContender], list[str]]:
    """The recovery contenders in report order, and notes on the peers skipped or unable."""
    contenders: list[RecoveryContender] = [
        _OursRecovery(package_dir, True),
        _OursRecovery(package_dir, False),
        _OursRecovery(package_dir, False, "forkserver"),
    ]
    notes = []
    for name in RECOVERY_PEERS:
        if name not in peers:
            continue
        missing = _missing(name)
        if missing is not None:
            notes.append(f"recovery: {missing}")
        else:
            contenders.append(_PeerRecovery(name))
    return contenders, notes


@contextlib.contextmanager
def quiet_pool_warnings() -> Iterator[None]:
    """Hold back the pool's warnings about the crashes and timeouts the workload causes on
    purpose (they would interleave with the report; errors still show), and billiard's error
    line about each worker it lost (billiard logs as ``multiprocessing``)."""
    quieter = {
        "spider_core.pool": logging.ERROR,
        "spider_core.executor.log": logging.ERROR,
        "multiprocessing": logging.CRITICAL,
    }
    loggers = [logging.getLogger(name) for name in quieter]
    levels = [logger.level for logger in loggers]
    for logger, level in zip(loggers, quieter.values(), strict=True):
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
