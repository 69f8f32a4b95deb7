"""``PoolConfig.start_method = "exec"``: each executor a new process (``subprocess.Popen``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spider_core.plugin import LaunchSpec


class PopenHandle:
    """An executor started by :class:`ExecSpawner`: the pool is its parent."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.stdin = proc.stdin.fileno()  # type: ignore[union-attr]  # all three are pipes
        self.stdout = proc.stdout.fileno()  # type: ignore[union-attr]
        self.stderr = proc.stderr.fileno()  # type: ignore[union-attr]
        self.pidfd: int | None = None  # the pool opens one: the process is unreaped until wait()

    def wait(self) -> int | None:
        # Before the reap, while the group id is still reserved: what its tasks left running.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        return self.proc.wait()

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


class ExecSpawner:
    """``start_method="exec"``: each executor is a new process of the launcher's command."""

    def spawn(self, executor_id: int, spec: LaunchSpec) -> PopenHandle:
        proc = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=spec.env,
            cwd=spec.cwd,
            close_fds=True,
            # Its own session: terminal signals go to the pool alone, and what tasks leave
            # running can be killed with the executor's process group.
            start_new_session=True,
        )
        return PopenHandle(proc)

    def close(self) -> None:
        pass
