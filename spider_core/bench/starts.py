"""Executor starts: ``ProcessPool.start()`` of fresh pools (spawn until every executor is
ready) timed beside their floor, a fresh interpreter that imports msgpack, and per start method
with one and :data:`START_METHOD_SLOTS` slots, with the memory the started pool holds."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from spider_core.bench.environment import _executor_processes, _memory_kib
from spider_core.bench.progress import Progress
from spider_core.bench.results import StartMethodResult
from spider_core.models import PoolConfig
from spider_core.pool import ProcessPool

#: The floor of an executor start: a fresh interpreter that imports msgpack, then exits.
START_FLOOR_ARGV = (sys.executable, "-c", "import msgpack")


async def measure_start(package_dir: Path, samples: int, progress: Progress) -> tuple[list[float], list[float]]:
    """Time ``ProcessPool.start()`` (spawn until Ready) of ``samples`` fresh pools, and as many
    runs of the floor (``START_FLOOR_ARGV``, spawn until exit), alternating which goes first."""
    durations: list[float] = []
    floor: list[float] = []
    for i in range(samples):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            if which == 0:
                pool = ProcessPool(PoolConfig(package_dir=package_dir, log_dir=None))
                start = time.perf_counter()
                await pool.start()
                durations.append((time.perf_counter() - start) * 1e6)
                await pool.close()
            else:
                start = time.perf_counter()
                try:
                    subprocess.run(START_FLOOR_ARGV, check=True, stdin=subprocess.DEVNULL, timeout=60)
                except subprocess.SubprocessError as e:
                    raise RuntimeError(f"the executor start's floor, {' '.join(START_FLOOR_ARGV)}, failed: {e}") from None
                floor.append((time.perf_counter() - start) * 1e6)
        progress.show("executor start", i + 1, samples)
    return durations, floor


#: The larger pool of the start-method measure (the issue's: 8 slots against 1).
START_METHOD_SLOTS = 8


async def measure_start_methods(package_dir: Path, samples: int, progress: Progress) -> list[StartMethodResult]:
    """Time ``ProcessPool.start()`` with 1 and ``START_METHOD_SLOTS`` slots for each start
    method, ``samples`` times each, alternating which method goes first; after the last
    larger start, read the memory of that pool's processes (idle, just started)."""
    methods = ("exec", "forkserver")
    times: dict[tuple[str, int], list[float]] = {(m, n): [] for m in methods for n in (1, START_METHOD_SLOTS)}
    memory: dict[str, tuple[int, int] | None] = {}
    for i in range(samples):
        for method in methods if i % 2 == 0 else methods[::-1]:
            for slots in (1, START_METHOD_SLOTS):
                pool = ProcessPool(PoolConfig(package_dir=package_dir, log_dir=None, slots=slots, start_method=method))
                start = time.perf_counter()
                await pool.start()
                times[method, slots].append((time.perf_counter() - start) * 1e6)
                if slots > 1 and i == samples - 1:
                    memory[method] = _memory_kib(_executor_processes())
                await pool.close()
        progress.show("start methods", i + 1, samples)
    results = []
    for method in methods:
        rss, pss = memory.get(method) or (None, None)
        results.append(StartMethodResult(
            name=method, slots=START_METHOD_SLOTS, start_one_us=tuple(times[method, 1]),
            start_all_us=tuple(times[method, START_METHOD_SLOTS]), rss_kib=rss, pss_kib=pss,
        ))
    return results
