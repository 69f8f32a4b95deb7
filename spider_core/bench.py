"""Benchmark: per-call latency of a ProcessPool against other Python process pools.

Every contender runs the same work with ONE worker and sequential calls. The contenders run
side by side in one run, interleaved round-robin (one call through each in turn, the starting
contender rotating every round), so machine noise hits all of them alike.

Contenders (``PEERS`` names the optional ones):

- ``spider-core``: :class:`spider_core.ProcessPool` running the C package
  ``integration_test_tasks`` (always measured; the ratios are relative to it);
- ``pipe-sync`` / ``pipe-asyncio``: the floor, a child process answering 4-byte big-endian
  length-prefixed msgpack frames on its stdin/stdout, driven with blocking ``os.read`` /
  ``os.write``, or from the event loop with one ``add_reader`` callback and one future per call;
- ``futures``, ``multiprocessing``, ``pebble``, ``loky``, ``billiard``: the peers, calling the
  module-level :func:`peer_noop` / :func:`peer_echo`. Peers that are not installed are skipped
  with a note in the report (``pip install pebble loky billiard``).

Workloads: ``noop`` (no inputs, no outputs) and ``echo`` (100 path-like strings in, slept on
for a nominal 50 µs, the same strings out).

For spider-core each call also records, in µs: the executor time (``Success.elapsed_us``,
measured around the package call inside the executor), the executor internal time (executor
time minus the workload's nominal work: 50 µs for echo, 0 for noop) and the IPC overhead (E2E
minus executor time). Percentiles are nearest-rank (:func:`percentile`).

Use :func:`run_benchmark` from Python or :func:`main` from a script.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.util
import json
import math
import os
import platform
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgpack
from attrs import frozen

from spider_core.models import ExecuteRequest, PoolConfig, Success
from spider_core.pool import ProcessPool

PACKAGE = "integration_test_tasks"
OURS = "spider-core"
#: The optional contenders, in report order.
#: spider-core itself with options that trade CPU for latency, measured as extra contenders.
OUR_VARIANTS: dict[str, dict[str, Any]] = {"spider-core-spin": {"spin_us": 300}}
PEERS = ("pipe-sync", "pipe-asyncio", "futures", "multiprocessing", "pebble", "loky", "billiard", *OUR_VARIANTS)
WORKLOADS = ("noop", "echo")

QUICK_CALLS, DEFAULT_CALLS = 300, 3000
QUICK_WARMUP, DEFAULT_WARMUP = 50, 200
QUICK_START_SAMPLES, DEFAULT_START_SAMPLES = 3, 10

ECHO_SLEEP_S = 50e-6
#: The echo payload: 100 path-like strings.
ECHO_STRINGS = [f"/var/data/job-{i % 23}/part-{i:05d}.log" for i in range(100)]
HARD_TIMEOUT = 60.0

_HEADER = struct.Struct(">I")
_READ_SIZE = 64 * 1024
_PROGRESS_INTERVAL = 0.2  # seconds between progress line updates


# -------------------------------------------------------------------------------------------
# statistics
# -------------------------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile of ascending ``sorted_values``.

    rank = ceil(p/100 * n), clamped to 1..n; the value is ``sorted_values[rank - 1]``, so
    p=0 gives the first value and p=100 the last.

    :raises ValueError: ``sorted_values`` is empty or ``p`` is outside 0..100.
    """
    if not sorted_values:
        raise ValueError("cannot take a percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {p!r}")
    n = len(sorted_values)
    # round() drops float noise such as 0.07 * 100 == 7.000000000000001 before ceil().
    rank = math.ceil(round(p * n / 100, 9))
    return sorted_values[min(max(rank, 1), n) - 1]


@frozen(kw_only=True)
class Stats:
    """A summary of samples (µs): nearest-rank percentiles, mean, extremes."""

    count: int
    avg: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, samples: Iterable[float]) -> Stats:
        """Summarise ``samples``.

        :raises ValueError: there are none.
        """
        values = sorted(samples)
        if not values:
            raise ValueError("cannot summarise an empty list of samples")
        return cls(
            count=len(values),
            avg=sum(values) / len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            min=values[0],
            max=values[-1],
        )


# -------------------------------------------------------------------------------------------
# workloads
# -------------------------------------------------------------------------------------------


