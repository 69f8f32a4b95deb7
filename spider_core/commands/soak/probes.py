"""What the soak's parent process holds, read from ``/proc``: its open file descriptors, its
child processes, its resident memory, and any process's state."""

from __future__ import annotations

import os


def open_descriptors() -> int:
    """How many file descriptors this process has open (``/proc/self/fd``)."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself holds


def child_processes() -> list[int]:
    """The pids of this process's children, zombies included (read from ``/proc``)."""
    me = os.getpid()
    children = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = process_stat(int(entry.name))
            if stat is not None and stat[1] == me:
                children.append(int(entry.name))
    return children


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, parent pid, start time)`` of process ``pid`` from ``/proc``; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def resident_bytes() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
