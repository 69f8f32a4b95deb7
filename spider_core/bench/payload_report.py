"""The payload workload's report: its markdown section, its targets (issue 26), its JSON and
its plot (:mod:`spider_core.bench.payload` runs it)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spider_core.bench.payload import KIB, MIB, OURS, OURS_SHM, PIPE, PayloadResult


def _size_label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def _median_kib(values: Sequence[int]) -> str:
    return f"{statistics.median(values) / 1024:,.0f}" if values else "n/a"


def payload_markdown(result: PayloadResult, plot: Path | None) -> list[str]:
    """The report's section for the payload workload."""
    lines = [
        "## payload: one bytes object echoed, 1 worker",
        "",
        f"Medians of {result.rounds} echoes per size and contender, interleaved. *overhead*: spider-core's round "
        "trip minus the executor's own time (the task copying its input); the ratios compare it and the whole round "
        "trip with the whole raw pipe echo and with ProcessPoolExecutor's. RSS: the parent's peak above its RSS "
        "before the call, the worker's peak, in MiB.",
        "",
        "| payload | contender | round trip ms | ms per MiB | overhead ms | / pipe | overhead / pipe | / futures "
        "| parent peak MiB | worker peak MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in result.sizes:
        pipe, futures = result.get(PIPE, size), result.get("futures", size)
        pipe_ms = pipe.median_ms() if pipe else None
        futures_ms = futures.median_ms() if futures else None
        for name in result.names:
            s = result.get(name, size)
            if s is None:
                continue
            ms, overhead = s.median_ms(), s.overhead_ms()
            lines.append(
                f"| {_size_label(size)} | {name} | {ms:,.2f} | {ms / (size / MIB):,.2f} | "
                f"{'n/a' if overhead is None else f'{overhead:,.2f}'} | {_ratio(ms, pipe_ms)} | "
                f"{_ratio(overhead, pipe_ms)} | {_ratio(ms, futures_ms)} | {_median_kib(s.parent_peak_kib)} | "
                f"{_median_kib(s.worker_peak_kib)} |"
            )
    lines.append("")
    targets = payload_targets(result)
    if targets:
        lines += ["Targets (issue 26):", ""]
        lines += [f"- {target}: {measured}: {'met' if met else 'unmet'}" for target, measured, met in targets]
        lines.append("")
    if plot is not None:
        lines += [f"![round trip against payload size]({plot.name})", ""]
    return lines


def payload_targets(result: PayloadResult) -> list[tuple[str, str, bool]]:
    """``(target, measured, met)`` for each target whose sizes and contenders were run."""
    found = []
    for name, size, most in ((OURS, 64 * MIB, 2.0), (OURS, 8 * MIB, 1.5), (OURS_SHM, 64 * MIB, 1.0)):
        ours, pipe = result.get(name, size), result.get(PIPE, size)
        overhead = ours.overhead_ms() if ours else None
        if overhead is not None and pipe is not None:
            ratio = overhead / pipe.median_ms()
            found.append(
                (f"{name} {_size_label(size)} overhead <= {most}x the pipe's round trip", f"{ratio:.2f}x", ratio <= most)
            )
    ours, futures = result.get(OURS, 64 * MIB), result.get("futures", 64 * MIB)
    if ours and futures:
        ratio = ours.median_ms() / futures.median_ms()
        found.append(("64 MiB round trip <= 1.0x ProcessPoolExecutor's", f"{ratio:.2f}x", ratio <= 1.0))
    per_mib = [s.median_ms() / (s.size / MIB) for s in result.samples if s.name == OURS and s.size >= 8 * MIB]
    if len(per_mib) > 1:
        spread = max(per_mib) / min(per_mib)
        found.append(("ms per MiB from 8 MiB up within 1.3x of constant", f"{spread:.2f}x", spread <= 1.3))
    if ours and ours.parent_peak_kib:
        peak = statistics.median(ours.parent_peak_kib) * KIB / (64 * MIB)
        found.append(("parent's peak RSS during a 64 MiB echo <= 3x the payload", f"{peak:.2f}x", peak <= 3.0))
    return found


def payload_json(result: PayloadResult) -> dict[str, Any]:
    return {
        "sizes": list(result.sizes),
        "rounds": result.rounds,
        "samples": [
            {
                "name": s.name,
                "size": s.size,
                "e2e_us": list(s.e2e_us),
                "executor_us": list(s.executor_us),
                "parent_peak_kib": list(s.parent_peak_kib),
                "worker_peak_kib": list(s.worker_peak_kib),
            }
            for s in result.samples
        ],
    }


def write_payload_plot(result: PayloadResult, path: Path) -> Path | None:
    """``payload.png``: the median round trip of each contender against the size, log-log; None
    without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name in result.names:
        points = [(s.size, s.median_ms()) for s in result.samples if s.name == name]
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("payload (bytes)")
    axes.set_ylabel("median round trip (ms)")
    axes.set_title(f"echo of one bytes object, 1 worker, median of {result.rounds}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=110)
    return path
