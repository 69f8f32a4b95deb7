"""The benchmark's statistics, and one tiny run against the real executor (no timing asserted)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest

from spider_core.bench import (
    DEFAULT_BATCH,
    DEFAULT_ROUNDS,
    DEFAULT_SLOTS,
    OUR_METRICS,
    WORKLOADS,
    BatchResult,
    BenchReport,
    Stats,
    ThroughputResult,
    build_parser,
    percentile,
    render_markdown,
    report_to_json,
    run_benchmark,
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
    assert stats == Stats(count=10, avg=5.5, p50=5, p95=10, p99=10, min=1, max=10)


def test_stats_single_sample() -> None:
    assert Stats.of([3.0]) == Stats(count=1, avg=3.0, p50=3.0, p95=3.0, p99=3.0, min=3.0, max=3.0)


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
    with pytest.raises(ValueError, match="unknown workload 'bogus'; choose from noop, echo, throughput"):
        asyncio.run(run_benchmark(package_dir, quick=True, output_dir=tmp_path, workloads=("bogus",), progress=False))


@pytest.mark.parametrize("option", ["slots", "batch", "rounds"])
def test_throughput_counts_below_one_are_refused(package_dir: Path, tmp_path: Path, option: str) -> None:
    with pytest.raises(ValueError, match="slots, batch and rounds must be at least 1"):
        asyncio.run(run_benchmark(package_dir, quick=True, output_dir=tmp_path, progress=False, **{option: 0}))


# -- the throughput workload ------------------------------------------------------------------


def test_throughput_options() -> None:
    args = build_parser().parse_args([])
    assert args.workloads == WORKLOADS and "throughput" in WORKLOADS
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
    expected = ["spider-core", "spider-core-map", "spider-core-slots1", *installed]
    result = report.throughput
    assert report.workloads == () and result is not None
    assert (result.slots, result.batch, result.rounds) == (2, 30, 3)
    assert [c.name for c in result.contenders] == expected
    assert [c.workers for c in result.contenders] == [2, 2, 1] + [2] * len(installed)
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
        ("multiprocessing", 1),
    ]
