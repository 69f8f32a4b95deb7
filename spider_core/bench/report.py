"""The results of a run as people and programs read them: :func:`render_markdown` turns a
:class:`~spider_core.bench.results.BenchReport` into the markdown tables that are printed and
written to ``report.md``, :func:`report_to_json` into the data written to ``report.json``
(statistics, ratios, targets and every sample).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from spider_core.bench.contenders import OUR_METRICS, OURS, OURS_SYNC, OURS_SYNC_CALL
from spider_core.bench.observe import observe_json, observe_markdown
from spider_core.bench.payload_report import payload_json, payload_markdown
from spider_core.bench.recovery import FAULTS, RECOVERY_TIMEOUT_S
from spider_core.bench.results import (
    BenchReport,
    RecoveryResult,
    StartMethodResult,
    ThroughputResult,
    WorkloadResult,
)
from spider_core.bench.stats import Stats
from spider_core.bench.targets import targets
from spider_core.bench.workloads import WORKLOAD_SPECS

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


_SYNC_LABELS = {
    OURS: "`await ProcessPool.execute(...)`",
    OURS_SYNC: "`SyncProcessPool.execute(...)`",
    OURS_SYNC_CALL: "`SyncProcessPool.call(...)`",
    "futures": "`ProcessPoolExecutor(1, fork).submit(...).result()`",
    "pipe-sync": "the floor: a blocking write and read",
    "pipe-asyncio": "the floor: a write and a reader callback on the loop",
}


def _sync_markdown(result: WorkloadResult) -> list[str]:
    by_name = {c.name: c for c in result.contenders}
    futures = by_name.get("futures")
    lines = [
        "## sync: `noop()` through SyncProcessPool, ProcessPool, ProcessPoolExecutor (fork) and the raw pipe",
        "",
        "Per-call round trip (E2E), µs, one worker each, interleaved round-robin. Ratios are **contender / "
        "reference** of the p50: below 1 means the contender is faster.",
        "",
        _row(["contender", "call", "count", "avg", "p50", "p90", "p99", "p50 / futures", "p50 / spider-core"]),
        _row(["---", "---"] + ["---:"] * 7),
    ]
    ours_p50 = result.ours.stats().p50
    for contender in result.contenders:
        s = contender.stats()
        vs_futures = f"{s.p50 / futures.stats().p50:.2f}" if futures is not None else ""
        vs_ours = f"{s.p50 / ours_p50:.2f}"
        label = _SYNC_LABELS.get(contender.name, "")
        values = [_us(v) for v in (s.avg, s.p50, s.p90, s.p99)]
        lines.append(_row([contender.name, label, s.count, *values, vs_futures, vs_ours]))
    return lines + [""]


def _recovery_markdown(result: RecoveryResult) -> list[str]:
    timeout_ms = f"{RECOVERY_TIMEOUT_S * 1000:.0f} ms"
    lines = [
        f"## recovery: a crash, or a {timeout_ms} hard timeout, then the next no-op",
        "",
        f"{result.rounds} rounds; each round runs a crash, then a timeout, through every contender, the starting "
        "contender rotating every round. Both columns are timed from submitting the faulting task: until the pool "
        "reported the fault, and until the no-op submitted right after it returned (**recovered**). ms.",
        "",
        _row(["contender", "fault", "rounds", "reported p50", "recovered p50", "recovered p90", "min", "max"]),
        _row(["---", "---"] + ["---:"] * 6),
    ]
    for contender in result.contenders:
        for fault in FAULTS:
            reported = Stats.of(contender.fault_us[fault])
            s = contender.stats(fault)
            values = [f"{v / 1000:.1f}" for v in (reported.p50, s.p50, s.p90, s.min, s.max)]
            lines.append(_row([contender.name, fault, s.count, *values]))
    if result.unable:
        lines += ["", "Not measured, because they cannot recover this way:", ""]
        lines += [f"- {name}: {why}." for name, why in result.unable.items()]
    return lines + [""]


def _mib(kib: int | None) -> str:
    return f"{kib / 1024:.1f}" if kib is not None else "unknown"


def _start_methods_markdown(results: tuple[StartMethodResult, ...]) -> list[str]:
    if not results:
        return []
    slots = results[0].slots
    lines = [
        "### Start methods",
        "",
        f"`ProcessPool.start()` (spawn until every executor is ready) with 1 and {slots} slots, p50 of "
        f"{len(results[0].start_one_us)} starts each, alternating; then the memory of the {slots}-slot pool's "
        "processes, idle (the executors, and the fork server with forkserver): RSS counts a page shared by "
        "several processes in each, PSS divides it among them.",
        "",
        _row(["start method", "start, 1 slot, ms", f"start, {slots} slots, ms", "ratio", "RSS, MiB", "PSS, MiB"]),
        _row(["---"] + ["---:"] * 5),
    ]
    for result in results:
        one, every = Stats.of(result.start_one_us).p50, Stats.of(result.start_all_us).p50
        lines.append(_row([result.name, f"{one / 1000:.1f}", f"{every / 1000:.1f}", f"{every / one:.2f}",
                           _mib(result.rss_kib), _mib(result.pss_kib)]))
    return lines + [""]


def _start_methods_json(result: StartMethodResult) -> dict[str, Any]:
    return {
        "slots": result.slots,
        "start_one_us": {"stats": _stats_dict(Stats.of(result.start_one_us)), "samples": list(result.start_one_us)},
        "start_all_us": {"stats": _stats_dict(Stats.of(result.start_all_us)), "samples": list(result.start_all_us)},
        "rss_kib": result.rss_kib,
        "pss_kib": result.pss_kib,
    }


def render_markdown(report: BenchReport, *, show_targets: bool = False) -> str:
    """The report as markdown; with ``show_targets``, a section checking the project's own
    performance targets (:func:`targets`: a development aid, so not shown by default)."""
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
    checked = targets(report) if show_targets else []
    if checked:
        lines += ["## Targets", ""] + [f"- {target.line()}" for target in checked] + [""]
    if report.plot is not None:
        lines += [f"Latency distributions (CDF, log scale): [{report.plot.name}]({report.plot.name})", ""]
    elif report.plot_note is not None:
        lines += [report.plot_note, ""]
    for result in report.workloads:
        lines += _workload_markdown(result)
    if report.throughput is not None:
        lines += _throughput_markdown(report.throughput)
    if report.sync is not None:
        lines += _sync_markdown(report.sync)
    if report.recovery is not None:
        lines += _recovery_markdown(report.recovery)
    if report.payload is not None:
        lines += payload_markdown(report.payload, report.payload_plot)
    if report.observe is not None:
        lines += observe_markdown(report.observe)
    start = Stats.of(report.start_us)
    start_ms = [f"{v / 1000:.1f}" for v in (start.p50, start.min, start.max)]
    rss = f"{report.idle_rss_kib / 1024:.1f} MiB" if report.idle_rss_kib is not None else "unknown"
    lines += [
        "## Executor",
        "",
        _row(["measure", "count", "p50", "min", "max"]),
        _row(["---", "---:", "---:", "---:", "---:"]),
        _row(["start (`ProcessPool.start()`: spawn until Ready), ms", start.count, *start_ms]),
    ]
    if report.start_floor_us:
        floor = Stats.of(report.start_floor_us)
        floor_ms = [f"{v / 1000:.1f}" for v in (floor.p50, floor.min, floor.max)]
        lines.append(_row(['floor: `python -c "import msgpack"` (spawn until exit), ms', floor.count, *floor_ms]))
    lines += [
        "",
        f"Idle RSS of the executor after the run (VmRSS): {rss}.",
        "",
        *_start_methods_markdown(report.start_methods),
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
            "- **spider-core-b2b / spider-core-spin-b2b**: the mean of 8 calls made back to back within the round "
            "(after one uncounted call), without and with `spin_us=300`: what the spin does for back-to-back calls, "
            "which the round-robin interleaving of the other rows keeps it from seeing.",
            "- spider-core's E2E does not include decoding its outputs into Python values (`Success.values`); "
            "the peers' and the floors' E2E include unpickling or unpacking theirs.",
        ]
    if report.throughput is not None:
        lines += [
            "- **tasks/s**: a batch's tasks over `time.perf_counter()` from before its first submission to after "
            "its last result (results are checked after the clock stops); median, min and max over the rounds. "
            "spider-core: `asyncio.gather` over one `await pool.execute(...)` per task, `PoolConfig(slots=N)`; "
            "spider-core-map: `async for` over `pool.map(...)` (each executor gets up to 16 requests per write); "
            "spider-core-sync-map: `SyncProcessPool.map(...)` iterated in a thread; "
            "spider-core-submit: `SyncProcessPool.submit(...)` from 8 threads at once, each its share, then every result; "
            "spider-core-slots1: the gather with `slots=1`, for reference. The peers: `submit` (futures, loky), "
            "`schedule` (pebble) or `apply_async` (multiprocessing, billiard) for every task, then every result, "
            "with N workers. The floors, spider-core-spin and the back-to-back rows take no part.",
        ]
    if report.sync is not None:
        lines += [
            "- **sync**: the no-op through `ProcessPool` (spider-core, on the benchmark's event loop), "
            "`SyncProcessPool` (its own event loop in a thread; called from the benchmark's thread, as a "
            "caller without an event loop would) with `execute` and with `call`, and "
            "`ProcessPoolExecutor(max_workers=1)` with the fork start method, and the two floors (the raw "
            "pipe, blocking and on the loop): one call each per round, so each call is a cold one.",
        ]
    if report.recovery is not None:
        lines += [
            "- **recovery**: the crash is a task killing its own worker with SIGSEGV (the C package's `segfault`; "
            "`os.kill(os.getpid(), SIGSEGV)` for the peers); the timeout a task sleeping 10 s under a "
            f"{RECOVERY_TIMEOUT_S * 1000:.0f} ms hard timeout (`execute(..., hard_timeout=0.2)`, pebble's "
            "`schedule(timeout=0.2)`, billiard's `apply_async(timeout=0.2)` in a pool with `enable_timeouts`). "
            "**reported**: submit until the pool reported the fault; **recovered**: submit until the no-op "
            "submitted after that returned. spider-core-forkserver is `PoolConfig(start_method=\"forkserver\")`, "
            "without a standby; spider-core-standby is `PoolConfig(standby=True)`; after each of "
            "its rounds the benchmark waits, untimed, until its new standby executor is ready (before the next "
            "contender's round, which that spawn would slow down). No warm-up rounds.",
        ]
    lines.append("")
    if report.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(lines)


def _stats_dict(stats: Stats) -> dict[str, float]:
    return {name: getattr(stats, name) for name in ("count", "avg", "p50", "p90", "p95", "p99", "min", "max")}


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


def _recovery_json(result: RecoveryResult) -> dict[str, Any]:
    contenders = {}
    for contender in result.contenders:
        contenders[contender.name] = {
            fault: {
                "reported": _stats_dict(Stats.of(contender.fault_us[fault])),
                "recovered": _stats_dict(contender.stats(fault)),
                "samples": {
                    "reported": [round(v, 3) for v in contender.fault_us[fault]],
                    "recovered": [round(v, 3) for v in contender.recovered_us[fault]],
                },
            }
            for fault in FAULTS
        }
    return {"rounds": result.rounds, "contenders": contenders, "unable": dict(result.unable)}


def report_to_json(report: BenchReport) -> dict[str, Any]:
    """The report as JSON-able data: statistics, ratios, targets and every sample (µs)."""
    workloads = {}
    for result in (*report.workloads, *([report.sync] if report.sync is not None else [])):
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
        "recovery": None if report.recovery is None else _recovery_json(report.recovery),
        "payload": None if report.payload is None else payload_json(report.payload),
        "observe": None if report.observe is None else observe_json(report.observe),
        "executor_start_us": {"stats": _stats_dict(Stats.of(report.start_us)), "samples": list(report.start_us)},
        "start_floor_us": (
            {"stats": _stats_dict(Stats.of(report.start_floor_us)), "samples": list(report.start_floor_us)}
            if report.start_floor_us
            else None
        ),
        "targets": [{"target": t.target, "measured": t.measured, "met": t.met} for t in targets(report)],
        "plot": None if report.plot is None else report.plot.name,
        "idle_rss_kib": report.idle_rss_kib,
        "start_methods": {result.name: _start_methods_json(result) for result in report.start_methods},
        "notes": list(report.notes),
    }
