"""Running the benchmark: :func:`run_benchmark` times executor starts (interleaved with the
floor, a fresh ``python -c "import msgpack"``), starts the latency contenders, runs each latency
workload through all of them interleaved round-robin (after one checked call and the warm-up
calls each) and closes them; then, for the throughput workload, starts the throughput
contenders and runs rounds of one batch each (after one warm-up batch each, in a shuffled order
every round); then the sync workload (a latency workload with contenders of its own) and the
recovery workload (rounds of one crash and one timeout through every contender, the starting
contender rotating); then writes ``report.md``, ``report.json`` and the latency plot. The
default and ``--quick`` counts live here, and ``Progress``, the progress line on stderr.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from spider_core.bench.backtoback import make_contender
from spider_core.bench.contenders import (
    BLOCKING_PEERS,
    OURS_SYNC,
    OURS_SYNC_CALL,
    PEERS,
    Contender,
    _AsyncPipeFloor,
    _BlockingPeer,
    _Ours,
    _OursSync,
    _SyncPipeFloor,
)
from spider_core.bench.environment import _environment, _idle_rss_kib
from spider_core.bench.observe import run_observe
from spider_core.bench.payload import (
    DEFAULT_PAYLOAD_ROUNDS,
    QUICK_PAYLOAD_ROUNDS,
    QUICK_SIZES,
    SIZES,
    check_sizes,
    run_payload,
)
from spider_core.bench.payload import PLOT_NAME as PAYLOAD_PLOT_NAME
from spider_core.bench.payload_report import write_payload_plot
from spider_core.bench.plot import PLOT_NAME, write_plot
from spider_core.bench.progress import Progress
from spider_core.bench.recovery import (
    FAULTS,
    NOT_KILLABLE,
    RecoveryContender,
    _PeerRecovery,
    quiet_pool_warnings,
    recovery_contenders,
)
from spider_core.bench.report import render_markdown, report_to_json
from spider_core.bench.results import (
    BatchResult,
    BenchReport,
    ContenderResult,
    RecoveryResult,
    RecoverySamples,
    ThroughputResult,
    WorkloadResult,
)
from spider_core.bench.starts import measure_start, measure_start_methods
from spider_core.bench.throughput import BatchContender, _BlockingBatch, _OursBatch, _throughput_contenders
from spider_core.bench.workloads import (
    DEFAULT_WORKLOADS,
    OBSERVE,
    PAYLOAD,
    RECOVERY,
    SYNC,
    SYNC_WORKLOAD,
    THROUGHPUT,
    WORKLOAD_SPECS,
    WORKLOADS,
    Workload,
)

QUICK_CALLS, DEFAULT_CALLS = 300, 3000
QUICK_WARMUP, DEFAULT_WARMUP = 50, 200
QUICK_START_SAMPLES, DEFAULT_START_SAMPLES = 3, 10
#: The throughput workload: tasks per batch, measured batches per contender, workers.
QUICK_BATCH, DEFAULT_BATCH = 500, 2000
QUICK_ROUNDS, DEFAULT_ROUNDS = 5, 15
DEFAULT_SLOTS = 2
#: The recovery workload: rounds of one crash and one timeout per contender. billiard alone
#: takes about 12 s a round (it notices a crashed worker after 10 s).
QUICK_RECOVERY_ROUNDS, DEFAULT_RECOVERY_ROUNDS = 3, 10


async def _run_workload(
    workload: Workload, contenders: Sequence[Contender], calls: int, warmup: int, progress: Progress
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


async def _start_all(contenders: Sequence[Any]) -> list[Any]:
    """Start ``contenders``, blocking peers first; return those started, in start order.

    The blocking peers start first: they may fork, and their workers should not inherit the
    pipes of our executors and of the floor children. If one fails to start, those already
    started are closed.
    """
    started: list[Any] = []
    try:
        blocking = _BlockingPeer | _BlockingBatch | _PeerRecovery
        for contender in sorted(contenders, key=lambda c: not isinstance(c, blocking)):
            await contender.start()
            started.append(contender)
    except BaseException:
        await _close_all(started)
        raise
    return started


async def _close_all(started: Sequence[Any]) -> None:
    for contender in reversed(started):
        await contender.close()


async def _run_latency(
    package_dir: Path,
    workloads: Sequence[str],
    peers: Sequence[str],
    calls: int,
    warmup: int,
    progress: Progress,
    notes: list[str],
    start_method: str = "exec",
) -> tuple[list[WorkloadResult], int | None]:
    """Run the latency workloads; return their results and the idle executor's RSS after them."""
    ours = _Ours(package_dir, start_method=start_method)
    contenders: list[Contender] = [ours]  # in report order
    for name in (name for name in PEERS if name in peers):
        peer = make_contender(name, package_dir)
        if isinstance(peer, str):
            notes.append(peer)
        else:
            contenders.append(peer)
    started = await _start_all(contenders)
    try:
        results = []
        for name in workloads:
            results.append(await _run_workload(WORKLOAD_SPECS[name], contenders, calls, warmup, progress))
        return results, _idle_rss_kib(ours.pool.pid)
    finally:
        await _close_all(started)


