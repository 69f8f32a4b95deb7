"""The observe workload: what the observer plugins (``spider_prometheus``, ``spider_otel``;
docs/observing.md) cost a no-op called back to back.

Its contenders are spider-core pools of one slot, each called :data:`~spider_core.bench.
backtoback.BURST` times back to back per sample (after one call that is not counted), through
the async ``ProcessPool.execute`` (``async-*``) and through ``SyncProcessPool.execute`` from
the benchmark's thread (``sync-*``), in five configurations each:

- ``plain``: neither plugin registered (``PoolConfig.disabled_plugins``), the reference;
- ``off``: both installed but switched off (``metrics=False``, no tracer provider when the
  pool started), which must cost nothing;
- ``prometheus``: ``PoolConfig(metrics=True)``, nothing scraped during the run;
- ``otel``: started after the run set the process's tracer provider: the SDK's
  ``TracerProvider`` with a ``BatchSpanProcessor`` (as a user configures it) whose exporter
  drops the spans, so the export costs nothing and the span itself everything;
- ``both``: ``metrics=True`` and traced.

They run interleaved, one call each per round in a shuffled order, so machine noise hits all
of them alike; the report gives each one's p50, p90 and mean, and each ratio to the ``plain``
row of its kind. It also times the SDK alone: one span as the plugin makes it (``start_span``
with its six attributes and a start time, then ``end``) on the same provider, in a loop,
against which to read the rows: a span made per task costs the process that much CPU, on
whichever thread makes it.

The workload needs ``prometheus_client`` and the OpenTelemetry SDK (``pip install
'spider-core-pool[metrics,otel]' opentelemetry-sdk``), and sets the process's tracer provider,
which a process sets once: it refuses to run where one is set already.
"""

from __future__ import annotations

import importlib.util
import random
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attrs import frozen

from spider_core.bench.backtoback import BackToBack
from spider_core.bench.contenders import PACKAGE, Contender, _Ours, _OursSync
from spider_core.bench.stats import Stats
from spider_core.bench.workloads import OBSERVE, WORKLOAD_SPECS

#: The pool configurations, in report order: name -> ``PoolConfig`` fields, and whether the
#: pool starts traced (after the tracer provider is set).
CONFIGS: dict[str, tuple[dict[str, Any], bool]] = {
    "plain": ({"disabled_plugins": ("spider_prometheus", "spider_otel")}, False),
    "off": ({}, False),
    "prometheus": ({"metrics": True}, False),
    "otel": ({}, True),
    "both": ({"metrics": True}, True),
}
KINDS = ("async", "sync")
#: The targets (issue 23): row -> the most it may cost, as a ratio of p50s to ``plain``.
TARGETS = {"off": 1.02, "both": 1.10}
#: Spans made per loop of the SDK measure, and loops.
SDK_SPANS, SDK_LOOPS = 2000, 5
#: What the workload needs installed, module -> the requirement that provides it.
REQUIRES = {"prometheus_client": "prometheus-client", "opentelemetry.sdk": "opentelemetry-sdk"}


@frozen(kw_only=True)
class ObserveResult:
    """The observe workload: every row's samples (µs); what the plugins saw of the rows' tasks
    (a check that each row was observed as its name says); the SDK's span alone (µs per
    span, one value per loop)."""

    #: Row -> its samples, in round order.
    samples: dict[str, tuple[float, ...]]
    #: Row -> tasks it ran (``pool.stats()``).
    tasks: dict[str, int]
    #: Row -> its tasks in ``spider_tasks_total`` (rows with ``metrics=True``).
    counted: dict[str, int]
    #: Spans the exporter received from the traced rows.
    spans: int
    sdk_span_us: tuple[float, ...]
    #: The same with no attributes: the SDK's floor.
    sdk_bare_span_us: tuple[float, ...]

    def sample(self, kind: str, config: str) -> tuple[float, ...]:
        """The samples of row ``kind-config``."""
        return self.samples[f"{kind}-{config}"]

    def row(self, kind: str, config: str) -> Stats:
        return Stats.of(self.sample(kind, config))

    def ratio(self, kind: str, config: str, field: str = "p50") -> float:
        """A row's statistic over its kind's ``plain`` row's."""
        ratio: float = getattr(self.row(kind, config), field) / getattr(self.row(kind, "plain"), field)
        return ratio

    def paired(self, kind: str, config: str) -> float:
        """The median, over the rounds, of a row's sample over its kind's ``plain`` sample of
        the same round: the ratio that a slow moment of the machine, which hits every row of
        a round alike, moves least."""
        return statistics.median(
            row / plain for row, plain in zip(self.sample(kind, config), self.sample(kind, "plain"), strict=True)
        )


