"""The results of a run and their rendering: :class:`ContenderResult`, :class:`WorkloadResult`
(the latency workloads), :class:`BatchResult`, :class:`ThroughputResult` (the throughput
workload) and :class:`BenchReport` hold what was measured (every sample, in call or round
order) and where it was written; :func:`render_markdown` turns a report into the markdown tables that are printed and
written to ``report.md``, :func:`report_to_json` into the data written to ``report.json``
(statistics, ratios and every sample).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from attrs import frozen

from spider_core.bench.contenders import OUR_METRICS
from spider_core.bench.stats import Stats
from spider_core.bench.workloads import WORKLOAD_SPECS


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
        ratio: float = getattr(self.ours.stats(), field) / getattr(peer.stats(), field)
        return ratio


@frozen(kw_only=True)
class BatchResult:
    """One contender's throughput batches: seconds per batch of ``batch`` tasks, in round order."""

    name: str
    #: Worker processes (executors, for spider-core).
    workers: int
    batch: int
    batch_s: tuple[float, ...]

    @property
    def rates(self) -> tuple[float, ...]:
        """Tasks per second of each batch."""
        return tuple(self.batch / s for s in self.batch_s)

    def stats(self) -> Stats:
        """The tasks per second over the rounds (p50 is the median: nearest rank)."""
        return Stats.of(self.rates)


@frozen(kw_only=True)
class ThroughputResult:
    """The throughput workload: batches of no-op tasks queued at once through ``slots`` workers."""

    slots: int
    #: Tasks per batch.
    batch: int
    #: Measured batches per contender (after one warm-up batch each).
    rounds: int
    #: spider-core first, then its variants, then the peers in ``PEERS`` order.
    contenders: tuple[BatchResult, ...]

    @property
    def ours(self) -> BatchResult:
        return self.contenders[0]

    def ratio(self, peer: BatchResult) -> float:
        """Ours / peer of the median tasks per second: above 1 means spider-core does more."""
        return self.ours.stats().p50 / peer.stats().p50


@frozen(kw_only=True)
class BenchReport:
    """Everything one run measured, and where it was written."""

    #: The latency workloads (noop, echo), in the order asked for.
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
    #: The throughput workload, if it was run.
    throughput: ThroughputResult | None = None

    def workload(self, name: str) -> WorkloadResult:
        return next(w for w in self.workloads if w.workload == name)


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


def _rate(value: float) -> str:
    return f"{value:.0f}"


def _throughput_markdown(result: ThroughputResult) -> list[str]:
    lines = [
        f"## throughput: batches of {result.batch} `noop()` tasks queued at once, {result.slots} workers",
        "",
        f"Tasks per second over a batch (first submission to last result), {result.rounds} rounds; each round "
        "runs one batch through every contender, in a shuffled order. Ratios are **ours / peer** of the median: "
        "**above** 1 means spider-core does more tasks per second.",
        "",
        _row(["contender", "workers", "rounds", "median tasks/s", "min", "max", "µs/task (median)", "ours/peer median"]),
        _row(["---"] + ["---:"] * 7),
    ]
    for contender in result.contenders:
        s = contender.stats()
        ratio = "" if contender is result.ours else f"{result.ratio(contender):.2f}"
        rates = [_rate(v) for v in (s.p50, s.min, s.max)]
        lines.append(_row([contender.name, contender.workers, s.count, *rates, _us(1e6 / s.p50), ratio]))
    return lines + [""]


def render_markdown(report: BenchReport) -> str:
    """The report as markdown."""
    env = report.environment
    lines = [
        "# spider-core benchmark",
        "",
        f"{env['date']}, Python {env['python']}, {env['platform']}, {env['cpus']} CPUs "
        f"(affinity {env['affinity']}).",
    ]
    if report.workloads:
        lines.append(
            f"Latency: {report.calls} measured calls per contender and workload after {report.warmup} warm-up "
            "calls, interleaved round-robin; one worker, sequential calls. Percentiles are nearest-rank."
        )
    if report.throughput is not None:
        t = report.throughput
        lines.append(
            f"Throughput: {t.rounds} rounds of one batch of {t.batch} no-op tasks per contender, after one "
            f"warm-up batch each; {t.slots} workers, every task of a batch queued at once."
        )
    lines.append("")
    for result in report.workloads:
        lines += _workload_markdown(result)
    if report.throughput is not None:
        lines += _throughput_markdown(report.throughput)
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
    ]
    if report.workloads:
        lines += [
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
        ]
    if report.throughput is not None:
        lines += [
            "- **tasks/s**: a batch's tasks over `time.perf_counter()` from before its first submission to after "
            "its last result (results are checked after the clock stops); median, min and max over the rounds. "
            "spider-core: `asyncio.gather` over one `await pool.execute(...)` per task, `PoolConfig(slots=N)`; "
            "spider-core-map: `async for` over `pool.map(...)` (it keeps 2N calls in flight); "
            "spider-core-slots1: the gather with `slots=1`, for reference. The peers: `submit` (futures, loky), "
            "`schedule` (pebble) or `apply_async` (multiprocessing, billiard) for every task, then every result, "
            "with N workers. The floors and spider-core-spin take no part.",
        ]
    lines.append("")
    if report.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(lines)


def _stats_dict(stats: Stats) -> dict[str, float]:
    return {name: getattr(stats, name) for name in ("count", "avg", "p50", "p95", "p99", "min", "max")}


def _throughput_json(result: ThroughputResult) -> dict[str, Any]:
    contenders = {}
    for contender in result.contenders:
        entry: dict[str, Any] = {
            "workers": contender.workers,
            "tasks_per_s": _stats_dict(contender.stats()),
            "samples": {
                "tasks_per_s": [round(v, 3) for v in contender.rates],
                "batch_s": [round(v, 6) for v in contender.batch_s],
            },
        }
        if contender is not result.ours:
            entry["ours_over_peer"] = {"p50": result.ratio(contender)}
        contenders[contender.name] = entry
    return {"slots": result.slots, "batch": result.batch, "rounds": result.rounds, "contenders": contenders}


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
        "throughput": None if report.throughput is None else _throughput_json(report.throughput),
        "executor_start_us": {"stats": _stats_dict(Stats.of(report.start_us)), "samples": list(report.start_us)},
        "idle_rss_kib": report.idle_rss_kib,
        "notes": list(report.notes),
    }