async def _run_throughput(
    package_dir: Path,
    peers: Sequence[str],
    slots: int,
    batch: int,
    rounds: int,
    progress: Progress,
    notes: list[str],
    start_method: str = "exec",
) -> tuple[ThroughputResult, int | None]:
    """Run the throughput workload; return its result and the RSS of an idle executor after it."""
    contenders: list[BatchContender]
    contenders, skipped = _throughput_contenders(package_dir, slots, peers, start_method)
    ours = contenders[0]
    assert isinstance(ours, _OursBatch)
    notes.extend(note for note in skipped if note not in notes)
    started = await _start_all(contenders)
    try:
        for contender in contenders:
            await contender.batch(batch)  # warm-up: checked, not measured
        times: list[list[float]] = [[] for _ in contenders]
        order = list(range(len(contenders)))
        shuffle = random.Random(0).shuffle  # the same orders every run
        for round_ in range(rounds):
            shuffle(order)  # no contender always goes first, or always follows another
            for index in order:
                times[index].append(await contenders[index].batch(batch))
            progress.show(THROUGHPUT, round_ + 1, rounds)
        idle_rss = _idle_rss_kib(ours.pool.pid)
    finally:
        await _close_all(started)
    result = ThroughputResult(
        slots=slots,
        batch=batch,
        rounds=rounds,
        contenders=tuple(
            BatchResult(name=c.name, workers=c.workers, batch=batch, batch_s=tuple(t))
            for c, t in zip(contenders, times, strict=True)
        ),
    )
    return result, idle_rss


async def _run_sync(
    package_dir: Path, calls: int, warmup: int, progress: Progress, start_method: str = "exec"
) -> tuple[WorkloadResult, int | None]:
    """Run the sync workload: the no-op through ProcessPool, SyncProcessPool (``execute`` and
    ``call``), ProcessPoolExecutor (fork) and the two raw pipe floors, interleaved round-robin
    (one call each per round: a cold call); return its result and the RSS of the ProcessPool's
    idle executor after it."""
    ours = _Ours(package_dir, start_method=start_method)
    contenders: list[Contender] = [
        ours,
        _OursSync(package_dir, OURS_SYNC),
        _OursSync(package_dir, OURS_SYNC_CALL),
        _BlockingPeer("futures", BLOCKING_PEERS["futures"][1]),
        _SyncPipeFloor(),
        _AsyncPipeFloor(),
    ]
    started = await _start_all(contenders)
    try:
        result = await _run_workload(SYNC_WORKLOAD, contenders, calls, warmup, progress)
        return result, _idle_rss_kib(ours.pool.pid)
    finally:
        await _close_all(started)