@frozen(kw_only=True)
class _Row:
    name: str
    #: The pool's contender, and the same called back to back (the measured one).
    ours: _Ours | _OursSync
    measured: Contender
    metrics: bool
    traced: bool


def _rows(package_dir: Path) -> list[_Row]:
    """Every row, in report order (each pool's ``em_id`` is its row's name)."""
    rows = []
    for kind in KINDS:
        for name, (config, traced) in CONFIGS.items():
            row = f"{kind}-{name}"
            make = _Ours if kind == "async" else _OursSync
            ours = make(package_dir, row, em_id=row, **config)
            rows.append(_Row(name=row, ours=ours, measured=BackToBack(ours), metrics="metrics" in config, traced=traced))
    return rows


def _tracer_provider() -> tuple[Any, Callable[[], int]]:
    """Set the process's tracer provider to the SDK's, with a batch processor whose exporter
    drops the spans; return it, and what says how many spans it received.

    :raises RuntimeError: a tracer provider is set already.
    """
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        raise RuntimeError("the observe workload sets the tracer provider, and this process has one already")
    received = [0]

    class Dropping(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            received[0] += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropping()))
    trace.set_tracer_provider(provider)
    return provider, lambda: received[0]


def _sdk_span_us(provider: Any, attributes: dict[str, Any] | None) -> tuple[float, ...]:
    """µs per span, per loop: spans made as ``spider_otel`` makes them (a parent context, start
    and end times, ``attributes``), on ``provider``."""
    from opentelemetry import context

    tracer = provider.get_tracer("spider_core.bench")
    parent = context.get_current()
    loops = []
    for _ in range(SDK_LOOPS):
        start = time.perf_counter()
        for _ in range(SDK_SPANS):
            end = time.time_ns()
            span = tracer.start_span("spider.task", context=parent, start_time=end - 50_000, attributes=attributes)
            span.end(end_time=end)
        loops.append((time.perf_counter() - start) / SDK_SPANS * 1e6)
    return tuple(loops)


#: The attributes of a no-op's span.
_ATTRIBUTES = {
    "spider.package": PACKAGE, "spider.task": "noop", "spider.outcome": "success", "spider.executor_id": 1,
    "spider.queue_us": 3, "spider.elapsed_us": 2,
}


def _counted(row: str) -> int:
    """The row's tasks in ``spider_tasks_total``."""
    from prometheus_client import REGISTRY

    labels = {"pool": row, "package": PACKAGE, "task": "noop", "outcome": "success"}
    return int(REGISTRY.get_sample_value("spider_tasks_total", labels) or 0)


async def _measure(
    rows: Sequence[Contender], calls: int, warmup: int, progress: Callable[[str, int, int], None]
) -> dict[str, tuple[float, ...]]:
    """Each row's samples of ``calls`` rounds of the no-op, after one checked call and
    ``warmup`` calls each. Every round calls each row once, in a shuffled order (the same
    orders every run): in a fixed rotation each row would always follow the same row, and a
    sync pool's loop thread, or the span thread, still busy from it."""
    noop = WORKLOAD_SPECS["noop"]
    for row in rows:
        await row.check(noop)
        for _ in range(warmup):
            await row.call(noop)
    samples: list[list[float]] = [[] for _ in rows]
    order = list(range(len(rows)))
    shuffle = random.Random(0).shuffle
    for round_ in range(calls):
        shuffle(order)
        for index in order:
            samples[index].append((await rows[index].call(noop))[0])
        progress(OBSERVE, round_ + 1, calls)
    return {row.name: tuple(values) for row, values in zip(rows, samples, strict=True)}


