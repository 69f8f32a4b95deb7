"""The default spawn and respawn policy (``spider_supervisor``): its back-off, its decisions, its
launcher, and what a real pool does with them."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import spider_core as sc
from spider_core.plugin import LaunchSpec, RespawnDecision, RespawnState
from spider_core.tdl import TdlErrorKind
from spider_core.testing import assert_outcome
from spider_supervisor import backoff, spider_launcher, spider_respawn_decision

PKG = "integration_test_tasks"
FIB_10 = sc.ExecuteRequest(package=PKG, task="fibonacci", inputs=[10])

#: Back-off 0.5 s, 1 s, 2 s, then capped at 3 s; from the 5th failure on always 3 s.
CAPPED = sc.PoolConfig(package_dir=".", backoff_initial=0.5, backoff_max=3.0, max_spawn_failures=5)
#: Back-off 0.25 s, 0.5 s, then at the 3rd failure straight to the longest, 100 s.
JUMPS = sc.PoolConfig(package_dir=".", backoff_initial=0.25, backoff_max=100.0, max_spawn_failures=3)
#: Back-off 0.5 s, 1 s, 2 s, then 10 s from the 4th failure on; executors run 7 tasks each.
POLICY = sc.PoolConfig(package_dir=".", backoff_initial=0.5, backoff_max=10.0, max_spawn_failures=4, recycle_after=7)


def state(consecutive_failures: int = 0, last_failure: float | None = None, now: float = 100.0, reason: str = "crash"):
    return RespawnState(reason=reason, consecutive_failures=consecutive_failures, last_failure=last_failure, now=now)


# -- backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize("failures", [0, -1])
def test_backoff_is_zero_without_failures(failures: int) -> None:
    assert backoff(CAPPED, failures) == 0.0


@pytest.mark.parametrize(("failures", "seconds"), [(1, 0.5), (2, 1.0), (3, 2.0)])
def test_backoff_doubles_from_backoff_initial(failures: int, seconds: float) -> None:
    assert backoff(CAPPED, failures) == seconds


def test_backoff_is_capped_at_backoff_max() -> None:
    assert backoff(CAPPED, 4) == 3.0  # 0.5 * 2**3 = 4 s, over the cap


@pytest.mark.parametrize("failures", [3, 4, 50])
def test_backoff_is_backoff_max_once_max_spawn_failures_is_reached(failures: int) -> None:
    assert backoff(JUMPS, failures) == 100.0  # not 0.25 * 2**(failures - 1)


# -- spider_respawn_decision -----------------------------------------------------------------


def test_backoff_stays_the_longest_however_many_failures_a_large_limit_allows() -> None:
    config = sc.PoolConfig(package_dir=".", backoff_initial=0.1, backoff_max=30.0, max_spawn_failures=100_000)
    assert backoff(config, 1025) == 30.0  # 0.1 * 2**1024 would overflow a float


@pytest.mark.parametrize("reason", ["start", "timeout", "crash", "cancelled", "recycle", "retry", "standby"])
def test_respawn_decision_spawns_at_once_without_failures(reason: str) -> None:
    decision = spider_respawn_decision(config=POLICY, state=state(reason=reason))
    assert decision == RespawnDecision(spawn=True, retry_at=None, message="", recycle_after=7)


def test_respawn_decision_passes_no_recycle_limit_by_default() -> None:
    decision = spider_respawn_decision(config=sc.PoolConfig(package_dir="."), state=state())
    assert decision == RespawnDecision(spawn=True, recycle_after=None)


def test_respawn_decision_refuses_until_the_backoff_has_passed() -> None:
    decision = spider_respawn_decision(config=POLICY, state=state(2, last_failure=100.0, now=100.25))
    assert decision == RespawnDecision(
        spawn=False,
        retry_at=101.0,  # 100 s + 0.5 s * 2
        message="the executor failed to start 2 time(s) in a row; next attempt in 0.75s",
    )


def test_respawn_decision_waits_backoff_max_after_max_spawn_failures() -> None:
    decision = spider_respawn_decision(config=POLICY, state=state(4, last_failure=100.0, now=101.0))
    assert (decision.spawn, decision.retry_at) == (False, 110.0)
    assert decision.message == "the executor failed to start 4 time(s) in a row; next attempt in 9.00s"


@pytest.mark.parametrize("now", [101.0, 101.5])
def test_respawn_decision_spawns_once_retry_at_is_reached(now: float) -> None:
    decision = spider_respawn_decision(config=POLICY, state=state(2, last_failure=100.0, now=now))
    assert decision == RespawnDecision(spawn=True, recycle_after=7)


def test_respawn_state_refuses_an_unknown_reason() -> None:
    with pytest.raises(ValueError, match=r"'reason' must be in \('start', 'timeout', .*\) \(got 'bogus'\)"):
        RespawnState(reason="bogus", consecutive_failures=0, last_failure=None, now=0.0)


# -- spider_launcher -------------------------------------------------------------------------


def test_launcher_runs_the_executor_module_with_this_interpreter() -> None:
    env = {"PATH": "/usr/bin", "SPIDER_TDL_PACKAGE_DIR": "/packages"}
    spec = spider_launcher(config=sc.PoolConfig(package_dir="/packages"), executor_id=1, env=env)
    assert spec == LaunchSpec(argv=(sys.executable, "-m", "spider_core.executor"), env=env, cwd=None)


def test_launcher_uses_executor_command_from_the_config() -> None:
    config = sc.PoolConfig(package_dir="/packages", executor_command=("/opt/py/bin/python3", "-X", "dev", "run.py"))
    spec = spider_launcher(config=config, executor_id=3, env={"PATH": "/bin"})
    assert spec == LaunchSpec(argv=("/opt/py/bin/python3", "-X", "dev", "run.py"), env={"PATH": "/bin"})


# -- through a real pool ---------------------------------------------------------------------


@pytest.fixture
def executor_script(tmp_path: Path) -> Path:
    """An executable that runs the real executor, for as long as the file exists."""
    script = tmp_path / "executor"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m spider_core.executor "$@"\n')
    script.chmod(0o755)
    return script


def test_a_pool_whose_executor_command_does_not_exist_never_starts(package_dir: Path, tmp_path: Path) -> None:
    # Not through spider_pool_factory: it raises before it can hand the pool back.
    missing = tmp_path / "no-such-executor"
    config = sc.PoolConfig(
        package_dir=package_dir, executor_command=(str(missing),), backoff_initial=30.0, plugin_autoload=False
    )
    pool = sc.SyncProcessPool(config)
    try:
        with pytest.raises(sc.ExecutorCreationFailure) as info:
            pool.start()
        assert str(info.value) == f"cannot start executor command '{missing}': No such file or directory"
        assert pool.executor_id is None
        # A pool whose start failed is not started: calls are refused as such, not by the back-off.
        with pytest.raises(sc.NotRunning, match=r"^the pool is not started"):
            pool.execute(FIB_10, hard_timeout=10)
    finally:
        pool.close()


def test_a_respawn_that_cannot_start_refuses_calls_while_the_backoff_lasts(
    spider_pool_factory, package_dir: Path, executor_script: Path
) -> None:
    pool = spider_pool_factory(
        package_dir,
        executor_command=(str(executor_script),),
        backoff_initial=30.0,
        backoff_max=60.0,
        plugin_autoload=False,
    )
    assert_outcome(pool.execute(FIB_10, hard_timeout=10), "Success", [55], executor_id=1)
    text = executor_script.read_text()
    executor_script.unlink()
    crash = pool.execute(sc.ExecuteRequest(package=PKG, task="always_panic"), hard_timeout=10)
    assert_outcome(crash, "ExecutorCrash", executor_id=1)  # and its replacement could not start
    assert pool.executor_id is None

    refused = re.compile(
        r"^no executor is running: the executor failed to start 1 time\(s\) in a row; next attempt in (\d+\.\d\d)s$"
    )
    with pytest.raises(sc.NotRunning) as first:
        pool.execute(FIB_10, hard_timeout=10)
    match = refused.match(str(first.value))
    assert match, str(first.value)
    assert 25.0 < float(match.group(1)) <= 30.0

    # The command is back, but the back-off is not over: no attempt is made, nothing counts.
    executor_script.write_text(text)
    executor_script.chmod(0o755)
    with pytest.raises(sc.NotRunning) as second:
        pool.execute(FIB_10, hard_timeout=10)
    assert refused.match(str(second.value)), str(second.value)
    assert pool.executor_id is None


def test_recycling_replaces_the_executor_right_after_its_last_task(spider_pool_factory, package_dir: Path) -> None:
    pool = spider_pool_factory(package_dir, recycle_after=2, plugin_autoload=False)
    first_pid = pool.pid
    seen = []
    for _ in range(3):
        outcome = assert_outcome(pool.execute(FIB_10, hard_timeout=10), "Success", [55])
        seen.append((outcome.executor_id, pool.executor_id))
    # After the second task executor 2 is already running, before the third call arrives.
    assert seen == [(1, 1), (1, 2), (2, 2)]
    assert pool.pid != first_pid
    assert not Path(f"/proc/{first_pid}").exists()  # executor 1 was shut down and reaped


def test_failed_tasks_count_toward_recycle_after(spider_pool_factory, package_dir: Path) -> None:
    pool = spider_pool_factory(package_dir, recycle_after=2, plugin_autoload=False)
    fail = sc.ExecuteRequest(package=PKG, task="always_fail")
    failures = [pool.execute(fail, hard_timeout=10) for _ in range(2)]
    for failure in failures:
        assert_outcome(failure, "InTaskFailure", error=TdlErrorKind.ExecutionError, executor_id=1)
    assert_outcome(pool.execute(FIB_10, hard_timeout=10), "Success", [55], executor_id=2)