async def _run_recovery(
    package_dir: Path, peers: Sequence[str], rounds: int, progress: Progress, notes: list[str]
) -> RecoveryResult:
    """Run the recovery workload: each round, a crash through every contender, then a timeout,
    the starting contender rotating every round; after each fault the contender settles
    (untimed) before the next one's round."""
    contenders: list[RecoveryContender]
    contenders, skipped = recovery_contenders(package_dir, peers)
    notes.extend(skipped)
    fault_us: list[dict[str, list[float]]] = [{kind: [] for kind in FAULTS} for _ in contenders]
    recovered_us: list[dict[str, list[float]]] = [{kind: [] for kind in FAULTS} for _ in contenders]
    order = list(range(len(contenders)))
    with quiet_pool_warnings():
        started = await _start_all(contenders)
        try:
            for contender in contenders:
                await contender.settle()
            for round_ in range(rounds):
                shift = round_ % len(order)
                for kind in FAULTS:
                    for index in order[shift:] + order[:shift]:
                        reported, recovered = await contenders[index].fault(kind)
                        # Untimed: the standby this fault used up is replaced before the next
                        # contender's round, so that spawn does not compete with its measure.
                        await contenders[index].settle()
                        fault_us[index][kind].append(reported)
                        recovered_us[index][kind].append(recovered)
                progress.show(RECOVERY, round_ + 1, rounds)
        finally:
            await _close_all(started)
    return RecoveryResult(
        rounds=rounds,
        contenders=tuple(
            RecoverySamples(
                name=contender.name,
                fault_us={kind: tuple(v) for kind, v in reported_.items()},
                recovered_us={kind: tuple(v) for kind, v in recovered_.items()},
            )
            for contender, reported_, recovered_ in zip(contenders, fault_us, recovered_us, strict=True)
        ),
        unable=dict(NOT_KILLABLE),
    )


