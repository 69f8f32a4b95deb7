"""The benchmark's statistics, its targets and plot, and tiny runs against the real executor and
the real C package (no timing asserted)."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import re
import sys
from pathlib import Path

import attrs
import pytest

from spider_core.bench import (
    DEFAULT_BATCH,
    DEFAULT_RECOVERY_ROUNDS,
    DEFAULT_ROUNDS,
    DEFAULT_SLOTS,
    DEFAULT_WORKLOADS,
    NO_MATPLOTLIB,
    NOT_KILLABLE,
    OUR_METRICS,
    PLOT_NAME,
    QUICK_RECOVERY_ROUNDS,
    WORKLOADS,
    BatchResult,
    BenchReport,
    ContenderResult,
    RecoveryResult,
    RecoverySamples,
    Stats,
    ThroughputResult,
    WorkloadResult,
    build_parser,
    draw,
    percentile,
    render_markdown,
    report_to_json,
    run_benchmark,
    targets,
    write_plot,
)

# -- percentile and Stats: hand-computed nearest-rank values ----------------------------------


@pytest.mark.parametrize(("p", "expected"), [(0, 1), (10, 1), (50, 5), (51, 6), (95, 10), (99, 10), (100, 10)])
def test_percentile_one_to_ten(p: float, expected: int) -> None:
    assert percentile(list(range(1, 11)), p) == expected


@pytest.mark.parametrize(("p", "expected"), [(0, 15), (5, 15), (30, 20), (40, 20), (50, 35), (100, 50)])
def test_percentile_textbook_example(p: float, expected: int) -> None:
    assert percentile([15, 20, 35, 40, 50], p) == expected


def test_percentile_has_no_float_noise() -> None:
    # 7/100 * 100 is 7.000000000000001 in floats; the rank is still exactly 7.
    assert percentile(list(range(1, 101)), 7) == 7


@pytest.mark.parametrize("p", [0, 50, 99, 100])
def test_percentile_single_value(p: float) -> None:
    assert percentile([42.5], p) == 42.5


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)


@pytest.mark.parametrize("p", [-1, 100.5])
def test_percentile_out_of_range(p: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        percentile([1, 2], p)


def test_stats_sorts_and_summarises() -> None:
    stats = Stats.of([10, 3, 7, 1, 9, 2, 8, 4, 6, 5])
    assert stats == Stats(count=10, avg=5.5, p50=5, p90=9, p95=10, p99=10, min=1, max=10)


def test_stats_single_sample() -> None:
    assert Stats.of([3.0]) == Stats(count=1, avg=3.0, p50=3.0, p90=3.0, p95=3.0, p99=3.0, min=3.0, max=3.0)


def test_stats_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        Stats.of([])


# -- a tiny run ---------------------------------------------------------------------------


def table_rows(markdown: str, section: str) -> dict[str, list[str]]:
    """The table rows of the ``## <section>...`` section, by their first cell."""
    rows: dict[str, list[str]] = {}
    inside = False
    for line in markdown.splitlines():
        if line.startswith("## "):
            inside = line.startswith(f"## {section}")
        elif inside and line.startswith("| "):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows.setdefault(cells[0], cells[1:])
    return rows


def formatted(stats: Stats) -> list[str]:
    return [str(stats.count)] + [f"{getattr(stats, f):.1f}" for f in ("avg", "p50", "p95", "p99")]


