"""The latency plot: :func:`write_plot` draws, for every workload of a run that times single
calls (noop, echo, sync, recovery, and the executor start beside its floor), the distribution
of each contender's samples as an empirical CDF on a logarithmic time axis, one panel per
workload, and for the throughput workload each contender's tasks per second (the median, and
the slowest and fastest round); it writes them as a PNG next to ``report.md``.

matplotlib comes with the ``bench`` extra and is imported only here, lazily, with the Agg
canvas (no display, no pyplot state); without it the report says how to get the plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from spider_core.bench.recovery import FAULTS, RECOVERY_TIMEOUT_S
from spider_core.bench.results import BenchReport, ThroughputResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PLOT_NAME = "latency.png"
#: What the report says when matplotlib is missing.
NO_MATPLOTLIB = (
    "No latency plot: matplotlib is not installed. `pip install 'spider-core-pool[bench]'` installs it "
    f"(with the peers), and the next run writes {PLOT_NAME} next to this report."
)

#: One panel: its title, its time unit's label and divisor, and (label, samples in µs) per curve.
_Panel = tuple[str, str, float, list[tuple[str, Sequence[float]]]]


def _panels(report: BenchReport) -> list[_Panel]:
    panels: list[_Panel] = []
    for result in (*report.workloads, *([report.sync] if report.sync is not None else [])):
        curves: list[tuple[str, Sequence[float]]] = [(c.name, c.samples["e2e"]) for c in result.contenders]
        panels.append((f"{result.workload}: per-call round trip", "µs", 1.0, curves))
    if report.recovery is not None:
        for fault in FAULTS:
            what = "crash" if fault == "crash" else f"{RECOVERY_TIMEOUT_S * 1000:.0f} ms timeout"
            curves = [(c.name, c.recovered_us[fault]) for c in report.recovery.contenders]
            panels.append((f"recovery: {what} → next success", "ms", 1000.0, curves))
    if report.start_us and (report.recovery is not None or report.sync is not None or report.workloads):
        curves = [("ProcessPool.start()", report.start_us)]
        if report.start_floor_us:
            curves.append(('python -c "import msgpack"', report.start_floor_us))
        panels.append(("executor start", "ms", 1000.0, curves))
    return panels


def _draw_cdf(axes: Axes, title: str, unit: str, divisor: float, curves: list[tuple[str, Sequence[float]]]) -> None:
    for label, samples in curves:
        values = sorted(v / divisor for v in samples)
        n = len(values)
        fractions = [0.0] + [(i + 1) / n for i in range(n)]
        axes.step([values[0], *values], fractions, where="post", label=f"{label} (n={n})")
    axes.set_xscale("log")
    _plain_log_ticks(axes, min(min(samples) for _, samples in curves) / divisor,
                     max(max(samples) for _, samples in curves) / divisor)
    axes.set_ylim(0, 1.02)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(f"{unit}, log scale (right is slower)")
    axes.set_ylabel("fraction of calls ≤ x")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")


def _plain_log_ticks(axes: Axes, low: float, high: float) -> None:
    """Label a log axis with plain numbers (``200``, ``500``, ``1000``) at 1, 2 and 5 times a
    power of ten (only at powers of ten over more than three decades), and its minor ticks
    not at all: matplotlib's default labels minor ticks too on a short range, and they overlap."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = math.log10(high / low) if low > 0 else math.inf
    axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if decades > 3 else (1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.xaxis.set_minor_formatter(NullFormatter())


def _draw_throughput(axes: Axes, result: ThroughputResult) -> None:
    """One bar per contender: its median tasks per second, whiskers to its slowest and fastest
    round; spider-core on top."""
    names = [c.name for c in result.contenders]
    stats = [c.stats() for c in result.contenders]
    medians = [s.p50 for s in stats]
    whiskers = [[m - s.min for m, s in zip(medians, stats, strict=True)],
                [s.max - m for m, s in zip(medians, stats, strict=True)]]
    positions = range(len(names))
    axes.barh(positions, medians, xerr=whiskers, capsize=3, color=[f"C{i}" for i in positions])
    axes.set_yticks(list(positions), names, fontsize=8)
    axes.invert_yaxis()
    for y, median in zip(positions, medians, strict=True):
        axes.annotate(f"{median:,.0f}", (median, y), xytext=(4, 6), textcoords="offset points", fontsize=7)
    axes.set_title(f"throughput: batches of {result.batch} no-ops, {result.slots} workers", fontsize=10)
    axes.set_xlabel("tasks per second (right is faster): median, whiskers to slowest and fastest round")
    axes.grid(True, axis="x", alpha=0.3)


def draw(report: BenchReport) -> Figure | None:
    """The figure of ``report``: its CDF panels, then its throughput panel; None when the run
    measured nothing to draw.

    :raises ImportError: matplotlib is not installed.
    """
    panels = _panels(report)
    throughput = report.throughput
    count = len(panels) + (throughput is not None)
    if not count:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = 2 if count > 1 else 1
    rows = (count + columns - 1) // columns
    figure = Figure(figsize=(6.5 * columns, 4.2 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for index, (title, unit, divisor, curves) in enumerate(panels):
        _draw_cdf(figure.add_subplot(rows, columns, index + 1), title, unit, divisor, curves)
    if throughput is not None:
        _draw_throughput(figure.add_subplot(rows, columns, count), throughput)
    env = report.environment
    figure.suptitle(f"spider bench, {env['date']}, Python {env['python']}")
    return figure


def write_plot(report: BenchReport, path: Path) -> tuple[Path | None, str | None]:
    """Draw the latency plot of ``report`` to ``path`` (a PNG).

    :return: The path written and None; or None and the sentence the report prints instead
        (matplotlib is missing); or None twice when the run measured nothing to draw.
    """
    try:
        figure = draw(report)
    except ImportError:
        return None, NO_MATPLOTLIB
    if figure is None:
        return None, None
    figure.savefig(path, dpi=100)
    return path, None
