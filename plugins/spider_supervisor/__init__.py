"""spider_supervisor: the default spawn and respawn policy.

Launcher: ``python -m spider_core.executor`` (or ``PoolConfig.executor_command``). Spawner:
with ``PoolConfig.start_method="exec"`` a new subprocess of that command per executor
(:class:`ExecSpawner`); with ``"forkserver"`` one server per pool, started with that command,
that forks each executor (:mod:`spider_supervisor.forkserver`). Respawn: at once; after consecutive spawn failures wait ``backoff_initial * 2**(n-1)``
seconds (at most ``backoff_max``), and once ``max_spawn_failures`` is reached always the longest
back-off, so a pool whose executor cannot start keeps trying instead of dying for good.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

from spider_core.plugin import LaunchSpec, RespawnDecision, Spawner, hookimpl

if TYPE_CHECKING:  # the pool's types: an executor registers this plugin but never calls it
    from spider_core.plugin import PoolConfig, RespawnState


def backoff(config: PoolConfig, failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive spawn failures."""
    if failures <= 0:
        return 0.0
    if failures >= config.max_spawn_failures:
        return config.backoff_max
    doublings = min(failures - 1, 62)  # past that the cap applies anyway; 2.0 ** 1024 overflows
    delay: float = min(config.backoff_initial * 2**doublings, config.backoff_max)  # int ** int is Any to mypy
    return delay


@hookimpl(trylast=True)
def spider_launcher(config: PoolConfig, executor_id: int, env: dict[str, str]) -> LaunchSpec:
    argv = config.executor_command or (sys.executable, "-m", "spider_core.executor")
    return LaunchSpec(argv=argv, env=env)


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


@hookimpl(trylast=True)
def spider_spawner(config: PoolConfig) -> Spawner:
    if config.start_method == "forkserver":
        from spider_supervisor.forkserver import ForkServerSpawner

        return ForkServerSpawner(config)
    return ExecSpawner()


@hookimpl(trylast=True)
def spider_respawn_decision(config: PoolConfig, state: RespawnState) -> RespawnDecision:
    if state.consecutive_failures and state.last_failure is not None:
        retry_at = state.last_failure + backoff(config, state.consecutive_failures)
        if state.now < retry_at:
            return RespawnDecision(
                spawn=False,
                retry_at=retry_at,
                message=(
                    f"the executor failed to start {state.consecutive_failures} time(s) in a row; "
                    f"next attempt in {retry_at - state.now:.2f}s"
                ),
            )
    return RespawnDecision(spawn=True, recycle_after=config.recycle_after)