async def run_observe(
    package_dir: Path, calls: int, warmup: int, progress: Callable[[str, int, int], None]
) -> ObserveResult:
    """Start the rows (the untraced ones, then the tracer provider, then the traced ones), run
    ``calls`` rounds of the no-op through them (:func:`_measure`), read what each ran and
    what the plugins saw of it, close them; then time the SDK's span alone.

    :raises RuntimeError: a library is missing, or a tracer provider is set already.
    """
    missing = [requirement for module, requirement in REQUIRES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise RuntimeError(f"the observe workload needs {' and '.join(missing)}: pip install {' '.join(missing)}")
    rows = _rows(package_dir)
    started: list[Contender] = []
    try:
        for row in rows:
            if not row.traced:
                await row.measured.start()
                started.append(row.measured)
        provider, received = _tracer_provider()
        for row in rows:
            if row.traced:
                await row.measured.start()
                started.append(row.measured)
        samples = await _measure([row.measured for row in rows], calls, warmup, progress)
        tasks = {row.name: row.ours.pool.stats().outcomes["success"] for row in rows}
        counted = {row.name: _counted(row.name) for row in rows if row.metrics}
    finally:
        for contender in reversed(started):
            await contender.close()
    provider.force_flush()  # the pools made their last spans as they closed
    return ObserveResult(
        samples=samples, tasks=tasks, counted=counted, spans=received(), sdk_span_us=_sdk_span_us(provider, _ATTRIBUTES),
        sdk_bare_span_us=_sdk_span_us(provider, None),
    )


def _cell(value: float) -> str:
    return f"{value:.1f}"


def observe_markdown(result: ObserveResult) -> list[str]:
    """The report's section: a table per kind, the targets, the SDK's span."""
    lines = [
        "## observe: the observer plugins on a no-op, back to back",
        "",
        "Round trip, µs (each sample the mean of back-to-back calls); ratios over the `plain` row "
        "of the same kind (neither plugin registered).",
        "",
        "| row | p50 | p90 | mean | p50 / plain | p90 / plain | mean / plain | paired / plain |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in KINDS:
        for config in CONFIGS:
            s = result.row(kind, config)
            ratios = [f"{result.ratio(kind, config, field):.3f}x" for field in ("p50", "p90", "avg")]
            ratios.append(f"{result.paired(kind, config):.3f}x")
            lines.append(f"| {kind}-{config} | {_cell(s.p50)} | {_cell(s.p90)} | {_cell(s.avg)} | {' | '.join(ratios)} |")
    lines += [
        "",
        "`paired / plain` is the median over the rounds of each sample over the `plain` sample of the same round. "
        "The targets (ratios of p50s, same run):",
        "",
    ]
    for kind in KINDS:
        for config, limit in TARGETS.items():
            ratio = result.ratio(kind, config)
            lines.append(
                f"- {kind}-{config} p50 ≤ {limit:.2f}x plain: {ratio:.3f}x (paired {result.paired(kind, config):.3f}x); "
                f"{'met' if ratio <= limit else 'unmet'}"
            )
    traced = sum(result.tasks[f"{kind}-{config}"] for kind in KINDS for config, (_, on) in CONFIGS.items() if on)
    counted = ", ".join(f"{row} {count} of {result.tasks[row]}" for row, count in result.counted.items())
    sdk, bare = statistics.median(result.sdk_span_us), statistics.median(result.sdk_bare_span_us)
    plain = " and ".join(f"{kind}-plain {_cell(result.row(kind, 'plain').p50)} µs" for kind in KINDS)
    return [
        *lines,
        "",
        f"Observed: `spider_tasks_total` counted {counted} tasks; the exporter received {result.spans} spans for "
        f"the {traced} tasks of the traced rows.",
        "",
        f"The OpenTelemetry SDK alone (`BatchSpanProcessor`, medians of {SDK_LOOPS} loops of {SDK_SPANS} spans): a "
        f"span as `spider_otel` makes it (six attributes) {_cell(sdk)} µs, a bare span (`start_span`, `end`) "
        f"{_cell(bare)} µs; against the p50 round trips {plain}. The plugin's thread spends that on every task.",
        "",
    ]


def observe_json(result: ObserveResult) -> dict[str, Any]:
    """The section's data: each row's statistics, ratios and samples, the SDK's span."""
    rows = {}
    for kind in KINDS:
        for config in CONFIGS:
            s = result.row(kind, config)
            rows[f"{kind}-{config}"] = {
                "p50": s.p50, "p90": s.p90, "avg": s.avg,
                "over_plain": {field: result.ratio(kind, config, field) for field in ("p50", "p90", "avg")},
                "paired_over_plain": result.paired(kind, config),
                "samples": [round(v, 3) for v in result.sample(kind, config)],
            }
    return {
        "rows": rows, "tasks": result.tasks, "counted": result.counted, "spans": result.spans,
        "sdk_span_us": list(result.sdk_span_us), "sdk_bare_span_us": list(result.sdk_bare_span_us),
        "targets": TARGETS,
    }