async def run_benchmark(
    package_dir: str | os.PathLike[str],
    *,
    quick: bool,
    output_dir: str | os.PathLike[str],
    workloads: Sequence[str] = DEFAULT_WORKLOADS,
    peers: Sequence[str] = PEERS,
    progress: bool = True,
    calls: int | None = None,
    warmup: int | None = None,
    start_samples: int | None = None,
    slots: int = DEFAULT_SLOTS,
    batch: int | None = None,
    rounds: int | None = None,
    recovery_rounds: int | None = None,
    start_method: str = "exec",
    payload_sizes: Sequence[int] | None = None,
    show_targets: bool = False,
) -> BenchReport:
    """Run the benchmark and write ``report.md``, ``report.json`` and the latency plot
    (``latency.png``, with matplotlib) to ``output_dir``.

    :param package_dir: Holds the built ``integration_test_tasks`` package.
    :param quick: Fewer calls (300 per contender and workload instead of 3000), warm-up
        calls (50 instead of 200), executor starts (3 instead of 10), for throughput
        fewer and smaller batches (5 rounds of 500 tasks instead of 15 of 2000), and for
        recovery 3 rounds instead of 10.
    :param output_dir: Created if missing.
    :param workloads: Names from ``WORKLOADS``: the latency workloads run in this order, then
        throughput, sync, recovery, payload (:mod:`~spider_core.bench.payload`: 1 KiB to
        256 MiB, to 64 MiB with ``quick``, 5 rounds, 3 with ``quick``) and observe
        (:mod:`~spider_core.bench.observe`: ``calls`` rounds). Default: all but recovery,
        payload and observe.
    :param peers: Names from ``PEERS``; spider-core itself is always measured (for
        throughput also through ``map`` and with one slot). The throughput workload takes
        the blocking peers among them, the recovery workload pebble and billiard; the sync
        workload always compares with ProcessPoolExecutor (fork).
    :param progress: Show a progress line on stderr.
    :param calls: Measured calls per contender and workload, overriding ``quick``.
    :param warmup: Unmeasured calls per contender before each workload, overriding ``quick``.
    :param start_samples: Executor starts to time, overriding ``quick``.
    :param slots: Throughput: workers of every contender (``PoolConfig.slots`` for spider-core).
    :param batch: Throughput: tasks per batch, overriding ``quick``.
    :param rounds: Throughput: measured batches per contender, overriding ``quick``.
    :param recovery_rounds: Recovery: rounds of one crash and one timeout per contender,
        overriding ``quick``.
    :param start_method: ``PoolConfig.start_method`` of spider-core's latency, throughput and
        sync contenders (the start and recovery measures always show both).
    :param payload_sizes: Payload: the sizes to echo, in bytes (each at least
        ``MIN_SIZE``), overriding ``quick``.
    :param show_targets: ``report.md`` checks the project's own performance targets too
        (``report.json`` always does).
    :raises ValueError: an unknown workload or peer name, or a count below 1.
    """
    for name in workloads:
        if name not in WORKLOADS:
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
    if batch is None:
        batch = QUICK_BATCH if quick else DEFAULT_BATCH
    if rounds is None:
        rounds = QUICK_ROUNDS if quick else DEFAULT_ROUNDS
    if recovery_rounds is None:
        recovery_rounds = QUICK_RECOVERY_ROUNDS if quick else DEFAULT_RECOVERY_ROUNDS
    if calls < 1 or start_samples < 1 or warmup < 0:
        raise ValueError("calls and start_samples must be at least 1, warmup at least 0")
    if slots < 1 or batch < 1 or rounds < 1:
        raise ValueError("slots, batch and rounds must be at least 1")
    if recovery_rounds < 1:
        raise ValueError("recovery_rounds must be at least 1")
    if payload_sizes is None:
        payload_sizes = QUICK_SIZES if quick else SIZES
    check_sizes(payload_sizes)
    package_dir = Path(package_dir)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    bar = Progress(progress)

    latency = [name for name in workloads if name in WORKLOAD_SPECS]
    notes: list[str] = []
    if start_method != "exec":
        notes.append(f"spider-core's latency, throughput and sync contenders: start_method={start_method!r}")
    results: list[WorkloadResult] = []
    throughput = None
    sync = None
    recovery = None
    payload = None
    observe = None
    idle_rss = None
    try:
        start_us, floor_us = await measure_start(package_dir, start_samples, bar)
        start_methods = await measure_start_methods(package_dir, start_samples, bar)
        if latency:
            results, idle_rss = await _run_latency(
                package_dir, latency, peers, calls, warmup, bar, notes, start_method
            )
        if THROUGHPUT in workloads:
            throughput, rss = await _run_throughput(
                package_dir, peers, slots, batch, rounds, bar, notes, start_method
            )
            if idle_rss is None:
                idle_rss = rss
        if SYNC in workloads:
            sync, rss = await _run_sync(package_dir, calls, warmup, bar, start_method)
            if idle_rss is None:
                idle_rss = rss
        if RECOVERY in workloads:
            recovery = await _run_recovery(package_dir, peers, recovery_rounds, bar, notes)
        if PAYLOAD in workloads:
            rounds_ = QUICK_PAYLOAD_ROUNDS if quick else DEFAULT_PAYLOAD_ROUNDS
            payload = run_payload(package_dir, peers, payload_sizes, rounds_, notes, bar.show)
        if OBSERVE in workloads:
            observe = await run_observe(package_dir, calls, warmup, bar.show)
    finally:
        bar.done()

    report = BenchReport(
        workloads=tuple(results),
        start_us=tuple(start_us),
        start_floor_us=tuple(floor_us),
        idle_rss_kib=idle_rss,
        calls=calls,
        warmup=warmup,
        notes=tuple(notes),
        environment=_environment(),
        markdown_path=output_dir / "report.md",
        json_path=output_dir / "report.json",
        throughput=throughput,
        sync=sync,
        recovery=recovery,
        start_methods=tuple(start_methods),
        payload=payload,
        observe=observe,
    )
    plot, plot_note = write_plot(report, output_dir / PLOT_NAME)
    payload_plot = None if payload is None else write_payload_plot(payload, output_dir / PAYLOAD_PLOT_NAME)
    report = attrs.evolve(report, plot=plot, plot_note=plot_note, payload_plot=payload_plot)
    report.markdown_path.write_text(render_markdown(report, show_targets=show_targets))
    report.json_path.write_text(json.dumps(report_to_json(report), indent=1) + "\n")
    return report
