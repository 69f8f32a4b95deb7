"""No orphans: SIGKILL the parent of a pool while its tasks run, and no executor (nor a standby)
and no process a task forked is left alive. The executors die with their parent
(``PR_SET_PDEATHSIG``, see ``spider_core.protocol.die_with_parent``)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from spider_core.commands.soak.probes import process_stat

PARENT = textwrap.dedent("""\
    import asyncio, json, sys
    import spider_core as sc

    async def main(package_dir, standby, marks, start_method):
        config = sc.PoolConfig(
            package_dir=package_dir, slots=2, standby=standby, default_timeout=600, start_method=start_method
        )
        async with sc.ProcessPool(config) as pool:
            grandchildren = [(await pool.call("integration_test_tasks", "fork_child", 600_000))[0] for _ in range(2)]
            running = [
                asyncio.ensure_future(pool.call("integration_test_tasks", "mark_and_sleep", f"{marks}/{i}", 600_000))
                for i in range(2)
            ]
            print(json.dumps({"grandchildren": grandchildren}), flush=True)
            await asyncio.gather(*running)

    asyncio.run(main(sys.argv[1], sys.argv[2] == "standby", sys.argv[3], sys.argv[4]))
""")


def _descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children, their children, ...)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = process_stat(int(entry.name))
            if stat is not None:
                parents.setdefault(stat[1], []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int, start: int) -> bool:
    """Whether process ``pid`` started at ``start`` still runs (a zombie has ended)."""
    stat = process_stat(pid)
    return stat is not None and stat[2] == start and stat[0] not in "ZX"


def _is_guard(pid: int) -> bool:
    """Whether ``pid`` is a pool's guard process (``spider_core.pool.guard``)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"os.killpg" in f.read()
    except OSError:
        return False


def _wait_for(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Orphans:
    """A parent process running a pool (slots=2, optionally with standbys) whose two slots run
    a task each, after two tasks forked a grandchild each; :meth:`kill` SIGKILLs the parent.
    With a fork server, the server counts as one more executor process."""

    def __init__(self, package_dir: Path, tmp_path: Path, standby: bool, start_method: str) -> None:
        script = tmp_path / "parent.py"
        script.write_text(PARENT)
        self.marks = tmp_path / "marks"
        self.marks.mkdir()
        self.parent = subprocess.Popen(
            [sys.executable, str(script), str(package_dir), "standby" if standby else "slots", str(self.marks),
             start_method],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.executors = 4 if standby else 2  # with standby=True each slot has an idle one too
        self.executors += start_method == "forkserver"
        self.recorded: dict[int, int] = {}  # pid -> start time
        self.grandchildren: list[int] = []

    def start(self) -> None:
        ready, _, _ = select.select([self.parent.stdout], [], [], 60)
        assert ready, "the parent did not report its grandchildren within 60 s"
        line = self.parent.stdout.readline()  # type: ignore[union-attr]
        assert line, self.parent.stderr.read().decode()  # type: ignore[union-attr]
        self.grandchildren = json.loads(line)["grandchildren"]
        _wait_for(lambda: len(list(self.marks.iterdir())) == 2, 60, "both slots to run a task")
        _wait_for(lambda: len(set(_descendants(self.parent.pid)) - set(self.grandchildren)) >= self.executors, 60,
                  f"{self.executors} executors")
        for pid in _descendants(self.parent.pid):
            stat = process_stat(pid)
            if stat is not None:
                self.recorded[pid] = stat[2]
        self.guards = [pid for pid in self.recorded if _is_guard(pid)]
        assert set(self.grandchildren) <= set(self.recorded) and len(self.guards) == 1
        assert len(self.recorded) == self.executors + len(self.grandchildren) + 1

    def kill(self) -> None:
        self.parent.send_signal(signal.SIGKILL)
        self.parent.wait(10)

    def alive(self, which: str) -> list[int]:
        """The recorded executors (``which="executor"``), grandchildren or guard still alive."""
        if which == "grandchild":
            pids = self.grandchildren
        elif which == "guard":
            pids = self.guards
        else:
            pids = [pid for pid in self.recorded if pid not in self.grandchildren and pid not in self.guards]
        return [pid for pid in pids if _alive(pid, self.recorded[pid])]

    def wait_gone(self, which: str, timeout: float) -> list[int]:
        """Poll until none of ``which`` is alive or ``timeout`` passes; the survivors."""
        deadline = time.monotonic() + timeout
        while self.alive(which) and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.alive(which)

    def close(self) -> None:
        if self.parent.poll() is None:
            self.parent.kill()
            self.parent.wait()
        for pid, start in self.recorded.items():  # never leave what the test started
            if _alive(pid, start):
                os.kill(pid, signal.SIGKILL)
        for stream in (self.parent.stdout, self.parent.stderr):
            stream.close()  # type: ignore[union-attr]


@pytest.fixture
def orphans(request: pytest.FixtureRequest, package_dir: Path, tmp_path: Path, start_method: str) -> Iterator[Orphans]:
    scenario = Orphans(package_dir, tmp_path, getattr(request, "param", "slots") == "standby", start_method)
    try:
        scenario.start()
        yield scenario
    finally:
        scenario.close()


@pytest.mark.slow
@pytest.mark.parametrize("orphans", ["slots", "standby"], indirect=True)
def test_killing_the_parent_leaves_no_executor(orphans: Orphans) -> None:
    orphans.kill()
    survivors = orphans.wait_gone("executor", 10)
    assert not survivors, f"executors alive 10 s after their parent was SIGKILLed: {survivors}"


@pytest.mark.slow
@pytest.mark.parametrize("orphans", ["slots", "standby"], indirect=True)
def test_killing_the_parent_leaves_no_grandchild(orphans: Orphans) -> None:
    """A fork does not inherit the parent-death signal: the pool's guard process kills the
    executors' process groups when the pool dies, then exits."""
    orphans.kill()
    assert not orphans.wait_gone("executor", 10)
    survivors = orphans.wait_gone("grandchild", 3)
    assert not survivors, f"processes forked by tasks alive 3 s after the executors died: {survivors}"
    assert not orphans.wait_gone("guard", 3), "the guard process outlived its work"
