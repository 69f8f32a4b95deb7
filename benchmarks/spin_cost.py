"""What the adaptive spin costs: CPU seconds per task, pool and executors together, on a mix
of 1 ms tasks and no-ops, spin (``spin_us=300``) against no spin (``spin_us=0``).

``python benchmarks/spin_cost.py [--tasks N] [--runs R] [--slots S] [--callers C]``

Each run starts a fresh ``ProcessPool`` (``slots`` executors) and has ``callers`` coroutines
each make calls one after another, alternating ``sleep_ms(1)`` and ``noop``, until ``tasks``
are done; it reports the wall time, tasks per second and CPU seconds per task (the parent's
user + system time over the run, plus the executors', which are reaped by ``close()``). The
two settings alternate run by run, so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from spider_core import ExecuteRequest, PoolConfig, ProcessPool, Success
from spider_core.build import build_package

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "integration_test_tasks"
MIX = (ExecuteRequest(package=PACKAGE, task="sleep_ms", inputs=[1]), ExecuteRequest(package=PACKAGE, task="noop"))


def cpu_seconds() -> tuple[float, float]:
    """(this process, its reaped children), user + system."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


async def one_run(package_dir: Path, spin_us: int, tasks: int, slots: int, callers: int) -> tuple[float, float]:
    """(tasks per second, CPU seconds per task)."""
    config = PoolConfig(package_dir=package_dir, log_dir=None, slots=slots, spin_us=spin_us, default_timeout=10)
    before = cpu_seconds()
    async with ProcessPool(config) as pool:
        left = tasks

        async def caller(index: int) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                outcome = await pool.execute(MIX[(left + index) % 2])
                if not isinstance(outcome, Success):
                    raise RuntimeError(f"a task did not succeed: {outcome!r}")

        start = time.perf_counter()
        await asyncio.gather(*(caller(i) for i in range(callers)))
        wall = time.perf_counter() - start
    after = cpu_seconds()
    used = (after[0] - before[0]) + (after[1] - before[1])
    return tasks / wall, used / tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--callers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        package_dir = Path(tmp)
        build_package(REPO / "task_packages" / PACKAGE, package_dir)
        results: dict[int, list[tuple[float, float]]] = {0: [], 300: []}
        for _ in range(args.runs):
            for spin_us in results:
                results[spin_us].append(asyncio.run(one_run(package_dir, spin_us, args.tasks, args.slots, args.callers)))
    print(f"{args.tasks} tasks (1 ms and no-op, alternating), slots={args.slots}, {args.callers} callers, "
          f"{os.cpu_count()} CPUs; {args.runs} runs each, medians")
    print("| spin_us | tasks/s | CPU ms per task | each run: tasks/s, CPU ms per task |")
    print("| ---: | ---: | ---: | --- |")
    for spin_us, runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs) * 1e3
        each = "; ".join(f"{r:,.0f}, {c * 1e3:.3f}" for r, c in runs)
        print(f"| {spin_us} | {rate:,.0f} | {cpu:.3f} | {each} |")
    base = statistics.median(c for _, c in results[0])
    spun = statistics.median(c for _, c in results[300])
    print(f"spin / no spin, CPU per task: {spun / base:.3f}")


if __name__ == "__main__":
    main()
