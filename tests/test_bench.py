"""The benchmark's statistics, and one tiny run against the real executor (no timing asserted)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from spider_core.bench import OUR_METRICS, Stats, percentile, run_benchmark

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


def test_unknown_peer_is_refused(package_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown peer 'ray'"):
        asyncio.run(run_benchmark(package_dir, quick=True, output_dir=tmp_path, peers=("ray",), progress=False))
