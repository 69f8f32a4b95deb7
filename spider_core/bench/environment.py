"""Probes of the machine the benchmark runs on: the resident memory of a process (VmRSS from
``/proc/<pid>/status``, None where there is no /proc), the resident and proportional memory of
processes (RSS and PSS from ``/proc/<pid>/smaps_rollup``: PSS counts each shared page divided
among the processes sharing it, so forked executors that share a fork server's pages add up to
what they really cost) and the environment the report records
(date, Python version, platform, CPU count and CPU affinity).
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any


def _idle_rss_kib(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def _memory_kib(pids: list[int]) -> tuple[int, int] | None:
    """The summed RSS and PSS of ``pids``, in KiB; None if one cannot be read."""
    rss = pss = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            return None
        fields = {line.split(":")[0]: line.split()[1] for line in rollup.splitlines()[1:] if ":" in line}
        rss += int(fields.get("Rss", 0))
        pss += int(fields.get("Pss", 0))
    return rss, pss


def _executor_processes() -> list[int]:
    """This process's executors: its descendants that run ``spider_core.executor`` (a fork
    server and the executors it forked included; the pool's guard is not one)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"spider_core.executor" in (entry / "cmdline").read_bytes():
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found = {os.getpid()}
    while more := {pid for pid, parent in parents.items() if parent in found} - found:
        found |= more
    return sorted(found - {os.getpid()})


def _environment() -> dict[str, Any]:
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "affinity": affinity,
    }