def peer_noop() -> None:
    """The noop workload for the peers."""


def peer_echo(strings: list[str]) -> list[str]:
    """The echo workload for the peers: sleep 50 µs, return the input."""
    time.sleep(ECHO_SLEEP_S)
    return strings


@frozen(kw_only=True)
class Workload:
    """One kind of call, as each contender makes it.

    :param name: Workload name; also the request the floor child understands.
    :param task: The task of ``integration_test_tasks`` spider-core runs.
    :param args: The task's arguments (for the peers and the floor too).
    :param peer_fn: The module-level function the peers run.
    :param nominal_us: The work the task does by design, subtracted from the executor time
        to give the executor internal time.
    """

    name: str
    task: str
    args: tuple[Any, ...]
    peer_fn: Callable[..., Any]
    nominal_us: float

    @property
    def expected(self) -> Any:
        """What the peers and the floor return."""
        return self.args[0] if self.args else None


WORKLOAD_SPECS = {
    "noop": Workload(name="noop", task="noop", args=(), peer_fn=peer_noop, nominal_us=0.0),
    "echo": Workload(
        name="echo", task="sleep_and_echo", args=(ECHO_STRINGS,), peer_fn=peer_echo, nominal_us=ECHO_SLEEP_S * 1e6
    ),
}


# -------------------------------------------------------------------------------------------
# the floor: a raw length-prefixed msgpack ping-pong
# -------------------------------------------------------------------------------------------


def _frame(message: Any) -> bytes:
    body = msgpack.packb(message)
    return _HEADER.pack(len(body)) + body


def _take_frame(buffer: bytearray) -> bytes | None:
    """Remove and return the first complete frame body in ``buffer``, if there is one."""
    if len(buffer) < _HEADER.size:
        return None
    end = _HEADER.size + _HEADER.unpack_from(buffer)[0]
    if len(buffer) < end:
        return None
    body = bytes(buffer[_HEADER.size : end])
    del buffer[:end]
    return body


def _read_frame(fd: int, buffer: bytearray) -> bytes | None:
    """The next frame body from blocking ``fd``, or None at end of input."""
    while (body := _take_frame(buffer)) is None:
        data = os.read(fd, _READ_SIZE)
        if not data:
            return None
        buffer += data
    return body


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def floor_child_main() -> None:
    """The floor's child: answer ``[workload, argument]`` frames on stdin/stdout until ``stop``.

    An explicit ``stop`` ends it: forked peer workers inherit the write end of its stdin, so
    end of input may never come.
    """
    buffer = bytearray()
    while (body := _read_frame(0, buffer)) is not None:
        workload, argument = msgpack.unpackb(body)
        if workload == "stop":
            return
        if workload == "echo":
            time.sleep(ECHO_SLEEP_S)
            reply = argument
        else:
            reply = None
        _write_all(1, _frame(reply))


def _spawn_floor_child() -> subprocess.Popen:
    code = "from spider_core.bench import floor_child_main; floor_child_main()"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def _floor_request(workload: Workload) -> bytes:
    return _frame([workload.name, workload.expected])


# -------------------------------------------------------------------------------------------
# contenders
# -------------------------------------------------------------------------------------------


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
    metrics = OUR_METRICS

    def __init__(self, package_dir: Path, name: str = OURS, **config: Any) -> None:
        self.name = name
        self.pool = ProcessPool(PoolConfig(package_dir=package_dir, log_dir=None, **config))
        self._requests = {
            w.name: ExecuteRequest(package=PACKAGE, task=w.task, inputs=w.args) for w in WORKLOAD_SPECS.values()
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


class _SyncPipeFloor:
    """The floor driven with blocking reads and writes."""

    name = "pipe-sync"
    metrics = ("e2e",)

    async def start(self) -> None:
        self.proc = _spawn_floor_child()
        self._out = self.proc.stdin.fileno()
        self._in = self.proc.stdout.fileno()
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
        self.proc.stdin.close()
        self.proc.wait()
        self.proc.stdout.close()


class _AsyncPipeFloor:
    """The floor driven from the event loop: one write, one reader callback, one future."""

    name = "pipe-asyncio"
    metrics = ("e2e",)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.proc = _spawn_floor_child()
        self._out = self.proc.stdin.fileno()
        self._in = self.proc.stdout.fileno()
        self._buffer = bytearray()
        self._waiter: asyncio.Future | None = None
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
            self._waiter.set_result(msgpack.unpackb(body))

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
        self.proc.stdin.close()
        self.proc.wait()
        self.proc.stdout.close()


# A blocking peer is opened into a pair: run(fn, args) -> result, and close().
_Opened = tuple[Callable[[Callable[..., Any], tuple[Any, ...]], Any], Callable[[], None]]


def _close_and_join(pool: Any) -> Callable[[], None]:
    def close() -> None:
        pool.close()
        pool.join()

    return close


def _open_futures() -> _Opened:
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=1)
    return (lambda fn, args: pool.submit(fn, *args).result()), pool.shutdown


