"""A forked child never reaches its parent's executors.

After ``os.fork()`` the child holds a copy of every pool object of the parent, with copies of
its pipes. Each test forks a process that uses a started pool (sync and async, one and two
slots), while the parent goes on calling: the child's call raises ``NotRunning`` at once, the
parent's calls all get their own results, and a pool made in the child works.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import attrs
import pytest

import spider_core as sc

PKG = "integration_test_tasks"
RUNS = 20
PARENT_CALLS = 300

pytestmark = [
    pytest.mark.slow,
    # Python 3.12+ warns that forking a multi-threaded process may deadlock: what is tested here.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def children() -> set[int]:
    """The live (not zombie) child processes of this process."""
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.add(int(name))
    return found


@pytest.fixture
def config(package_dir: Path, tmp_path: Path, start_method: str) -> sc.PoolConfig:
    return sc.PoolConfig(
        package_dir=package_dir,
        log_dir=tmp_path / "logs",
        plugin_autoload=False,
        default_timeout=10,
        start_method=start_method,
    )


def child_report(write_fd: int, use_inherited, use_new) -> None:
    """In the forked child: report what a call on the inherited pool raised (and how fast),
    and what a call on a new pool returned, then exit without running the parent's cleanup."""
    status = 1
    try:
        signal_hang = threading.Timer(10, lambda: os._exit(3))  # a hang is a failure, not a stuck suite
        signal_hang.daemon = True
        signal_hang.start()
        started = time.monotonic()
        try:
            use_inherited()
            first = "no error"
        except sc.NotRunning as e:
            first = f"NotRunning: {e}"
        except BaseException as e:
            first = f"{type(e).__name__}: {e}"
        took = time.monotonic() - started
        second = use_new()
        os.write(write_fd, f"{first}\n{took:.3f}\n{second}\n".encode())
        status = 0
    finally:
        os._exit(status)


def fork(use_inherited, use_new) -> tuple[int, int]:
    """Fork a child that reports on both pools (:func:`child_report`); its pid and the end of
    the pipe its report comes on."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        child_report(write_fd, use_inherited, use_new)
    os.close(write_fd)
    return pid, read_fd


def check_child(pid: int, read_fd: int) -> None:
    """The child's call on the parent's pool raised NotRunning at once; its own pool worked."""
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd) as f:
        first, took, second = f.read().splitlines()
    assert os.waitstatus_to_exitcode(status) == 0
    assert first == f"NotRunning: this pool belongs to process {os.getpid()}; create a pool in the child"
    assert float(took) < 1.0
    assert second == "[55]"


@pytest.mark.parametrize("slots", [1, 2])
def test_sync_pool_in_a_forked_child(config: sc.PoolConfig, slots: int) -> None:
    config = attrs.evolve(config, slots=slots)
    before = children()
    for _ in range(RUNS):
        with sc.SyncProcessPool(config) as pool:
            assert pool.call(PKG, "fibonacci", 5) == [5]
            executors = set(pool.pids)

            def new_pool() -> str:
                with sc.SyncProcessPool(config) as mine:
                    return str(mine.call(PKG, "fibonacci", 10))

            def parent_calls() -> None:
                for i in range(PARENT_CALLS):
                    assert pool.call(PKG, "fibonacci", i % 25) == [fib(i % 25)]

            child = fork(lambda: pool.call(PKG, "fibonacci", 7), new_pool)
            parent_calls()
            check_child(*child)
            assert set(pool.pids) == executors  # nothing was replaced
        assert children() == before


@pytest.mark.parametrize("slots", [1, 2])
def test_async_pool_in_a_forked_child(config: sc.PoolConfig, slots: int) -> None:
    config = attrs.evolve(config, slots=slots)
    before = children()

    async def main() -> None:
        async with sc.ProcessPool(config) as pool:
            assert await pool.call(PKG, "fibonacci", 5) == [5]

            def in_a_thread(coro_fn) -> str:
                """asyncio.run on a fresh thread: the child's main thread has the parent's loop."""
                result: list[object] = []

                def run() -> None:
                    try:
                        result.append(asyncio.run(coro_fn()))
                    except BaseException as e:
                        result.append(e)

                thread = threading.Thread(target=run)
                thread.start()
                thread.join()
                if isinstance(result[0], BaseException):
                    raise result[0]
                return str(result[0])

            async def new_pool() -> list[object]:
                async with sc.ProcessPool(config) as mine:
                    return await mine.call(PKG, "fibonacci", 10)

            async def parent_calls() -> None:
                outcomes = await asyncio.gather(*(pool.call(PKG, "fibonacci", i % 25) for i in range(PARENT_CALLS)))
                assert outcomes == [[fib(i % 25)] for i in range(PARENT_CALLS)]

            for _ in range(RUNS):
                child = fork(
                    lambda: in_a_thread(lambda: pool.call(PKG, "fibonacci", 7)),
                    lambda: in_a_thread(new_pool),
                )
                await parent_calls()
                check_child(*child)

    asyncio.run(main())
    assert children() == before


def test_closing_in_the_child_leaves_the_parents_pool_alone(config: sc.PoolConfig) -> None:
    """The child closes its copy (and drops it): the parent's executors and guard carry on."""
    with sc.SyncProcessPool(config) as pool:
        pool.call(PKG, "fibonacci", 5)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                pool.close()
                pool.close()
                with pytest.raises(sc.NotRunning, match="belongs to process"):
                    pool.submit(sc.ExecuteRequest(package=PKG, task="fibonacci", inputs=[3]))
                with pytest.raises(sc.NotRunning, match="belongs to process"):
                    list(pool.map([sc.ExecuteRequest(package=PKG, task="fibonacci", inputs=[3])]))
                with pytest.raises(sc.NotRunning, match="belongs to process"):
                    pool.start()
                status = 0
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert [pool.call(PKG, "fibonacci", n) for n in range(20)] == [[fib(n)] for n in range(20)]
