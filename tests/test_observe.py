"""Observing the pool: ``pool.stats()``, the Prometheus plugin and the OpenTelemetry plugin,
against the real executor, the real bundled package and the real libraries."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

import spider_core as sc
from helpers import PKG, REPO, SPIDER, async_wait_until, call, wait_until, write_requests

pytestmark = pytest.mark.slow

#: What the fixed mix ends with: every outcome and every respawn reason it causes.
MIX_OUTCOMES = {"success": 7, "failure": 1, "timeout": 1, "crash": 1, "cancelled": 1}
MIX_RESPAWNS = {"timeout": 1, "crash": 1, "cancel": 1, "recycle": 1, "memory": 0, "spawn-failure": 0}
_names = itertools.count()


def req(task: str, *inputs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task=task, inputs=inputs)


def pool_name() -> str:
    """An ``em_id`` of its own: the pool's series in the process-wide registry."""
    return f"observe-{os.getpid()}-{next(_names)}"


async def run_mix(pool: sc.ProcessPool) -> None:
    """Two successes, a failure, a segfault, a timeout, a cancelled call, then five successes
    of which the last ends the executor's share (``recycle_after=5``)."""
    assert isinstance(await pool.execute(req("noop"), 10), sc.Success)
    assert isinstance(await pool.execute(req("noop"), 10), sc.Success)
    assert isinstance(await pool.execute(req("always_fail"), 10), sc.InTaskFailure)
    assert isinstance(await pool.execute(req("segfault"), 10), sc.ExecutorCrash)
    assert isinstance(await pool.execute(req("sleep_ms", 60_000), 0.3), sc.Timeout)
    running = asyncio.create_task(pool.execute(req("sleep_ms", 60_000), 60))
    await async_wait_until(lambda: pool.stats().busy == 1, "it holds the slot: its task runs")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    for _ in range(5):
        assert isinstance(await pool.execute(req("noop"), 10), sc.Success)


def mix_config(package_dir: Path, **extra: object) -> sc.PoolConfig:
    return sc.PoolConfig(package_dir=package_dir, recycle_after=5, plugin_autoload=False, **extra)


def test_stats_count_a_fixed_mix_exactly(package_dir: Path) -> None:
    pool = sc.ProcessPool(mix_config(package_dir))
    before = pool.stats()
    assert (before.slots, before.busy, before.queued, before.executors) == (1, 0, 0, ())
    assert dict(before.outcomes) == dict.fromkeys(MIX_OUTCOMES, 0)

    async def main() -> sc.PoolStats:
        async with pool:
            first = pool.stats().executors
            assert [(e.executor_id, e.pid, e.state, e.tasks_run) for e in first] == [(1, pool.pid, "idle", 0)]
            await run_mix(pool)
            return pool.stats()

    stats = asyncio.run(main())
    assert dict(stats.outcomes) == MIX_OUTCOMES
    assert dict(stats.respawns) == MIX_RESPAWNS
    assert (stats.slots, stats.busy, stats.queued) == (1, 0, 0)
    (executor,) = stats.executors
    # executors 1 (crashed), 2 (timed out), 3 (cancelled), 4 (recycled after 5), 5 now
    assert (executor.executor_id, executor.state, executor.tasks_run) == (5, "idle", 0)
    assert executor.rss_bytes > 0
    with pytest.raises(AttributeError):
        stats.busy = 3  # type: ignore[misc]  # frozen
    with pytest.raises(TypeError):
        stats.outcomes["success"] = 0  # type: ignore[index]  # read-only