def _open_multiprocessing() -> _Opened:
    import multiprocessing

    pool = multiprocessing.Pool(1)
    return pool.apply, _close_and_join(pool)


def _open_pebble() -> _Opened:
    import pebble

    pool = pebble.ProcessPool(max_workers=1)
    return (lambda fn, args: pool.schedule(fn, args=args).result()), _close_and_join(pool)


def _open_loky() -> _Opened:
    import loky

    executor = loky.get_reusable_executor(max_workers=1)
    return (lambda fn, args: executor.submit(fn, *args).result()), executor.shutdown


def _open_billiard() -> _Opened:
    import billiard

    pool = billiard.Pool(1)
    return pool.apply, _close_and_join(pool)


#: name -> (module that must be importable, opener)
_BLOCKING_PEERS: dict[str, tuple[str, Callable[[], _Opened]]] = {
    "futures": ("concurrent.futures", _open_futures),
    "multiprocessing": ("multiprocessing", _open_multiprocessing),
    "pebble": ("pebble", _open_pebble),
    "loky": ("loky", _open_loky),
    "billiard": ("billiard", _open_billiard),
}


class _BlockingPeer:
    """A process pool with a blocking API, called from the event loop (calls are sequential)."""

    metrics = ("e2e",)

    def __init__(self, name: str, opener: Callable[[], _Opened]) -> None:
        self.name = name
        self._opener = opener

    async def start(self) -> None:
        self._run, self._close = self._opener()
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
    module, opener = _BLOCKING_PEERS[name]
    if importlib.util.find_spec(module) is None:
        return f"{name}: skipped, not installed (pip install {module})"
    return _BlockingPeer(name, opener)


# -------------------------------------------------------------------------------------------
# results
# -------------------------------------------------------------------------------------------


@frozen(kw_only=True)
class ContenderResult:
    """One contender's samples for one workload: metric name -> samples (µs), in call order."""

    name: str
    samples: dict[str, tuple[float, ...]]

    def stats(self, metric: str = "e2e") -> Stats:
        return Stats.of(self.samples[metric])


@frozen(kw_only=True)
class WorkloadResult:
    workload: str
    #: spider-core first, then the peers in ``PEERS`` order.
    contenders: tuple[ContenderResult, ...]

    @property
    def ours(self) -> ContenderResult:
        return self.contenders[0]

    def ratio(self, peer: ContenderResult, field: str) -> float:
        """Ours / peer for an E2E statistic (``"p50"``, ...): below 1 means spider-core is faster."""
        return getattr(self.ours.stats(), field) / getattr(peer.stats(), field)


@frozen(kw_only=True)
class BenchReport:
    """Everything one run measured, and where it was written."""

    workloads: tuple[WorkloadResult, ...]
    #: ``ProcessPool.start()`` durations (µs): spawn until the executor's Ready.
    start_us: tuple[float, ...]
    #: VmRSS of the idle executor after the run, in KiB (None where /proc is missing).
    idle_rss_kib: int | None
    calls: int
    warmup: int
    notes: tuple[str, ...]
    environment: dict[str, Any]
    markdown_path: Path
    json_path: Path

    def workload(self, name: str) -> WorkloadResult:
        return next(w for w in self.workloads if w.workload == name)


# -------------------------------------------------------------------------------------------
# running
# -------------------------------------------------------------------------------------------


