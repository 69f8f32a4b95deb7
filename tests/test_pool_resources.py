"""What a pool holds and how long it may wait: every accepted timeout works on every call
path, a failed start leaves nothing behind, and a pool nobody closed closes itself.

Real executor, real C package.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import warnings
from pathlib import Path

import attrs
import pytest

import spider_core as sc

PKG = "integration_test_tasks"

#: Past what one poll() can wait (about 24.8 days) and past what a time_t timer holds.
LONG = [3e6, 1e12]


def req(n: int = 10) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=PKG, task="fibonacci", inputs=[n])


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def config(package_dir: Path, tmp_path: Path) -> sc.PoolConfig:
    return sc.PoolConfig(package_dir=package_dir, log_dir=tmp_path / "logs", plugin_autoload=False)


@pytest.mark.parametrize("timeout", LONG)
def test_long_timeouts_on_every_sync_path(config: sc.PoolConfig, timeout: float) -> None:
    with sc.SyncProcessPool(config) as pool:
        assert pool.execute(req(), timeout).unwrap() == [55]
        assert pool.execute(req(), timeout, soft_timeout=timeout).unwrap() == [55]
        assert pool.call(PKG, "fibonacci", 10, hard_timeout=timeout, soft_timeout=timeout) == [55]
        assert pool.submit(req(), timeout, soft_timeout=timeout).result().unwrap() == [55]
        assert [o.unwrap() for o in pool.map([req(), req(5)], timeout, soft_timeout=timeout)] == [[55], [5]]
    with sc.SyncProcessPool(attrs.evolve(config, default_timeout=timeout)) as pool:
        assert pool.call(PKG, "fibonacci", 10) == [55]
        assert pool.submit(req()).result().unwrap() == [55]


@pytest.mark.parametrize("timeout", LONG)
def test_long_timeouts_on_every_async_path(config: sc.PoolConfig, timeout: float) -> None:
    async def main() -> None:
        async with sc.ProcessPool(config) as pool:
            assert (await pool.execute(req(), timeout, soft_timeout=timeout)).unwrap() == [55]
            assert await pool.call(PKG, "fibonacci", 10, hard_timeout=timeout, soft_timeout=timeout) == [55]
            assert [o.unwrap() async for o in pool.map([req(), req(5)], timeout, soft_timeout=timeout)] == [[55], [5]]
        async with sc.ProcessPool(attrs.evolve(config, default_timeout=timeout)) as pool:
            assert await pool.call(PKG, "fibonacci", 10) == [55]

    asyncio.run(main())


def test_a_long_timeout_still_ends_a_hung_task(config: sc.PoolConfig) -> None:
    """The wait is made of several, each within what poll() allows: a task that never ends is
    still waited for (and ended by a shorter timeout on the next call)."""
    with sc.SyncProcessPool(config) as pool:
        outcome = pool.execute(sc.ExecuteRequest(package=PKG, task="sleep_ms", inputs=[300]), 1e12)
        assert outcome.unwrap() == []
        assert isinstance(pool.execute(sc.ExecuteRequest(package=PKG, task="sleep_ms", inputs=[5000]), 0.2), sc.Timeout)


def test_failed_starts_leave_no_thread_and_no_descriptor(config: sc.PoolConfig) -> None:
    broken = attrs.evolve(config, executor_command=("/nonexistent/executor",), backoff_initial=0.01)
    threads, fds = threading.active_count(), open_fds()
    for _ in range(20):
        pool = sc.SyncProcessPool(broken)
        with pytest.raises(sc.ExecutorCreationFailure, match="/nonexistent/executor"):
            pool.start()
        pool.close()
    with pytest.raises(sc.ExecutorCreationFailure):
        with sc.SyncProcessPool(broken):
            pass
    assert threading.active_count() == threads
    assert open_fds() == fds


def test_a_pool_that_is_made_but_never_started_holds_nothing(config: sc.PoolConfig) -> None:
    threads, fds = threading.active_count(), open_fds()
    pools = [sc.SyncProcessPool(config) for _ in range(5)]
    assert threading.active_count() == threads
    assert open_fds() == fds
    with pytest.raises(sc.NotRunning, match="not started"):
        pools[0].submit(req())
    with pytest.raises(sc.NotRunning, match="not started"):
        pools[0].execute(req(), 5)
    del pools
    gc.collect()


def test_an_unclosed_pool_closes_itself_when_collected(config: sc.PoolConfig) -> None:
    threads, fds = threading.active_count(), open_fds()
    pool = sc.SyncProcessPool(attrs.evolve(config, slots=2))
    pool.start()
    assert pool.call(PKG, "fibonacci", 10, hard_timeout=5) == [55]
    pids = [pid for pid in pool.pids if pid is not None]
    assert len(pids) == 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del pool
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and "unclosed pool" in str(w.message) for w in caught)
    assert all(gone(pid) for pid in pids)
    assert threading.active_count() == threads
    assert open_fds() == fds