def test_sync_stats_count_calls_from_threads_and_map(package_dir: Path) -> None:
    """Calls finished on callers' threads, on the pool's thread (``submit``) and through the
    pipelined map all count, and a slot held by a call is ``busy``."""
    config = sc.PoolConfig(package_dir=package_dir, slots=2, standby=True, plugin_autoload=False)
    with sc.SyncProcessPool(config) as pool:
        for _ in range(3):
            assert isinstance(pool.execute(req("noop"), 10), sc.Success)
        assert isinstance(pool.submit(req("always_fail"), 10).result(), sc.InTaskFailure)
        outcomes = list(pool.map([req("noop")] * 20 + [req("segfault")], 10))
        assert isinstance(outcomes[-1], sc.ExecutorCrash)
        slow = pool.submit(req("sleep_ms", 1000), 10)
        wait_until(lambda: pool.stats().busy, "the slow call runs")
        busy = pool.stats()
        slow.result()
        wait_until(lambda: sum(e.state == "standby" for e in pool.stats().executors) == 2, "both standbys are ready")
        stats = pool.stats()
    assert dict(stats.outcomes) == {"success": 24, "failure": 1, "timeout": 0, "crash": 1, "cancelled": 0}
    assert dict(stats.respawns) == {"timeout": 0, "crash": 1, "cancel": 0, "recycle": 0, "memory": 0, "spawn-failure": 0}
    assert sorted(e.state for e in busy.executors[:2]) == ["busy", "idle"]
    assert [e.state for e in stats.executors] == ["idle", "idle", "standby", "standby"]
    assert sum(e.tasks_run for e in stats.executors[:2]) >= 1


def test_stats_count_a_failed_spawn(package_dir: Path, tmp_path: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, executor_command=(str(tmp_path / "missing"),), plugin_autoload=False)
    pool = sc.ProcessPool(config)
    with pytest.raises(sc.ExecutorCreationFailure):
        asyncio.run(pool.start())
    stats = pool.stats()
    assert stats.respawns["spawn-failure"] == 1
    assert stats.executors == ()


class Observer:
    """A plugin that records the observer hooks' calls; ``watch`` is its answer at start."""

    def __init__(self, watch: bool | None) -> None:
        self.watch = watch
        self.calls: list[tuple[str, object]] = []

    @sc.hookimpl
    def spider_pool_started(self, pool: sc.ProcessPool) -> bool | None:
        self.calls.append(("started", pool))
        return self.watch

    @sc.hookimpl
    def spider_pool_closed(self, pool: sc.ProcessPool) -> None:
        self.calls.append(("closed", pool))

    @sc.hookimpl
    def spider_task_finished(self, outcome: sc.Outcome, pool: sc.ProcessPool) -> None:
        self.calls.append((type(outcome).__name__, pool))

    @sc.hookimpl
    def spider_executor_exited(self, reason: str, pool: sc.ProcessPool) -> None:
        self.calls.append((reason, pool))


def test_a_plugin_that_declines_a_pool_gets_none_of_its_task_events(package_dir: Path) -> None:
    """``spider_pool_started`` answering False leaves the plugin out of that pool's
    ``spider_task_finished`` (and only that hook); every hook gets the pool."""
    pm = sc.get_plugin_manager(sc.PluginSettings(autoload=False))
    watching, declining = Observer(None), Observer(False)
    pm.register(watching, name="watching")
    pm.register(declining, name="declining")

    async def main() -> sc.ProcessPool:
        async with sc.ProcessPool(sc.PoolConfig(package_dir=package_dir), plugin_manager=pm) as pool:
            await pool.execute(req("noop"), 10)
            await pool.execute(req("segfault"), 10)
        return pool

    pool = asyncio.run(main())
    assert watching.calls == [
        ("started", pool), ("Success", pool), ("crash", pool), ("ExecutorCrash", pool), ("shutdown", pool),
        ("closed", pool),
    ]
    assert declining.calls == [("started", pool), ("crash", pool), ("shutdown", pool), ("closed", pool)]


# -- Prometheus --------------------------------------------------------------------------------
#
# The libraries are in the test extra, so CI runs these with them; a venv without the extras
# skips the tests that need them and still runs the others.


@pytest.fixture
def metrics_extra() -> None:
    pytest.importorskip("prometheus_client")


def exposition() -> str:
    """What ``prometheus_client``'s default registry serves now."""
    from prometheus_client import generate_latest

    return generate_latest().decode()


def scrape(text: str, pool: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The samples of pool ``pool`` in an exposition: sample name -> labels (but ``pool``) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            if labels.pop("pool", None) == pool:
                samples.setdefault(sample.name, {})[tuple(sorted(labels.items()))] = sample.value
    return samples


def by(samples: dict[tuple[tuple[str, str], ...], float], label: str) -> dict[str, float]:
    """Sample values summed by one label."""
    totals: dict[str, float] = {}
    for labels, value in samples.items():
        key = dict(labels)[label]
        totals[key] = totals.get(key, 0) + value
    return totals


def dashboard_metrics() -> set[str]:
    """The metrics the panels of docs/grafana-dashboard.json query."""
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"\b(spider_\w+)\{", expr)}