class _Progress:
    """A one-line ``\\r`` counter on stderr, redrawn at most every 0.2 s."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = 0.0

    def show(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self._last < _PROGRESS_INTERVAL:
            return
        self._last = now
        sys.stderr.write(f"\rspider bench: {phase} {done}/{total}\033[K")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


async def _measure_start(package_dir: Path, samples: int, progress: _Progress) -> list[float]:
    """Time ``ProcessPool.start()`` (spawn until Ready) of ``samples`` fresh pools."""
    durations = []
    for i in range(samples):
        pool = ProcessPool(PoolConfig(package_dir=package_dir, log_dir=None))
        start = time.perf_counter()
        await pool.start()
        durations.append((time.perf_counter() - start) * 1e6)
        await pool.close()
        progress.show("executor start", i + 1, samples)
    return durations


def _idle_rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


async def _run_workload(
    workload: Workload, contenders: Sequence[Contender], calls: int, warmup: int, progress: _Progress
) -> WorkloadResult:
    for contender in contenders:
        await contender.check(workload)
        for _ in range(warmup):
            await contender.call(workload)
    samples: list[list[tuple[float, ...]]] = [[] for _ in contenders]
    order = list(range(len(contenders)))
    for round_ in range(calls):
        shift = round_ % len(order)  # rotate who goes first, so no contender always follows another
        for index in order[shift:] + order[:shift]:
            samples[index].append(await contenders[index].call(workload))
        progress.show(workload.name, round_ + 1, calls)
    results = []
    for contender, rows in zip(contenders, samples, strict=True):
        columns = zip(*rows, strict=True)
        results.append(
            ContenderResult(name=contender.name, samples=dict(zip(contender.metrics, map(tuple, columns), strict=True)))
        )
    return WorkloadResult(workload=workload.name, contenders=tuple(results))


def _environment() -> dict[str, Any]:
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "affinity": affinity,
    }


async def run_benchmark(
    package_dir: str | os.PathLike,
    *,
    quick: bool,
    output_dir: str | os.PathLike,
    workloads: Sequence[str] = WORKLOADS,
    peers: Sequence[str] = PEERS,
    progress: bool = True,
    calls: int | None = None,
    warmup: int | None = None,
    start_samples: int | None = None,
) -> BenchReport:
    """Run the benchmark and write ``report.md`` and ``report.json`` to ``output_dir``.

    :param package_dir: Holds the built ``integration_test_tasks`` package.
    :param quick: Fewer calls (300 per contender and workload instead of 3000), warm-up
        calls (50 instead of 200) and executor starts (3 instead of 10).
    :param output_dir: Created if missing.
    :param workloads: Names from ``WORKLOADS``.
    :param peers: Names from ``PEERS``; spider-core itself is always measured.
    :param progress: Show a progress line on stderr.
    :param calls: Measured calls per contender and workload, overriding ``quick``.
    :param warmup: Unmeasured calls per contender before each workload, overriding ``quick``.
    :param start_samples: Executor starts to time, overriding ``quick``.
    :raises ValueError: an unknown workload or peer name, or a count below 1.
    """
    for name in workloads:
        if name not in WORKLOAD_SPECS:
            raise ValueError(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")
    for name in peers:
        if name not in PEERS:
            raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    if calls is None:
        calls = QUICK_CALLS if quick else DEFAULT_CALLS
    if warmup is None:
        warmup = QUICK_WARMUP if quick else DEFAULT_WARMUP
    if start_samples is None:
        start_samples = QUICK_START_SAMPLES if quick else DEFAULT_START_SAMPLES
    if calls < 1 or start_samples < 1 or warmup < 0:
        raise ValueError("calls and start_samples must be at least 1, warmup at least 0")
    package_dir = Path(package_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    bar = _Progress(progress)

    start_us = await _measure_start(package_dir, start_samples, bar)
    ours = _Ours(package_dir)
    contenders: list[Contender] = [ours]  # in report order
    notes = []
    for name in (name for name in PEERS if name in peers):
        peer = _make_peer(name, package_dir)
        if isinstance(peer, str):
            notes.append(peer)
        else:
            contenders.append(peer)
    # The blocking peers start first: they may fork, and their workers should not inherit
    # the pipes of our executor and of the floor children.
    start_order = sorted(contenders, key=lambda c: not isinstance(c, _BlockingPeer))
    started: list[Contender] = []
    try:
        for contender in start_order:
            await contender.start()
            started.append(contender)
        results = []
        for name in workloads:
            results.append(await _run_workload(WORKLOAD_SPECS[name], contenders, calls, warmup, bar))
        idle_rss = _idle_rss_kib(ours.pool.pid)
    finally:
        for contender in reversed(started):
            await contender.close()
        bar.done()

    report = BenchReport(
        workloads=tuple(results),
        start_us=tuple(start_us),
        idle_rss_kib=idle_rss,
        calls=calls,
        warmup=warmup,
        notes=tuple(notes),
        environment=_environment(),
        markdown_path=output_dir / "report.md",
        json_path=output_dir / "report.json",
    )
    report.markdown_path.write_text(render_markdown(report))
    report.json_path.write_text(json.dumps(report_to_json(report), indent=1) + "\n")
    return report


# -------------------------------------------------------------------------------------------
# output
# -------------------------------------------------------------------------------------------

_METRIC_LABELS = {
    "e2e": "E2E",
    "executor": "executor time",
    "executor_internal": "executor internal",
    "ipc_overhead": "IPC overhead",
}
_WORKLOAD_TITLES = {
    "noop": "noop: `noop()`, no inputs, no outputs",
    "echo": "echo: `sleep_and_echo(list[str])`, 100 path-like strings, a nominal 50 µs sleep",
}


def _us(value: float) -> str:
    return f"{value:.1f}"


def _row(cells: Iterable[Any]) -> str:
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def _workload_markdown(result: WorkloadResult) -> list[str]:
    lines = [
        f"## {_WORKLOAD_TITLES[result.workload]}",
        "",
        "Per-call round trip (E2E), µs. Ratios are **ours / peer**: below 1 means spider-core is faster.",
        "",
        _row(["contender", "count", "avg", "p50", "p95", "p99", "ours/peer p50", "ours/peer p95", "ours/peer p99"]),
        _row(["---"] + ["---:"] * 8),
    ]
    for contender in result.contenders:
        s = contender.stats()
        if contender is result.ours:
            ratios = ["", "", ""]
        else:
            ratios = [f"{result.ratio(contender, field):.2f}" for field in ("p50", "p95", "p99")]
        lines.append(_row([contender.name, s.count, _us(s.avg), _us(s.p50), _us(s.p95), _us(s.p99), *ratios]))
    lines += [
        "",
        f"spider-core breakdown, µs (nominal work {_us(WORKLOAD_SPECS[result.workload].nominal_us)} µs):",
        "",
        _row(["metric", "count", "avg", "p50", "p95", "p99", "min", "max"]),
        _row(["---"] + ["---:"] * 7),
    ]
    for metric in OUR_METRICS:
        s = result.ours.stats(metric)
        values = [_us(v) for v in (s.avg, s.p50, s.p95, s.p99, s.min, s.max)]
        lines.append(_row([_METRIC_LABELS[metric], s.count, *values]))
    return lines + [""]


def render_markdown(report: BenchReport) -> str:
    """The report as markdown."""
    env = report.environment
    lines = [
        "# spider-core benchmark",
        "",
        f"{env['date']}, Python {env['python']}, {env['platform']}, {env['cpus']} CPUs "
        f"(affinity {env['affinity']}).",
        f"{report.calls} measured calls per contender and workload after {report.warmup} warm-up calls, "
        "interleaved round-robin; one worker, sequential calls. Percentiles are nearest-rank.",
        "",
    ]
    for result in report.workloads:
        lines += _workload_markdown(result)
    start = Stats.of(report.start_us)
    start_ms = [f"{v / 1000:.1f}" for v in (start.p50, start.min, start.max)]
    rss = f"{report.idle_rss_kib / 1024:.1f} MiB" if report.idle_rss_kib is not None else "unknown"
    lines += [
        "## Executor",
        "",
        _row(["measure", "count", "p50", "min", "max"]),
        _row(["---", "---:", "---:", "---:", "---:"]),
        _row(["start (spawn until Ready), ms", start.count, *start_ms]),
        "",
        f"Idle RSS of the executor after the run (VmRSS): {rss}.",
        "",
        "## Definitions",
        "",
        "- **E2E**: `time.perf_counter()` around one call: `await pool.execute(...)` for spider-core, "
        "the blocking submit-and-wait for the peers, one frame out and one in for the floors.",
        "- **executor time**: `Success.elapsed_us`, the package call as timed inside the executor.",
        "- **executor internal**: executor time minus the nominal work (50 µs for echo, 0 for noop); "
        "for echo it includes the sleep's overshoot (timer slack).",
        "- **IPC overhead**: E2E minus executor time, per call.",
        "- **pipe-sync / pipe-asyncio**: the floor, a child answering 4-byte big-endian length-prefixed "
        "msgpack frames, driven with blocking reads, or with one `add_reader` callback and one future per call.",
        "- spider-core's E2E does not include decoding its outputs into Python values (`Success.values`); "
        "the peers' and the floors' E2E include unpickling or unpacking theirs.",
        "",
    ]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(lines)


def _stats_dict(stats: Stats) -> dict[str, float]:
    return {name: getattr(stats, name) for name in ("count", "avg", "p50", "p95", "p99", "min", "max")}


def report_to_json(report: BenchReport) -> dict[str, Any]:
    """The report as JSON-able data: statistics, ratios and every sample (µs)."""
    workloads = {}
    for result in report.workloads:
        contenders = {}
        for contender in result.contenders:
            entry: dict[str, Any] = {
                "stats": {metric: _stats_dict(contender.stats(metric)) for metric in contender.samples},
                "samples": {metric: [round(v, 3) for v in values] for metric, values in contender.samples.items()},
            }
            if contender is not result.ours:
                entry["ours_over_peer"] = {f: result.ratio(contender, f) for f in ("avg", "p50", "p95", "p99")}
            contenders[contender.name] = entry
        workloads[result.workload] = contenders
    return {
        "environment": report.environment,
        "calls": report.calls,
        "warmup": report.warmup,
        "workloads": workloads,
        "executor_start_us": {"stats": _stats_dict(Stats.of(report.start_us)), "samples": list(report.start_us)},
        "idle_rss_kib": report.idle_rss_kib,
        "notes": list(report.notes),
    }


# -------------------------------------------------------------------------------------------
# command line
# -------------------------------------------------------------------------------------------


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class BenchError(Exception):
    """The benchmark cannot run as asked; the message says why in one sentence."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--package-dir",
        type=Path,
        help="holds the built integration_test_tasks (default: build the bundled one into the cache)",
    )
    parser.add_argument(
        "--output", "--out", dest="out", type=Path, default=Path("bench-results"),
        help="report directory, created if missing (default: %(default)s)",
    )
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CALLS} calls per contender, not {DEFAULT_CALLS}")
    parser.add_argument("--calls", type=_positive_int, help="measured calls per contender and workload")
    parser.add_argument("--workloads", type=_names, default=WORKLOADS, help=f"comma-separated ({','.join(WORKLOADS)})")
    parser.add_argument("--peers", type=_names, default=PEERS, help=f"comma-separated ({','.join(PEERS)})")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress line (shown only on a terminal)"
    )


