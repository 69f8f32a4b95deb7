"""What spider-core adds to Dask's own per-task cost: ``python benchmarks/dask_overhead.py``.

Needs ``pip install -e '.[dask]'``. One run, interleaved rounds (the first contender rotates
each round, so machine noise hits all alike), medians over rounds. Each round runs ``--tasks``
no-op tasks through each contender and times the whole batch, submission to last result:

- ``spider-dask``: ``spider_core.dask.map`` of ``noop`` requests on a 2-worker
  ``LocalCluster`` (worker processes, 2 threads each, a ``slots=2`` pool on each worker);
- ``dask-plain``: ``client.map`` of a Python no-op function on the same cluster;
- ``dask-outcome``: ``client.map`` of a Python function that takes an ``ExecuteRequest`` and
  returns a ready-made ``Success``, with spider's keys: Dask carrying spider's request and
  outcome without running anything, to split spider-dask's extra cost into what Dask moves and
  what the pool does;
- ``local-pool``: ``SyncProcessPool(slots=2).map`` of the same requests in this process.

Per-task time is wall time / tasks (the inverse of throughput). The ratio that matters is
spider-dask / dask-plain (goal: at most 1.3), given from the medians and round by round (the
two ran back to back in each round; Dask's own time moves 20-30% between rounds here), and
the CPU each contender used per task, by process kind (see :func:`cpu_snapshot`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from distributed import Client, LocalCluster

import spider_core as sc
from spider_core import dask as sd
from spider_core.build import build_package

ROOT = Path(__file__).resolve().parent.parent
NOOP = sc.ExecuteRequest(package="integration_test_tasks", task="noop")
DONE = sc.Success(outputs=b"\x00\x00\x00\x00", elapsed_us=1, executor_id=1)


CATEGORIES = ("client+scheduler", "dask workers", "executors")
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_snapshot() -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process (the client and, with a
    LocalCluster, the scheduler), by the Dask nannies and workers, and by the executors (the
    workers' and the local pool's): every process descending from this one, by kind."""
    me = os.getpid()
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK

    def descends(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == me:
                return True
        return False

    totals = dict.fromkeys(CATEGORIES, 0.0)
    totals["client+scheduler"] = cpu.get(me, 0.0)
    for pid, seconds in cpu.items():
        if pid == me or not descends(pid):
            continue
        try:
            executor = b"spider_core.executor" in open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        totals["executors" if executor else "dask workers"] += seconds
    return totals


def noop_fn(i: int) -> None:
    return None


def outcome_fn(request: sc.ExecuteRequest, hard_timeout: float | None, soft_timeout: float | None) -> sc.Outcome:
    return DONE


def run_spider_dask(client: Client, n: int) -> float:
    start = time.perf_counter()
    futures = sd.map(client, [NOOP] * n, 10)
    outcomes = client.gather(futures)
    elapsed = time.perf_counter() - start
    assert len(outcomes) == n and all(type(o) is sc.Success for o in outcomes)
    del futures
    return elapsed


def run_dask_plain(client: Client, n: int) -> float:
    start = time.perf_counter()
    futures = client.map(noop_fn, range(n), pure=False)
    client.gather(futures)
    elapsed = time.perf_counter() - start
    del futures
    return elapsed


def run_dask_outcome(client: Client, n: int) -> float:
    start = time.perf_counter()
    keys = [f"integration_test_tasks.noop-{uuid.uuid4().hex}" for _ in range(n)]
    futures = client.map(outcome_fn, [NOOP] * n, [10] * n, [None] * n, key=keys, pure=False)
    client.gather(futures)
    elapsed = time.perf_counter() - start
    del futures
    return elapsed


def run_local_pool(pool: sc.SyncProcessPool, n: int) -> float:
    start = time.perf_counter()
    outcomes = list(pool.map([NOOP] * n, 10))
    elapsed = time.perf_counter() - start
    assert len(outcomes) == n
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks per contender per round (2000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (5)")
    parser.add_argument("--package-dir", type=Path, help="a built package dir (default: build one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        package_dir = args.package_dir
        if package_dir is None:
            package_dir = Path(tmp) / "packages"
            build_package(ROOT / "task_packages" / "integration_test_tasks", package_dir)
        config = sc.PoolConfig(package_dir=package_dir, slots=2, default_timeout=10)
        with (
            LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster,
            Client(cluster) as client,
            sc.SyncProcessPool(config) as pool,
        ):
            client.register_plugin(sd.SpiderWorkerPlugin(config))
            contenders = {
                "spider-dask": lambda n: run_spider_dask(client, n),
                "dask-plain": lambda n: run_dask_plain(client, n),
                "dask-outcome": lambda n: run_dask_outcome(client, n),
                "local-pool": lambda n: run_local_pool(pool, n),
            }
            for run in contenders.values():  # warm up: imports, connections, executors
                run(min(200, args.tasks))
            samples: dict[str, list[float]] = {name: [] for name in contenders}
            cpu: dict[str, dict[str, list[float]]] = {name: {c: [] for c in CATEGORIES} for name in contenders}
            names = list(contenders)
            for r in range(args.rounds):
                order = names[r % len(names):] + names[: r % len(names)]
                for name in order:
                    before = cpu_snapshot()
                    samples[name].append(contenders[name](args.tasks) / args.tasks * 1e6)
                    after = cpu_snapshot()
                    for c in CATEGORIES:
                        cpu[name][c].append((after[c] - before[c]) / args.tasks * 1e6)
                print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {samples[n][-1]:.0f} µs" for n in names),
                      file=sys.stderr)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    plain = medians["dask-plain"]
    print(f"\n{args.tasks} no-op tasks per contender per round, {args.rounds} rounds, medians\n")
    print("| contender | per-task µs (wall / tasks) | tasks/s | / dask-plain | rounds µs |")
    print("|---|---:|---:|---:|---|")
    for name in names:
        m = medians[name]
        rounds = ", ".join(f"{v:.0f}" for v in samples[name])
        print(f"| {name} | {m:.0f} | {1e6 / m:,.0f} | {m / plain:.2f} | {rounds} |")
    paired = [s / p for s, p in zip(samples["spider-dask"], samples["dask-plain"], strict=True)]
    print(f"\nspider-dask / dask-plain: {medians['spider-dask'] / plain:.2f} (goal <= 1.3); per round "
          f"{', '.join(f'{r:.2f}' for r in paired)}, median {statistics.median(paired):.2f}")
    print("\nCPU per task (µs, user + system, medians over rounds; 2 CPUs, so wall >= CPU / 2):\n")
    print("| contender | " + " | ".join(CATEGORIES) + " | total |")
    print("|---|" + "---:|" * (len(CATEGORIES) + 1))
    for name in names:
        parts = [statistics.median(cpu[name][c]) for c in CATEGORIES]
        totals = [sum(cpu[name][c][i] for c in CATEGORIES) for i in range(args.rounds)]
        print(f"| {name} | " + " | ".join(f"{v:.0f}" for v in parts) + f" | {statistics.median(totals):.0f} |")
    print(f"\nof spider-dask's extra {medians['spider-dask'] - plain:.0f} µs per task: "
          f"{medians['dask-outcome'] - plain:.0f} µs Dask moving the request, key and outcome, "
          f"{medians['spider-dask'] - medians['dask-outcome']:.0f} µs the pool on the worker")
    return 0


if __name__ == "__main__":
    sys.exit(main())
