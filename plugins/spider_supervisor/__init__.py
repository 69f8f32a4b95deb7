"""spider_supervisor: the default spawn and respawn policy. Launcher: ``python -m
spider_core.executor`` (or ``PoolConfig.executor_command``). Spawner: with
``PoolConfig.start_method="exec"`` a new subprocess of that command per executor
(:mod:`spider_supervisor.popen`); with ``"forkserver"`` one server per pool, started with that
command, that forks each executor (:mod:`spider_supervisor.forkserver`). Respawn: at once, and
after consecutive spawn failures a growing back-off (:func:`backoff`) that never gives up.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from spider_core.plugin import LaunchSpec, RespawnDecision, Spawner, hookimpl

if TYPE_CHECKING:  # the pool's types: an executor registers this plugin but never calls it
    from spider_core.plugin import PoolConfig, RespawnState


def backoff(config: PoolConfig, failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive spawn failures: ``backoff_initial *
    2**(n-1)`` (at most ``backoff_max``), and once ``max_spawn_failures`` is reached always the
    longest back-off, so a pool whose executor cannot start keeps trying instead of dying for
    good."""
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


@hookimpl(trylast=True)
def spider_spawner(config: PoolConfig) -> Spawner:
    # imported when a pool starts: the executor registers this plugin too, and needs neither
    if config.start_method == "forkserver":
        from spider_supervisor.forkserver import ForkServerSpawner

        return ForkServerSpawner(config)
    from spider_supervisor.popen import ExecSpawner

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