def test_prometheus_reports_what_stats_counts(package_dir: Path, metrics_extra: None) -> None:
    name = pool_name()
    pool = sc.ProcessPool(mix_config(package_dir, metrics=True, em_id=name))

    async def main() -> tuple[sc.PoolStats, str]:
        async with pool:
            await run_mix(pool)
            return pool.stats(), exposition()

    stats, text = asyncio.run(main())
    samples = scrape(text, name)
    tasks = samples["spider_tasks_total"]
    assert by(tasks, "outcome") == {key: count for key, count in MIX_OUTCOMES.items() if count}
    assert tasks[(("outcome", "failure"), ("package", PKG), ("task", "always_fail"))] == 1
    assert tasks[(("outcome", "success"), ("package", PKG), ("task", "noop"))] == 7
    assert tasks[(("outcome", "cancelled"), ("package", ""), ("task", ""))] == 1
    assert by(samples["spider_executor_respawns_total"], "reason") == MIX_RESPAWNS == dict(stats.respawns)
    assert by(samples["spider_executors"], "state") == {"idle": 1, "busy": 0, "starting": 0, "standby": 0}
    (rss,) = samples["spider_executor_rss_bytes"].values()
    assert rss > 0
    finished = sum(MIX_OUTCOMES.values()) - MIX_OUTCOMES["cancelled"]
    assert sum(samples["spider_task_duration_seconds_count"].values()) == finished
    assert sum(samples["spider_task_queue_seconds_count"].values()) == finished
    exported = {sample for sample in samples if not sample.endswith(("_count", "_sum", "_created"))}
    assert dashboard_metrics() == exported
    after = scrape(exposition(), name)  # closed: no gauges for it any more
    assert "spider_executors" not in after and after["spider_tasks_total"] == tasks


def test_prometheus_reports_nothing_of_a_pool_without_metrics(package_dir: Path, metrics_extra: None) -> None:
    name = pool_name()

    async def main() -> str:
        async with sc.ProcessPool(sc.PoolConfig(package_dir=package_dir, em_id=name)) as pool:
            await pool.execute(req("noop"), 10)
            await pool.execute(req("segfault"), 10)
            return exposition()

    assert scrape(asyncio.run(main()), name) == {}