def build_parser(prog: str = "spider bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Compare spider-core's per-call latency with other Python process pools, "
        "interleaved in one run; writes report.md and report.json.",
    )
    add_arguments(parser)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark for parsed arguments; print the markdown report.

    :raises BenchError: it cannot run as asked.
    """
    package_dir = args.package_dir
    try:
        if package_dir is None:
            from spider_core.demo import cache_root, prepare_packages

            package_dir = prepare_packages(cache_root())
        elif not (Path(package_dir) / PACKAGE / f"lib{PACKAGE}.so").is_file():
            raise ValueError(
                f"{package_dir} has no {PACKAGE} package; build it with "
                f"`spider build-package task_packages/{PACKAGE} --out {package_dir}` or omit --package-dir"
            )
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--output {args.out} is a file, not a directory")
        report = asyncio.run(
            run_benchmark(
                package_dir,
                quick=args.quick,
                output_dir=args.out,
                workloads=args.workloads,
                peers=args.peers,
                progress=args.progress and sys.stderr.isatty(),
                calls=args.calls,
            )
        )
    except OSError as e:
        where = f"cannot use {e.filename}: " if e.filename else ""
        raise BenchError(f"{where}{e.strerror or e}") from None
    except (ValueError, RuntimeError) as e:
        raise BenchError(str(e)) from None
    print(report.markdown_path.read_text())
    print(f"written: {report.markdown_path}, {report.json_path}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "spider bench") -> int:
    """Run the benchmark from the command line."""
    try:
        return run_from_args(build_parser(prog).parse_args(argv))
    except BenchError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
