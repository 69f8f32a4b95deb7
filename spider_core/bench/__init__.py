"""Benchmark: per-call latency and throughput of a ProcessPool against other Python process pools.

For the latency workloads every contender runs the same work with ONE worker and sequential
calls. The contenders run side by side in one run, interleaved round-robin (one call through
each in turn, the starting contender rotating every round), so machine noise hits all of them
alike.

Contenders (``PEERS`` names the optional ones):

- ``spider-core``: :class:`spider_core.ProcessPool` running the C package
  ``integration_test_tasks`` (always measured; the ratios are relative to it);
- ``pipe-sync`` / ``pipe-asyncio``: the floor, a child process answering 4-byte big-endian
  length-prefixed msgpack frames on its stdin/stdout, driven with blocking ``os.read`` /
  ``os.write``, or from the event loop with one ``add_reader`` callback and one future per call;
- ``futures``, ``multiprocessing``, ``pebble``, ``loky``, ``billiard``: the peers, calling the
  module-level :func:`peer_noop` / :func:`peer_echo`. Peers that are not installed are skipped
  with a note in the report (``pip install pebble loky billiard``).

Workloads: ``noop`` (no inputs, no outputs) and ``echo`` (100 path-like strings in, slept on
for a nominal 50 µs, the same strings out), and ``throughput``: batches of no-op tasks, every
task of a batch queued at once, through N workers (``slots``, default 2) per contender. Its
contenders are spider-core with ``PoolConfig(slots=N)`` (``asyncio.gather`` over
``execute``; ``spider-core-map``, the same through ``ProcessPool.map``; ``spider-core-slots1``,
the gather with one slot, for reference) and the blocking peers with N workers. Each round runs
one batch through every contender, in a shuffled order; the report gives tasks per second
(median, min, max over the rounds) and ours / peer of the medians.

Workload ``sync``: the no-op through ``SyncProcessPool`` (``execute`` and ``call``) beside
``ProcessPool`` and ProcessPoolExecutor (fork), interleaved like the latency workloads, with the
ratios the issue's targets are about. Workload ``recovery`` (not in the default set: it takes
minutes): from submitting a task that crashes its worker, or outlives a 200 ms hard timeout,
until the next no-op returns, for spider-core with and without a standby executor, pebble and
billiard (:mod:`~spider_core.bench.recovery`). Workload ``payload`` (not in the default set
either: minutes and gigabytes): one bytes object echoed from 1 KiB to 256 MiB through
spider-core, a raw pipe, ProcessPoolExecutor, multiprocessing and loky
(:mod:`~spider_core.bench.payload`). Every run times executor starts beside their
floor, a fresh ``python -c "import msgpack"``; the report checks the issue's targets (one line
each: met or unmet) and links ``latency.png``, the CDF of every contender's samples per
workload (:mod:`~spider_core.bench.plot`, with matplotlib from the ``bench`` extra).

For spider-core each call also records, in µs: the executor time (``Success.elapsed_us``,
measured around the package call inside the executor), the executor internal time (executor
time minus the workload's nominal work: 50 µs for echo, 0 for noop) and the IPC overhead (E2E
minus executor time). Percentiles are nearest-rank (:func:`percentile`).

Use :func:`run_benchmark` from Python or :func:`main` from a script.

The package's modules, each with one job: :mod:`~spider_core.bench.stats` (percentiles and
:class:`Stats`), :mod:`~spider_core.bench.workloads` (what one call does),
:mod:`~spider_core.bench.floor` (the raw pipe ping-pong and its child),
:mod:`~spider_core.bench.contenders` (spider-core, the floors and the peers),
:mod:`~spider_core.bench.throughput` (the throughput workload's contenders),
:mod:`~spider_core.bench.recovery` (the recovery workload's contenders),
:mod:`~spider_core.bench.payload` (the payload workload: contenders, run, report section, plot),
:mod:`~spider_core.bench.plot` (the latency plot),
:mod:`~spider_core.bench.starts` (executor starts and their floor),
:mod:`~spider_core.bench.progress` (the progress line),
:mod:`~spider_core.bench.runner` (:func:`run_benchmark`), :mod:`~spider_core.bench.environment`
(memory and machine probes), :mod:`~spider_core.bench.results` (what a run measured),
:mod:`~spider_core.bench.targets` (the project's targets, checked against a run),
:mod:`~spider_core.bench.report` (the results, as markdown and JSON) and
:mod:`~spider_core.bench.cli` (the command line). This module re-exports their public
names.
"""

