"""How executors start: the ``spider_spawner`` hook, and ``start_method="forkserver"`` against the
real fork server, the real executor and the real C package (the rest of the pool's tests run
under both start methods through the ``start_method`` fixture)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import textwrap
from pathlib import Path

import pytest
from test_pool import executor_children, req

import spider_core as sc
from helpers import C_EXECUTE, C_HEADER, C_VERSION, c_name_fn, write_c_package
from spider_core.build import build_package
from spider_core.commands.soak.probes import process_stat
from spider_core.plugin import PluginError, hookimpl
from spider_core.plugin.manager import PluginSettings, get_plugin_manager
from spider_supervisor.popen import ExecSpawner

FORKSERVER = {"start_method": "forkserver", "plugin_autoload": False, "default_timeout": 30}


def pool_run(config: sc.PoolConfig, scenario, pm=None):
    async def main():
        async with sc.ProcessPool(config, plugin_manager=pm) as pool:
            return await scenario(pool)

    return asyncio.run(main())


def parent_of(pid: int) -> int:
    found = process_stat(pid)
    assert found is not None, f"process {pid} is gone"
    return found[1]


def started(pids: list[int]) -> dict[int, int]:
    """When each of ``pids`` started (to tell it from a later process with its pid)."""
    return {pid: process_stat(pid)[2] for pid in pids}  # type: ignore[index]


def still_running(processes: dict[int, int]) -> list[int]:
    """Those of ``processes`` (pid -> start time) still running (a zombie has ended)."""
    running = []
    for pid, start in processes.items():
        found = process_stat(pid)
        if found is not None and found[2] == start and found[0] not in "ZX":
            running.append(pid)
    return running


# -- the spider_spawner hook ----------------------------------------------------------------


def test_a_third_party_spawner_starts_every_executor(package_dir: Path) -> None:
    """A plugin's ``spider_spawner`` takes over (here: the default one, counting), is asked
    once per pool, serves every spawn (the start and the respawn after a crash), and is
    closed with the pool."""

    class Counting(ExecSpawner):
        def __init__(self) -> None:
            self.spawned: list[int] = []
            self.closed = 0

        def spawn(self, executor_id, spec):
            self.spawned.append(executor_id)
            return super().spawn(executor_id, spec)

        def close(self) -> None:
            self.closed += 1

    spawners: list[Counting] = []

    class Plugin:
        @hookimpl
        def spider_spawner(self, config):
            spawners.append(Counting())
            return spawners[-1]

    pm = get_plugin_manager(PluginSettings(autoload=False))
    pm.register(Plugin(), name="counting-spawner")

    async def scenario(pool):
        return [await pool.execute(req(task), 5) for task in ("always_panic", "noop")]

    crash, done = pool_run(sc.PoolConfig(package_dir=package_dir, plugin_autoload=False), scenario, pm)
    assert isinstance(crash, sc.ExecutorCrash) and crash.signal == signal.SIGABRT and isinstance(done, sc.Success)
    assert len(spawners) == 1 and spawners[0].spawned == [1, 2] and spawners[0].closed == 1


def test_a_spawner_that_cannot_spawn_is_a_creation_failure(package_dir: Path) -> None:
    class Plugin:
        @hookimpl
        def spider_spawner(self, config):
            class Refusing(ExecSpawner):
                def spawn(self, executor_id, spec):
                    raise PluginError("no executors on Sundays")

            return Refusing()

    pm = get_plugin_manager(PluginSettings(autoload=False))
    pm.register(Plugin(), name="refusing-spawner")
    with pytest.raises(sc.ExecutorCreationFailure, match="^no executors on Sundays$"):
        pool_run(sc.PoolConfig(package_dir=package_dir, plugin_autoload=False), lambda pool: asyncio.sleep(0), pm)


# -- the fork server ------------------------------------------------------------------------


def test_executors_are_children_of_one_server_per_pool(package_dir: Path) -> None:
    async def scenario(pool):
        pids = [(await pool.call("integration_test_tasks", "get_env", "SPIDER_EXECUTOR_PARENT_PID"))[0]]
        await pool.execute(req("segfault"), 5)
        await pool.execute(req("noop"), 5)
        return {pid: parent_of(pid) for pid in executor_children()}, [s.current.pid for s in pool._slots.all], pids

    children, executors, parents = pool_run(sc.PoolConfig(package_dir=package_dir, slots=2, **FORKSERVER), scenario)
    servers = [pid for pid, parent in children.items() if parent == os.getpid()]
    assert len(servers) == 1 and sorted(children) == sorted(servers + executors)
    assert all(children[pid] == servers[0] for pid in executors)
    assert parents == [str(servers[0])]  # die_with_parent checks the server
    assert executor_children() == []


@pytest.mark.parametrize(
    ("task", "inputs", "status", "signum"),
    [("segfault", (), None, signal.SIGSEGV), ("always_panic", (), None, signal.SIGABRT), ("exit_with", (7,), 7, None),
     ("sleep_ms", (60_000,), None, signal.SIGKILL)],
    ids=["segfault", "abort", "exit-7", "sigkill-from-outside"],
)
def test_a_forked_executor_reports_its_exact_exit(package_dir: Path, task: str, inputs: tuple[int, ...],
                                                  status: int | None, signum: int | None) -> None:
    exits: list[tuple[int, int, str, int | None, int | None]] = []

    class Recorder:
        @hookimpl
        def spider_executor_exited(self, executor_id, pid, reason, exit_status, signal):
            exits.append((executor_id, pid, reason, exit_status, signal))

    pm = get_plugin_manager(PluginSettings(autoload=False))
    pm.register(Recorder(), name="recorder")

    async def scenario(pool):
        pid = pool._slots.all[0].current.pid
        call = asyncio.ensure_future(pool.execute(req(task, *inputs), 30))
        if task == "sleep_ms":
            await asyncio.sleep(0.3)
            os.kill(pid, signal.SIGKILL)
        return pid, await call, await pool.execute(req("fibonacci", 10), 5)

    pid, crash, after = pool_run(sc.PoolConfig(package_dir=package_dir, **FORKSERVER), scenario, pm)
    assert isinstance(crash, sc.ExecutorCrash), crash
    assert (crash.exit_status, crash.signal, crash.executor_id) == (status, signum, 1)
    assert exits[0] == (1, pid, "crash", status, signum)
    assert after.values == [55]


def test_the_server_killed_while_two_slots_run_crashes_both_calls_then_serves(package_dir: Path) -> None:
    async def scenario(pool):
        executors = [s.current.pid for s in pool._slots.all]
        server = parent_of(executors[0])
        gone = started([*executors, server])
        calls = [asyncio.ensure_future(pool.execute(req("sleep_ms", 60_000), 30)) for _ in range(2)]
        await asyncio.sleep(0.3)
        os.kill(server, signal.SIGKILL)
        crashes = await asyncio.gather(*calls)
        after = await asyncio.gather(*(pool.execute(req("fibonacci", 10), 5) for _ in range(4)))
        new_server = {parent_of(s.current.pid) for s in pool._slots.all}
        return gone, server, crashes, after, new_server

    gone, server, crashes, after, new_server = pool_run(
        sc.PoolConfig(package_dir=package_dir, slots=2, **FORKSERVER), scenario
    )
    assert all(isinstance(c, sc.ExecutorCrash) for c in crashes), crashes
    assert sorted(c.executor_id for c in crashes) == [1, 2]
    assert all(isinstance(a, sc.Success) and a.values == [55] for a in after), after
    assert len(new_server) == 1 and new_server != {server}
    assert still_running(gone) == []
    assert executor_children() == []


def test_a_server_that_cannot_start_is_a_creation_failure_with_its_last_line(package_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "broken-executor"
    script.write_text("#!/bin/sh\necho 'starting up' >&2\necho 'no executor here' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    config = sc.PoolConfig(package_dir=package_dir, executor_command=str(script), **FORKSERVER)
    with pytest.raises(sc.ExecutorCreationFailure) as info:
        pool_run(config, lambda pool: asyncio.sleep(0))
    assert str(info.value) == f"the fork server {str(script)!r} did not start (exit status 3): no executor here"
    assert executor_children() == []


def test_another_protocol_refuses_the_fork_server_in_one_sentence(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, protocol="spider-rust", executor_command="/bin/true", **FORKSERVER)
    with pytest.raises(sc.ExecutorCreationFailure) as info:
        pool_run(config, lambda pool: asyncio.sleep(0))
    assert str(info.value) == (
        "PoolConfig.start_method 'forkserver' needs spider-core's own executor, but protocol 'spider-rust' "
        "runs another one: use start_method 'exec'"
    )


COUNTER = C_HEADER + "static uint64_t count = 0;\n" + C_VERSION + c_name_fn("counter") + C_EXECUTE.replace(
    "BODY",
    textwrap.dedent("""\
        spider_tdl_buf out; size_t mark;
        spider_tdl_buf_init(&out); spider_tdl_wire_begin(&out, 1); spider_tdl_wire_payload_begin(&out, &mark);
        spider_tdl_write_uint(&out, ++count); spider_tdl_wire_payload_end(&out, mark);
        return spider_tdl_result_ok(&out);"""),
)


def test_a_task_package_state_does_not_leak_into_the_next_executor(tmp_path: Path, package_dir: Path) -> None:
    packages = tmp_path / "packages"
    build_package(write_c_package(tmp_path / "src", "counter", COUNTER), packages)
    (packages / "integration_test_tasks").symlink_to(package_dir / "integration_test_tasks")

    async def scenario(pool):
        counts = []
        for _ in range(3):
            counts.append([(await pool.call("counter", "count"))[0] for _ in range(2)])
            await pool.execute(req("segfault"), 5)  # the next executor is a new fork
        return counts

    assert pool_run(sc.PoolConfig(package_dir=packages, **FORKSERVER), scenario) == [[1, 2]] * 3


def test_a_forked_executor_holds_its_own_pipes_and_nothing_else_of_the_pool(package_dir: Path, tmp_path: Path) -> None:
    """Descriptors open in the pool (a file, say) do not reach the server's children: an
    executor has fds 0-2 (stdin from /dev/null, stdout and stderr the log pipe) and its two
    protocol descriptors, the pool's ends of its own pipes."""
    held = open(tmp_path / "held-by-the-pool", "w")  # noqa: SIM115  # open for the whole pool

    async def scenario(pool):
        await pool.execute(req("noop"), 5)
        pid = pool._slots.all[0].current.pid
        links = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        ours = {os.readlink(f"/proc/self/fd/{fd}") for fd in (pool._slots.all[0].current._out,
                                                               pool._slots.all[0].current._in,
                                                               pool._slots.all[0].current._err)}
        return links, ours

    try:
        links, ours = pool_run(sc.PoolConfig(package_dir=package_dir, **FORKSERVER), scenario)
    finally:
        held.close()
    assert links[0] == "/dev/null" and links[1] == links[2]
    assert set(links.values()) - {"/dev/null"} == ours
    assert len(links) == 5, links