@pytest.mark.slow
def test_quick_run_writes_a_report_matching_its_samples(package_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results" / "bench"  # created by the run
    report = asyncio.run(
        run_benchmark(
            package_dir,
            quick=True,
            output_dir=out,
            workloads=("noop", "echo"),
            peers=("pipe-sync", "pipe-asyncio"),
            progress=False,
            calls=20,
            warmup=2,
            start_samples=1,
        )
    )
    assert report.markdown_path == out / "report.md" and report.markdown_path.is_file()
    markdown = report.markdown_path.read_text()
    data = json.loads(report.json_path.read_text())
    assert [w.workload for w in report.workloads] == ["noop", "echo"]
    for result in report.workloads:
        assert [c.name for c in result.contenders] == ["spider-core", "pipe-sync", "pipe-asyncio"]
        rows = table_rows(markdown, result.workload)
        for contender in result.contenders:
            stats = Stats.of(contender.samples["e2e"])
            assert stats.count == 20
            assert rows[contender.name][:5] == formatted(stats)
            assert data["workloads"][result.workload][contender.name]["stats"]["e2e"]["p99"] == stats.p99
            if contender is not result.ours:
                ratio = Stats.of(result.ours.samples["e2e"]).p50 / stats.p50
                assert rows[contender.name][5] == f"{ratio:.2f}"
        labels = ["E2E", "executor time", "executor internal", "IPC overhead"]
        for metric, label in zip(OUR_METRICS, labels, strict=True):
            assert rows[label][:5] == formatted(Stats.of(result.ours.samples[metric]))
        ours = result.ours.samples
        for e2e, executor, internal, overhead in zip(*(ours[m] for m in OUR_METRICS), strict=True):
            assert overhead == pytest.approx(e2e - executor)
            assert internal == executor - (50.0 if result.workload == "echo" else 0.0)
    assert len(report.start_us) == 1 and report.start_us[0] > 0
    assert report.idle_rss_kib is None or report.idle_rss_kib > 0
    assert report.throughput is None and data["throughput"] is None
    assert "## throughput" not in markdown


def test_unknown_peer_is_refused(package_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown peer 'ray'"):
        asyncio.run(run_benchmark(package_dir, quick=True, output_dir=tmp_path, peers=("ray",), progress=False))


def test_unknown_workload_is_refused(package_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown workload 'bogus'; choose from noop, echo, throughput, sync, recovery, payload"):
        asyncio.run(run_benchmark(package_dir, quick=True, output_dir=tmp_path, workloads=("bogus",), progress=False))


@pytest.mark.parametrize("option", ["slots", "batch", "rounds"])
def test_throughput_counts_below_one_are_refused(package_dir: Path, tmp_path: Path, option: str) -> None:
    with pytest.raises(ValueError, match="slots, batch and rounds must be at least 1"):
        asyncio.run(run_benchmark(package_dir, quick=True, output_dir=tmp_path, progress=False, **{option: 0}))


# -- the throughput workload ------------------------------------------------------------------


def test_throughput_options() -> None:
    args = build_parser().parse_args([])
    assert args.workloads == DEFAULT_WORKLOADS == ("noop", "echo", "throughput", "sync")
    assert WORKLOADS == (*DEFAULT_WORKLOADS, "recovery", "payload", "observe")
    assert (args.slots, args.batch, args.rounds) == (DEFAULT_SLOTS, None, None) == (2, None, None)
    args = build_parser().parse_args(["--workloads", "throughput", "--slots", "3", "--batch", "50", "--rounds", "4"])
    assert (args.workloads, args.slots, args.batch, args.rounds) == (("throughput",), 3, 50, 4)
    assert (DEFAULT_BATCH, DEFAULT_ROUNDS) == (2000, 15)


def test_throughput_option_below_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--slots", "0"])
    assert "argument --slots: '0' must be at least 1" in capsys.readouterr().err


def throughput_report(tmp_path: Path, result: ThroughputResult) -> BenchReport:
    return BenchReport(
        workloads=(),
        start_us=(1000.0,),
        idle_rss_kib=None,
        calls=1,
        warmup=0,
        notes=(),
        environment={"date": "d", "python": "3", "platform": "p", "cpus": 2, "affinity": [0, 1]},
        markdown_path=tmp_path / "report.md",
        json_path=tmp_path / "report.json",
        throughput=result,
    )


def test_throughput_report_from_hand_made_batches(tmp_path: Path) -> None:
    # 1000 tasks per batch: 0.1 s is 10000 tasks/s, 0.25 s 4000, 0.05 s 20000.
    result = ThroughputResult(
        slots=2,
        batch=1000,
        rounds=3,
        contenders=(
            BatchResult(name="spider-core", workers=2, batch=1000, batch_s=(0.1, 0.125, 0.08)),
            BatchResult(name="multiprocessing", workers=2, batch=1000, batch_s=(0.05, 0.04, 0.1)),
            BatchResult(name="futures", workers=2, batch=1000, batch_s=(0.25, 0.2, 0.5)),
        ),
    )
    ours, mp, futures = result.contenders
    assert ours.rates == pytest.approx((10000, 8000, 12500))
    assert ours.stats().p50 == pytest.approx(10000) and mp.stats().p50 == pytest.approx(20000)
    assert result.ratio(mp) == pytest.approx(0.5) and result.ratio(futures) == pytest.approx(2.5)
    report = throughput_report(tmp_path, result)
    rows = table_rows(render_markdown(report), "throughput")
    assert rows["spider-core"] == ["2", "3", "10000", "8000", "12500", "100.0", ""]
    assert rows["multiprocessing"] == ["2", "3", "20000", "10000", "25000", "50.0", "0.50"]
    assert rows["futures"] == ["2", "3", "4000", "2000", "5000", "250.0", "2.50"]
    data = report_to_json(report)
    assert data["workloads"] == {}
    throughput = data["throughput"]
    assert (throughput["slots"], throughput["batch"], throughput["rounds"]) == (2, 1000, 3)
    assert "ours_over_peer" not in throughput["contenders"]["spider-core"]
    assert throughput["contenders"]["futures"]["ours_over_peer"]["p50"] == pytest.approx(2.5)
    assert throughput["contenders"]["multiprocessing"]["samples"]["batch_s"] == [0.05, 0.04, 0.1]
    assert throughput["contenders"]["multiprocessing"]["tasks_per_s"]["max"] == pytest.approx(25000)


@pytest.mark.slow
def test_quick_throughput_run_reports_every_contender(package_dir: Path, tmp_path: Path) -> None:
    report = asyncio.run(
        run_benchmark(
            package_dir,
            quick=True,
            output_dir=tmp_path,
            workloads=("throughput",),
            progress=False,
            start_samples=1,
            batch=30,
            rounds=3,
        )
    )
    blocking = ["futures", "multiprocessing", "pebble", "loky", "billiard"]
    installed = [name for name in blocking if name == "futures" or importlib.util.find_spec(name) is not None]
    expected = [
        "spider-core", "spider-core-map", "spider-core-sync-map", "spider-core-submit", "spider-core-slots1", *installed
    ]
    result = report.throughput
    assert report.workloads == () and result is not None
    assert (result.slots, result.batch, result.rounds) == (2, 30, 3)
    assert [c.name for c in result.contenders] == expected
    assert [c.workers for c in result.contenders] == [2, 2, 2, 2, 1] + [2] * len(installed)
    assert len(report.notes) == len(blocking) - len(installed)

    markdown = report.markdown_path.read_text()
    data = json.loads(report.json_path.read_text())
    rows = table_rows(markdown, "throughput")
    entries = data["throughput"]["contenders"]
    assert list(entries) == expected and set(rows) == {"contender", "---", *expected}
    ours = result.ours.stats().p50
    for contender in result.contenders:
        stats = contender.stats()
        assert stats.count == 3 and stats.min > 0
        assert contender.rates == pytest.approx([30 / s for s in contender.batch_s])
        row = rows[contender.name]
        assert row[:5] == [str(contender.workers), "3", f"{stats.p50:.0f}", f"{stats.min:.0f}", f"{stats.max:.0f}"]
        entry = entries[contender.name]
        assert entry["tasks_per_s"]["p50"] == stats.p50 > 0
        assert len(entry["samples"]["tasks_per_s"]) == len(entry["samples"]["batch_s"]) == 3
        if contender is result.ours:
            assert row[6] == "" and "ours_over_peer" not in entry
        else:
            assert entry["ours_over_peer"]["p50"] == pytest.approx(ours / stats.p50, rel=1e-12)
            assert row[6] == f"{ours / stats.p50:.2f}"
    assert report.idle_rss_kib is None or report.idle_rss_kib > 0


@pytest.mark.slow
def test_throughput_with_one_slot_has_no_reference_line(package_dir: Path, tmp_path: Path) -> None:
    report = asyncio.run(
        run_benchmark(
            package_dir,
            quick=True,
            output_dir=tmp_path,
            workloads=("throughput",),
            peers=("multiprocessing", "pipe-sync"),
            progress=False,
            start_samples=1,
            slots=1,
            batch=10,
            rounds=1,
        )
    )
    assert report.throughput is not None
    assert [(c.name, c.workers) for c in report.throughput.contenders] == [
        ("spider-core", 1),
        ("spider-core-map", 1),
        ("spider-core-sync-map", 1),
        ("spider-core-submit", 1),
        ("multiprocessing", 1),
    ]


# -- the sync and recovery workloads, the targets and the plot ---------------------------------

TARGET_LINE = re.compile(r"^- target: (.+); measured: (.+); (met|unmet)$")
ENVIRONMENT = {"date": "d", "python": "3", "platform": "p", "cpus": 2, "affinity": [0, 1]}


def target_lines(markdown: str) -> list[tuple[str, str, str]]:
    """The ``## Targets`` section's lines, as (target, measured, met or unmet)."""
    found = []
    inside = False
    for line in markdown.splitlines():
        if line.startswith("## "):
            inside = line == "## Targets"
        elif inside and line.startswith("- "):
            match = TARGET_LINE.match(line)
            assert match, f"not a target line: {line!r}"
            found.append((match[1], match[2], match[3]))
    return found


def hand_made_report(tmp_path: Path, **fields: object) -> BenchReport:
    values: dict[str, object] = {
        "workloads": (),
        "start_us": (100_000.0, 120_000.0, 140_000.0),
        "start_floor_us": (20_000.0, 20_000.0, 30_000.0),
        "idle_rss_kib": None,
        "calls": 3,
        "warmup": 0,
        "notes": (),
        "environment": ENVIRONMENT,
        "markdown_path": tmp_path / "report.md",
        "json_path": tmp_path / "report.json",
    }
    values.update(fields)
    return BenchReport(**values)  # type: ignore[arg-type]


def sync_result(async_us: float, sync_us: float, futures_us: float, floors_us: tuple[float, float] | None = None) -> WorkloadResult:
    def samples(p50: float) -> tuple[float, ...]:
        return (p50 / 2, p50, p50 * 2)

    floors = () if floors_us is None else (
        ContenderResult(name="pipe-sync", samples={"e2e": samples(floors_us[0])}),
        ContenderResult(name="pipe-asyncio", samples={"e2e": samples(floors_us[1])}),
    )
    return WorkloadResult(
        workload="sync",
        contenders=(
            ContenderResult(name="spider-core", samples={"e2e": samples(async_us)}),
            ContenderResult(name="spider-core-sync", samples={"e2e": samples(sync_us)}),
            ContenderResult(name="spider-core-sync-call", samples={"e2e": samples(sync_us + 5)}),
            ContenderResult(name="futures", samples={"e2e": samples(futures_us)}),
            *floors,
        ),
    )


def recovery_result(standby_crash_us: float, standby_timeout_us: float, plain_crash_us: float) -> RecoveryResult:
    def contender(name: str, crash: float, timeout: float) -> RecoverySamples:
        return RecoverySamples(
            name=name,
            fault_us={"crash": (crash / 2,), "timeout": (timeout - 1000,)},
            recovered_us={"crash": (crash,), "timeout": (timeout,)},
        )

    return RecoveryResult(
        rounds=1,
        contenders=(
            contender("spider-core-standby", standby_crash_us, standby_timeout_us),
            contender("spider-core", plain_crash_us, 400_000),
            contender("pebble", 60_000, 260_000),
        ),
        unable=dict(NOT_KILLABLE),
    )


def test_targets_met_and_unmet_from_hand_made_samples(tmp_path: Path) -> None:
    # Start p50 120 ms against a floor of 20 ms: 6x, unmet. Sync: ProcessPool 30 µs, SyncProcessPool
    # 33 µs, futures 300 µs: 0.11x, 1.10x, 0.10x, 0.11x, all met. Recovery: standby crash 4 ms (met),
    # timeout 210 ms (unmet); without standby 125 ms against start 120 + 10 ms (met).
    report = hand_made_report(
        tmp_path, sync=sync_result(30, 33, 300), recovery=recovery_result(4_000, 210_000, 125_000)
    )
    checked = {t.target: t for t in targets(report)}
    assert [t.met for t in checked.values()] == [False, True, True, True, True, True, False, True]
    assert checked['executor start (`ProcessPool.start()`) p50 ≤ 1.5x the floor (a fresh `python -c "import msgpack"`)'].measured == (
        '6.00x (start 120.0 ms, the floor (a fresh `python -c "import msgpack"`) 20.0 ms)'
    )
    assert checked["SyncProcessPool no-op p50 ≤ 1.2x ProcessPool"].measured.startswith("1.10x")
    assert checked["with standby, crash → next success p50 ≤ 5 ms"].measured == "4.0 ms"
    assert checked["without standby, crash → next success p50 ≤ executor start p50 + 10 ms"].measured == (
        "125.0 ms (start 120.0 ms, so the limit is 130.0 ms)"
    )
    assert "Targets" not in render_markdown(report)  # a development aid: only when asked for
    markdown = render_markdown(report, show_targets=True)
    lines = target_lines(markdown)
    assert [(target, met) for target, _, met in lines] == [
        (t.target, "met" if t.met else "unmet") for t in checked.values()
    ]
    sync_rows = table_rows(markdown, "sync")
    assert sync_rows["spider-core-sync"][3:] == ["33.0", "66.0", "66.0", "0.11", "1.10"]
    assert sync_rows["futures"][-2:] == ["1.00", "10.00"]
    recovery_rows = table_rows(markdown, "recovery")
    assert recovery_rows["spider-core-standby"] == ["crash", "1", "2.0", "4.0", "4.0", "4.0", "4.0"]
    for name in NOT_KILLABLE:
        assert f"- {name}: " in markdown
    data = report_to_json(report)
    assert [t["met"] for t in data["targets"]] == [t.met for t in checked.values()]
    assert data["recovery"]["contenders"]["spider-core"]["crash"]["recovered"]["p50"] == 125_000
    assert data["workloads"]["sync"]["futures"]["stats"]["e2e"]["p90"] == 600
    assert data["start_floor_us"]["stats"]["p50"] == 20_000


def test_the_call_path_targets_from_hand_made_samples(tmp_path: Path) -> None:
    # Cold: SyncProcessPool 33 µs over pipe-sync 20 µs is 1.65x (unmet, limit 1.5); ProcessPool
    # 30 µs over pipe-asyncio 25 µs is 1.2x (met, limit 1.3). Throughput (median tasks/s over
    # multiprocessing's 10,000/s): gather 1.1x (met), submit 0.7x (unmet), map 2.6x (met).
    def batches(name: str, rate: float) -> BatchResult:
        return BatchResult(name=name, workers=2, batch=1000, batch_s=(1000 / rate,) * 3)

    throughput = ThroughputResult(slots=2, batch=1000, rounds=3, contenders=(
        batches("spider-core", 11_000), batches("spider-core-map", 26_000),
        batches("spider-core-submit", 7_000), batches("multiprocessing", 10_000),
    ))
    report = hand_made_report(tmp_path, sync=sync_result(30, 33, 300, floors_us=(20, 25)), throughput=throughput)
    checked = {t.target: (t.measured, t.met) for t in targets(report)}
    assert checked["cold SyncProcessPool no-op p50 ≤ 1.5x pipe-sync"] == ("1.65x (spider-core-sync 33.0 µs, pipe-sync 20.0 µs)", False)
    assert checked["cold ProcessPool no-op p50 ≤ 1.3x pipe-asyncio"] == ("1.20x (spider-core 30.0 µs, pipe-asyncio 25.0 µs)", True)
    assert checked["`asyncio.gather` over `ProcessPool.execute`, tasks/s ≥ 1x multiprocessing.Pool"] == (
        "1.10x (spider-core 11000/s, multiprocessing 10000/s)", True
    )
    assert checked["`SyncProcessPool.submit` from 8 threads, tasks/s ≥ 0.8x multiprocessing.Pool"][1] is False
    assert checked["`ProcessPool.map`, tasks/s ≥ 2.5x multiprocessing.Pool"][1] is True
    without_peer = attrs.evolve(throughput, contenders=throughput.contenders[:3])
    assert not [t for t in targets(hand_made_report(tmp_path, throughput=without_peer)) if "tasks/s" in t.target]


def test_a_report_without_sync_or_recovery_checks_only_the_start(tmp_path: Path) -> None:
    assert [t.target.split(" p50")[0] for t in targets(hand_made_report(tmp_path))] == [
        "executor start (`ProcessPool.start()`)"
    ]
    assert len(target_lines(render_markdown(hand_made_report(tmp_path), show_targets=True))) == 1


def test_plot_of_hand_made_samples(tmp_path: Path) -> None:
    report = hand_made_report(tmp_path, sync=sync_result(30, 33, 300), recovery=recovery_result(4_000, 210_000, 125_000))
    plot, note = write_plot(report, tmp_path / PLOT_NAME)
    assert (plot, note) == (tmp_path / PLOT_NAME, None)
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_nothing_to_plot_without_samples(tmp_path: Path) -> None:
    report = hand_made_report(tmp_path, start_floor_us=())
    assert write_plot(report, tmp_path / PLOT_NAME) == (None, None)
    assert not (tmp_path / PLOT_NAME).exists()


def test_the_plot_has_a_throughput_panel_and_no_overlapping_tick_labels(tmp_path: Path) -> None:
    """An echo workload from 250 to 7000 µs, under two decades: matplotlib's own log axis
    labels its minor ticks there too (3x10^2, 4x10^2 ...), and they overlap."""
    echo = WorkloadResult(workload="echo", contenders=(
        ContenderResult(name="spider-core", samples={"e2e": (250.0, 300.0, 320.0, 420.0, 7000.0)}),
        ContenderResult(name="futures", samples={"e2e": (400.0, 480.0, 520.0, 700.0, 880.0)}),
    ))
    throughput = ThroughputResult(slots=2, batch=1000, rounds=2, contenders=(
        BatchResult(name="spider-core", workers=2, batch=1000, batch_s=(0.1, 0.08)),
        BatchResult(name="futures", workers=2, batch=1000, batch_s=(0.25, 0.2)),
    ))
    figure = draw(hand_made_report(tmp_path, workloads=(echo,), throughput=throughput))
    assert figure is not None
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    panels = {axes.get_title(): axes for axes in figure.axes}
    assert list(panels) == ["echo: per-call round trip", "executor start", "throughput: batches of 1000 no-ops, 2 workers"]
    for title, axes in panels.items():
        low, high = axes.get_xlim()
        shown = [label for label in axes.xaxis.get_ticklabels(which="both")
                 if label.get_visible() and label.get_text() and low <= label.get_position()[0] <= high]
        boxes = sorted((label.get_window_extent(renderer) for label in shown), key=lambda box: box.x0)
        assert len(boxes) >= 2, title
        assert all(left.x1 <= right.x0 for left, right in itertools.pairwise(boxes)), (title, [t.get_text() for t in shown])
    bars = panels["throughput: batches of 1000 no-ops, 2 workers"]
    assert [label.get_text() for label in bars.get_yticklabels()] == ["spider-core", "futures"]
    assert [patch.get_width() for patch in bars.patches] == pytest.approx([10000, 4000])  # the medians, nearest rank


def hide_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every import of matplotlib fail, as if it were not installed."""
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # None in sys.modules: ImportError


def test_without_matplotlib_the_report_says_how_to_get_the_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hide_matplotlib(monkeypatch)
    report = hand_made_report(tmp_path, sync=sync_result(30, 33, 300))
    assert write_plot(report, tmp_path / PLOT_NAME) == (None, NO_MATPLOTLIB)
    assert "pip install 'spider-core-pool[bench]'" in NO_MATPLOTLIB
    assert not (tmp_path / PLOT_NAME).exists()


@pytest.mark.slow
def test_sync_run_without_matplotlib_still_writes_the_report(
    package_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hide_matplotlib(monkeypatch)
    report = asyncio.run(
        run_benchmark(
            package_dir, quick=True, output_dir=tmp_path, workloads=("sync",), progress=False,
            calls=3, warmup=0, start_samples=1, show_targets=True,
        )
    )
    markdown = report.markdown_path.read_text()
    assert report.plot is None and report.plot_note == NO_MATPLOTLIB
    assert NO_MATPLOTLIB in markdown and PLOT_NAME + "](" not in markdown
    assert not (tmp_path / PLOT_NAME).exists()
    assert "## sync" in markdown and len(target_lines(markdown)) == 7  # the start, the sync pool's 4, the cold 2
    assert json.loads(report.json_path.read_text())["plot"] is None


@pytest.mark.slow
def test_sync_and_recovery_run_with_the_real_executor(package_dir: Path, tmp_path: Path) -> None:
    peers = ("pebble",)  # billiard notices a crash only after 10 s
    report = asyncio.run(
        run_benchmark(
            package_dir, quick=True, output_dir=tmp_path, workloads=("sync", "recovery"), peers=peers,
            progress=False, calls=4, warmup=1, start_samples=1, recovery_rounds=1, show_targets=True,
        )
    )
    assert report.workloads == () and report.throughput is None
    sync, recovery = report.sync, report.recovery
    assert sync is not None and recovery is not None
    assert [c.name for c in sync.contenders] == [
        "spider-core", "spider-core-sync", "spider-core-sync-call", "futures", "pipe-sync", "pipe-asyncio"
    ]
    assert all(len(c.samples["e2e"]) == 4 for c in sync.contenders)
    pebble = importlib.util.find_spec("pebble") is not None
    expected = ["spider-core-standby", "spider-core", "spider-core-forkserver"] + (["pebble"] if pebble else [])
    assert [c.name for c in recovery.contenders] == expected
    assert len(report.notes) == (0 if pebble else 1)
    for contender in recovery.contenders:
        for fault in ("crash", "timeout"):
            (reported,), (recovered,) = contender.fault_us[fault], contender.recovered_us[fault]
            assert 0 < reported <= recovered
        assert contender.recovered_us["timeout"][0] >= 200_000  # the hard timeout is a lower bound
    assert len(report.start_us) == len(report.start_floor_us) == 1

    markdown = report.markdown_path.read_text()
    assert "## sync" in markdown and "## recovery" in markdown
    assert len(target_lines(markdown)) == 10
    assert set(table_rows(markdown, "recovery")) == {"contender", "---", *expected}
    data = json.loads(report.json_path.read_text())
    assert list(data["workloads"]) == ["sync"] and data["recovery"]["rounds"] == 1
    assert report.plot == tmp_path / PLOT_NAME and report.plot.read_bytes().startswith(b"\x89PNG")
    assert f"[{PLOT_NAME}]({PLOT_NAME})" in markdown and data["plot"] == PLOT_NAME

    assert [m.name for m in report.start_methods] == ["exec", "forkserver"]
    rows = table_rows(markdown, "Executor")  # its "### Start methods" table is in the section
    for method in report.start_methods:
        assert len(method.start_one_us) == len(method.start_all_us) == 1 and method.slots == 8
        assert method.pss_kib is not None and method.rss_kib is not None and 0 < method.pss_kib <= method.rss_kib
        one, every = method.start_one_us[0], method.start_all_us[0]
        assert rows[method.name] == [f"{one / 1000:.1f}", f"{every / 1000:.1f}", f"{every / one:.2f}",
                                     f"{method.rss_kib / 1024:.1f}", f"{method.pss_kib / 1024:.1f}"]
        assert data["start_methods"][method.name]["pss_kib"] == method.pss_kib


def test_recovery_options() -> None:
    args = build_parser().parse_args(["--workloads", "sync,recovery", "--recovery-rounds", "4"])
    assert (args.workloads, args.recovery_rounds) == (("sync", "recovery"), 4)
    assert build_parser().parse_args([]).recovery_rounds is None
    assert (QUICK_RECOVERY_ROUNDS, DEFAULT_RECOVERY_ROUNDS) == (3, 10)


def test_recovery_rounds_below_one(package_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--recovery-rounds", "0"])
    assert "argument --recovery-rounds: '0' must be at least 1" in capsys.readouterr().err
    with pytest.raises(ValueError, match="recovery_rounds must be at least 1"):
        asyncio.run(run_benchmark(package_dir, quick=True, output_dir=tmp_path, progress=False, recovery_rounds=0))


# -- the payload workload ---------------------------------------------------------------------


def test_payload_sizes_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["--payload-sizes", "1KiB, 64kib,3MiB,100"]).payload_sizes == (1024, 65536, 3 << 20, 100)
    assert build_parser().parse_args([]).payload_sizes is None
    for bad, said in (("1KB", "'1KB' is not a size: give bytes, or a number with KiB, MiB or GiB"), ("8", "at least 9 bytes")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--payload-sizes", bad])
        assert said in capsys.readouterr().err


@pytest.mark.slow
def test_payload_runs_with_the_real_executor(package_dir: Path, tmp_path: Path) -> None:
    from spider_core.bench.payload import PLOT_NAME as PAYLOAD_PLOT

    report = asyncio.run(
        run_benchmark(
            package_dir, quick=True, output_dir=tmp_path, workloads=("payload",), peers=("futures",),
            progress=False, start_samples=1, payload_sizes=(1024, 70_000),
        )
    )
    payload = report.payload
    assert payload is not None and payload.sizes == (1024, 70_000) and payload.rounds == 3
    assert payload.names == ["spider-core", "spider-core-shm", "pipe", "futures"]
    for samples in payload.samples:
        assert len(samples.e2e_us) == 3 and all(us > 0 for us in samples.e2e_us)
        assert len(samples.executor_us) == (3 if samples.name.startswith("spider-core") else 0)
        assert len(samples.parent_peak_kib) == 3
    markdown = report.markdown_path.read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| 68 KiB |")]
    assert [row.split("|")[2].strip() for row in rows] == ["spider-core", "spider-core-shm", "pipe", "futures"]
    assert f"![round trip against payload size]({PAYLOAD_PLOT})" in markdown
    assert (tmp_path / PAYLOAD_PLOT).read_bytes().startswith(b"\x89PNG")
    data = json.loads(report.json_path.read_text())
    assert data["payload"]["sizes"] == [1024, 70_000] and len(data["payload"]["samples"]) == 8


def test_payload_targets_include_shared_memory_at_64_mib() -> None:
    from spider_core.bench.payload import MIB, OURS, OURS_SHM, PIPE, PayloadResult, PayloadSamples
    from spider_core.bench.payload_report import payload_targets

    def samples(name: str, e2e_ms: float, executor_ms: float | None) -> PayloadSamples:
        executor = () if executor_ms is None else (executor_ms * 1000,) * 5
        return PayloadSamples(name=name, size=64 * MIB, e2e_us=(e2e_ms * 1000,) * 5, executor_us=executor)

    result = PayloadResult(
        sizes=(64 * MIB,), rounds=5,
        samples=(samples(OURS, 500, 100), samples(OURS_SHM, 300, 100), samples(PIPE, 250, None)),
    )
    targets = {target: (measured, met) for target, measured, met in payload_targets(result)}
    assert targets["spider-core 64 MiB overhead <= 2.0x the pipe's round trip"] == ("1.60x", True)
    assert targets["spider-core-shm 64 MiB overhead <= 1.0x the pipe's round trip"] == ("0.80x", True)