from __future__ import annotations

from spider_core.bench.cli import BenchError, add_arguments, build_parser, main, run_from_args
from spider_core.bench.contenders import (
    HARD_TIMEOUT,
    OUR_METRICS,
    OUR_VARIANTS,
    OURS,
    OURS_SYNC,
    OURS_SYNC_CALL,
    PACKAGE,
    PEERS,
    Contender,
)
from spider_core.bench.floor import floor_child_main
from spider_core.bench.plot import NO_MATPLOTLIB, PLOT_NAME, draw, write_plot
from spider_core.bench.recovery import FAULTS, NOT_KILLABLE, OURS_STANDBY, RECOVERY_PEERS, RECOVERY_TIMEOUT_S
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
from spider_core.bench.runner import (
    DEFAULT_BATCH,
    DEFAULT_CALLS,
    DEFAULT_RECOVERY_ROUNDS,
    DEFAULT_ROUNDS,
    DEFAULT_SLOTS,
    DEFAULT_START_SAMPLES,
    DEFAULT_WARMUP,
    QUICK_BATCH,
    QUICK_CALLS,
    QUICK_RECOVERY_ROUNDS,
    QUICK_ROUNDS,
    QUICK_START_SAMPLES,
    QUICK_WARMUP,
    run_benchmark,
)
from spider_core.bench.stats import Stats, percentile
from spider_core.bench.targets import Target, targets
from spider_core.bench.throughput import OURS_MAP, OURS_ONE_SLOT, BatchContender
from spider_core.bench.workloads import (
    DEFAULT_WORKLOADS,
    ECHO_SLEEP_S,
    ECHO_STRINGS,
    LATENCY_WORKLOADS,
    RECOVERY,
    SYNC,
    SYNC_WORKLOAD,
    THROUGHPUT,
    WORKLOAD_SPECS,
    WORKLOADS,
    Workload,
    peer_crash,
    peer_echo,
    peer_noop,
    peer_sleep,
)

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_CALLS",
    "DEFAULT_RECOVERY_ROUNDS",
    "DEFAULT_ROUNDS",
    "DEFAULT_SLOTS",
    "DEFAULT_START_SAMPLES",
    "DEFAULT_WARMUP",
    "DEFAULT_WORKLOADS",
    "ECHO_SLEEP_S",
    "ECHO_STRINGS",
    "FAULTS",
    "HARD_TIMEOUT",
    "LATENCY_WORKLOADS",
    "NOT_KILLABLE",
    "NO_MATPLOTLIB",
    "OURS",
    "OURS_MAP",
    "OURS_ONE_SLOT",
    "OURS_STANDBY",
    "OURS_SYNC",
    "OURS_SYNC_CALL",
    "OUR_METRICS",
    "OUR_VARIANTS",
    "PACKAGE",
    "PEERS",
    "PLOT_NAME",
    "QUICK_BATCH",
    "QUICK_CALLS",
    "QUICK_RECOVERY_ROUNDS",
    "QUICK_ROUNDS",
    "QUICK_START_SAMPLES",
    "QUICK_WARMUP",
    "RECOVERY",
    "RECOVERY_PEERS",
    "RECOVERY_TIMEOUT_S",
    "SYNC",
    "SYNC_WORKLOAD",
    "THROUGHPUT",
    "WORKLOADS",
    "WORKLOAD_SPECS",
    "BatchContender",
    "BatchResult",
    "BenchError",
    "BenchReport",
    "Contender",
    "ContenderResult",
    "RecoveryResult",
    "RecoverySamples",
    "Stats",
    "Target",
    "ThroughputResult",
    "Workload",
    "WorkloadResult",
    "add_arguments",
    "build_parser",
    "draw",
    "floor_child_main",
    "main",
    "peer_crash",
    "peer_echo",
    "peer_noop",
    "peer_sleep",
    "percentile",
    "render_markdown",
    "report_to_json",
    "run_benchmark",
    "run_from_args",
    "targets",
    "write_plot",
]