def test_spider_batch_serves_the_metrics_over_http(package_dir: Path, tmp_path: Path, metrics_extra: None) -> None:
    requests = write_requests(tmp_path / "requests.jsonl", [
        call("a", "noop"), call("b", "noop"), call("c", "always_fail"), call("d", "segfault"),
        call("e", "sleep_ms", 60_000, timeout=0.5), call("f", "noop"), call("g", "sleep_ms", 5_000),
    ])
    proc = subprocess.Popen(
        [str(SPIDER), "batch", str(requests), "--out", str(tmp_path / "out.jsonl"), "--package-dir", str(package_dir),
         "--metrics-port", "0", "--quiet"],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        assert line.startswith("spider: metrics on http://127.0.0.1:"), line
        url = line.split()[-1]
        deadline = time.monotonic() + 60
        while True:
            with urllib.request.urlopen(url, timeout=10) as response:
                samples = scrape(response.read().decode(), "spider-cli")
            if sum(samples.get("spider_tasks_total", {}).values()) == 6 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert by(samples["spider_tasks_total"], "outcome") == {"success": 3, "failure": 1, "crash": 1, "timeout": 1}
        respawns = by(samples["spider_executor_respawns_total"], "reason")
        assert (respawns["crash"], respawns["timeout"], sum(respawns.values())) == (1, 1, 2)
        assert by(samples["spider_executors"], "state")["busy"] == 1  # the last request runs
        assert proc.wait(60) == 1  # some requests did not succeed
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()  # type: ignore[union-attr]


def test_metrics_port_errors_are_one_sentence(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "requests.jsonl", [call("a", "noop")])
    base = [str(SPIDER), "batch", str(requests), "--out", str(tmp_path / "out.jsonl"), "--package-dir", str(package_dir)]
    bad = subprocess.run([*base, "--metrics-port", "70000"], capture_output=True, text=True)
    assert bad.returncode == 2 and "must be a port number from 0 to 65535" in bad.stderr
    assert "Traceback" not in bad.stderr


# -- OpenTelemetry -----------------------------------------------------------------------------

#: Runs in a fresh interpreter (a process sets its tracer provider once): a pool started
#: before the provider is set, then pools started after it, with the SDK's in-memory exporter.
OTEL_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import spider_core as sc

    config = sc.PoolConfig(package_dir=sys.argv[1], plugin_autoload=False)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    def req(task, *inputs):
        return sc.ExecuteRequest(package="integration_test_tasks", task=task, inputs=inputs)

    async def before():
        async with sc.ProcessPool(config) as pool:
            await pool.execute(req("noop"), 10)
            trace.set_tracer_provider(provider)
            await pool.execute(req("noop"), 10)  # its pool started without a provider

    asyncio.run(before())
    assert exporter.get_finished_spans() == (), "a pool started without a tracer provider exported spans"
    tracer = trace.get_tracer("test")

    async def after():
        async with sc.ProcessPool(config) as pool:
            with tracer.start_as_current_span("caller"):
                await pool.execute(req("noop"), 10)
                await pool.execute(req("always_fail"), 10)
                await pool.execute(req("segfault"), 10)
                await pool.execute(req("sleep_ms", 60000), 0.3)

    asyncio.run(after())
    with sc.SyncProcessPool(config) as pool, tracer.start_as_current_span("sync caller"):
        pool.execute(req("noop"), 10)
    spans = [
        {
            "name": span.name,
            "span_id": span.context.span_id,
            "trace_id": span.context.trace_id,
            "parent": span.parent.span_id if span.parent else None,
            "attributes": dict(span.attributes),
            "status": span.status.status_code.name,
            "events": [(event.name, dict(event.attributes)) for event in span.events],
            "duration": span.end_time - span.start_time,
        }
        for span in exporter.get_finished_spans()
    ]
    print(json.dumps(spans))
""")


def test_otel_exports_one_span_per_task_as_a_child_of_the_callers_span(package_dir: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")  # the otel extra's API and the SDK (in the test extra)
    run = subprocess.run([sys.executable, "-c", OTEL_SCRIPT, str(package_dir)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    spans = json.loads(run.stdout)
    tasks = [span for span in spans if span["name"] == "spider.task"]
    (caller,) = [span for span in spans if span["name"] == "caller"]
    (sync_caller,) = [span for span in spans if span["name"] == "sync caller"]
    assert len(tasks) == 5 and len(spans) == 7
    assert [span["parent"] for span in tasks] == [caller["span_id"]] * 4 + [sync_caller["span_id"]]
    assert {span["trace_id"] for span in tasks[:4]} == {caller["trace_id"]}
    assert [(s["attributes"]["spider.task"], s["attributes"]["spider.outcome"], s["status"]) for s in tasks] == [
        ("noop", "success", "UNSET"),
        ("always_fail", "failure", "ERROR"),
        ("segfault", "crash", "ERROR"),
        ("sleep_ms", "timeout", "ERROR"),
        ("noop", "success", "UNSET"),
    ]
    for span in tasks:
        attributes = span["attributes"]
        assert attributes["spider.package"] == PKG
        assert attributes["spider.queue_us"] >= 0 and span["duration"] > 0
    assert [span["attributes"]["spider.executor_id"] for span in tasks] == [1, 1, 1, 2, 1]
    assert all("spider.elapsed_us" in span["attributes"] for span in (tasks[0], tasks[1], tasks[4]))
    assert all("spider.elapsed_us" not in span["attributes"] for span in tasks[2:4])
    assert [span["events"] for span in tasks] == [
        [], [], [["spider.respawn", {"spider.reason": "crash"}]], [["spider.respawn", {"spider.reason": "timeout"}]], [],
    ]


#: Hides the observers' libraries from a fresh interpreter, runs a pool, and prints which of
#: the plugins and libraries were imported.
HIDDEN_SCRIPT = textwrap.dedent("""
    import asyncio, importlib.abc, json, sys

    class Hide(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("prometheus_client", "opentelemetry"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    if sys.argv[2] == "hide":
        sys.meta_path.insert(0, Hide())
    import spider_core as sc

    async def main():
        config = sc.PoolConfig(package_dir=sys.argv[1], plugin_autoload=False)
        async with sc.ProcessPool(config) as pool:
            outcome = await pool.execute(sc.ExecuteRequest(package="integration_test_tasks", task="noop"), 10)
            return type(outcome).__name__, [name for name, _ in pool.pm.list_name_plugin()]

    outcome, plugins = asyncio.run(main())
    modules = ["spider_prometheus", "spider_otel", "prometheus_client", "opentelemetry"]
    print(json.dumps({"outcome": outcome, "plugins": plugins, "imported": [m for m in modules if m in sys.modules]}))
""")


@pytest.mark.parametrize(
    ("mode", "imported"),
    [("hide", []), ("show", ["spider_prometheus", "spider_otel", "opentelemetry"])],
)
def test_neither_plugin_is_imported_without_its_library(package_dir: Path, mode: str, imported: list[str]) -> None:
    """Without the libraries the plugins are not even imported; with them, a pool that they
    do not observe imports neither ``prometheus_client`` nor more than OpenTelemetry's API
    (to see that no tracer provider is configured)."""
    if mode == "show":
        pytest.importorskip("prometheus_client")
        pytest.importorskip("opentelemetry.trace")
    run = subprocess.run([sys.executable, "-c", HIDDEN_SCRIPT, str(package_dir), mode], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["outcome"] == "Success"
    assert report["imported"] == imported
    assert ("spider_prometheus" in report["plugins"], "spider_otel" in report["plugins"]) == (bool(imported),) * 2



def test_spider_soak_takes_a_metrics_port(package_dir: Path, metrics_extra: None) -> None:
    done = subprocess.run(
        [str(SPIDER), "soak", "--tasks", "40", "--callers", "2", "--package-dir", str(package_dir), "--metrics-port", "0"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert re.match(r"spider: metrics on http://127\.0\.0\.1:\d+/metrics\n", done.stderr), done.stderr


def test_spider_bench_observe_runs_each_row_as_named(package_dir: Path, tmp_path: Path, metrics_extra: None) -> None:
    """``spider bench --workloads observe`` (in a process of its own: it sets the tracer
    provider): every row gets its samples and ratios, the Prometheus rows are counted and the
    traced rows' spans exported, task for task, and nothing else is; the targets and the SDK's
    span are reported."""
    pytest.importorskip("opentelemetry.sdk")
    done = subprocess.run(
        [str(SPIDER), "bench", "--package-dir", str(package_dir), "--quick", "--calls", "4", "--workloads", "observe",
         "--out", str(tmp_path), "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    observe = json.loads((tmp_path / "report.json").read_text())["observe"]
    kinds, configs = ("async", "sync"), ("plain", "off", "prometheus", "otel", "both")
    names = [f"{kind}-{config}" for kind in kinds for config in configs]
    assert list(observe["rows"]) == names
    for name, row in observe["rows"].items():
        assert len(row["samples"]) == 4
        assert row["p50"] == pytest.approx(sorted(row["samples"])[1], abs=1e-3)  # nearest rank (samples rounded)
        plain = observe["rows"][name.split("-")[0] + "-plain"]
        assert row["over_plain"]["p50"] == pytest.approx(row["p50"] / plain["p50"])
        paired = sorted(a / b for a, b in zip(row["samples"], plain["samples"], strict=True))
        assert row["paired_over_plain"] == pytest.approx((paired[1] + paired[2]) / 2, rel=1e-3)  # (samples rounded)
    tasks = observe["tasks"]
    assert set(tasks) == set(names) and len(set(tasks.values())) == 1  # the same calls for every row
    assert observe["counted"] == {name: tasks[name] for name in names if name.endswith(("-prometheus", "-both"))}
    assert observe["spans"] == sum(tasks[name] for name in names if name.endswith(("-otel", "-both")))
    for loops in (observe["sdk_span_us"], observe["sdk_bare_span_us"]):
        assert len(loops) == 5 and min(loops) > 0
    markdown = (tmp_path / "report.md").read_text()
    for kind in kinds:
        assert re.search(rf"^- {kind}-off p50 ≤ 1\.02x plain: \d+\.\d{{3}}x \(paired \d+\.\d{{3}}x\); (met|unmet)$", markdown, re.M)
        assert re.search(rf"^- {kind}-both p50 ≤ 1\.10x plain: \d+\.\d{{3}}x \(paired \d+\.\d{{3}}x\); (met|unmet)$", markdown, re.M)
    assert re.search(r"a span as `spider_otel` makes it \(six attributes\) \d+\.\d µs, a bare span", markdown)
