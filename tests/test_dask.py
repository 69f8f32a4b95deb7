"""spider_core.dask against a real LocalCluster of worker processes and the real C package.

One cluster serves the module (it takes a second or two to start); the ``spider`` fixture
puts the standard plugin back on every worker before each test that changes it.
"""

from __future__ import annotations

import copy
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from distributed import Client, LocalCluster

import spider_core as sc
from spider_core.dask import worker as sd

PKG = "integration_test_tasks"
FIB = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]
CLUSTER = {"n_workers": 2, "processes": True, "threads_per_worker": 2, "dashboard_address": ":0"}


def req(task: str, *inputs: object, package: str = PKG) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=package, task=task, inputs=inputs)


def comparable(outcome: sc.Outcome) -> sc.Outcome:
    """The outcome without what differs between two runs of one request (which executor ran
    it, how long it took)."""
    outcome = attrs.evolve(outcome, executor_id=None)
    if isinstance(outcome, sc.Success | sc.InTaskFailure):
        outcome = attrs.evolve(outcome, elapsed_us=0)
    return outcome


# -- processes ---------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rpartition(")")[2].split()
    return fields[0], int(fields[1]), int(fields[19])


def executors_of(parent: int) -> dict[int, int]:
    """The spider-core executors whose parent is ``parent``: pid -> start time (so that a pid
    reused later is not taken for the executor)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None or stat[1] != parent:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spider_core.executor" in cmdline:
            found[int(entry)] = stat[2]
    return found


def alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in "ZX"


def wait_until_gone(processes: dict[int, int], timeout: float = 15) -> list[int]:
    """The processes still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid, started in processes.items() if alive(pid, started)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def _pool_state(dask_worker: Any) -> tuple[int, tuple[int | None, ...], sc.PoolConfig] | None:
    """On a worker (through ``client.run``): its process id, its pool's executor pids and config."""
    try:
        pool = sd.worker_pool(dask_worker)
    except sd.WorkerPoolError:
        return None
    return os.getpid(), pool.pids, pool.config


def _standbys_ready(dask_worker: Any) -> bool:
    return all(slot.standby is not None for slot in sd.worker_pool(dask_worker)._pool._slots.all)


# -- the cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(package_dir: Path) -> sc.PoolConfig:
    return sc.PoolConfig(package_dir=package_dir, slots=2, default_timeout=10, plugin_autoload=False)


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(**CLUSTER) as cluster, Client(cluster) as client:
        yield client


@pytest.fixture
def spider(client: Client, config: sc.PoolConfig) -> Client:
    """The module's client, with two workers each holding a pool of ``config``."""
    client.wait_for_workers(2, timeout=60)
    states = client.run(_pool_state)
    if len(states) != 2 or any(state is None or state[2] != config for state in states.values()):
        client.register_plugin(sd.SpiderWorkerPlugin(config))
    return client


# -- outcomes ----------------------------------------------------------------------------------


def mixed_requests(n: int) -> list[sc.ExecuteRequest]:
    requests = []
    for i in range(n):
        if i % 20 == 3:
            requests.append(req("always_fail"))
        elif i % 20 == 7:
            requests.append(req("segfault"))
        elif i % 40 == 13:
            requests.append(req("always_panic"))
        elif i % 40 == 17:
            requests.append(req("sleep_ms", 5000))  # past the hard timeout
        else:
            requests.append(req("fibonacci", i % 20))
    return requests


@pytest.mark.slow
def test_map_of_mixed_requests_gives_the_outcomes_of_a_local_pool(spider: Client, config: sc.PoolConfig) -> None:
    requests = mixed_requests(200)
    futures = sd.map(spider, requests, hard_timeout=0.5)
    with sc.SyncProcessPool(config) as pool:
        local = list(pool.map(requests, hard_timeout=0.5))
    remote = spider.gather(futures)

    assert len(futures) == len({f.key for f in futures}) == 200
    assert [comparable(o) for o in remote] == [comparable(o) for o in local]
    kinds = [type(o) for o in remote]
    assert (kinds.count(sc.InTaskFailure), kinds.count(sc.ExecutorCrash), kinds.count(sc.Timeout)) == (10, 15, 5)
    assert {f.key.rpartition("-")[0] for f in futures} == {f"{PKG}.{task}" for task in
                                                           ("fibonacci", "always_fail", "segfault", "always_panic", "sleep_ms")}
    # Both workers served: each worker's executors carry their own ids, so look at who ran what.
    assert len({addr for f in futures for addr in spider.who_has(f)[f.key]}) == 2


@pytest.mark.slow
def test_every_outcome_kind_crosses_the_cluster_and_survives_pickle_and_copy(spider: Client, config) -> None:
    requests = [req("fibonacci", 10), req("always_fail"), req("no_such_task"), req("x", package="no_such_package"),
                req("segfault"), req("always_panic"), req("sleep_ms", 5000)]
    # 2 s: long enough that a loaded machine (tox runs six envs at once) does not turn the
    # first look-up of a missing package into a timeout
    with sc.SyncProcessPool(config) as pool:
        local = [pool.execute(r, hard_timeout=2.0) for r in requests]
    remote = [sd.submit(spider, r, 2.0).result(timeout=60) for r in requests]

    assert [type(o) for o in remote] == [sc.Success, sc.InTaskFailure, sc.InTaskFailure, sc.InTaskFailure,
                                        sc.ExecutorCrash, sc.ExecutorCrash, sc.Timeout]
    assert [comparable(o) for o in remote] == [comparable(o) for o in local]
    assert remote[0].values == [55] and remote[4].signal is signal.SIGSEGV and remote[5].signal is signal.SIGABRT
    assert type(remote[2].error) is sc.TaskError and type(remote[3].error) is sc.InvalidLibrary
    for outcome, mine in zip(remote, local, strict=True):
        for again in (pickle.loads(pickle.dumps(outcome)), copy.copy(outcome), copy.deepcopy(outcome)):
            assert type(again) is type(outcome) and again == outcome
            assert comparable(again) == comparable(mine)
        if isinstance(outcome, sc.Success):
            continue
        with pytest.raises(sc.OutcomeError) as theirs:
            outcome.unwrap()
        with pytest.raises(sc.OutcomeError) as ours:
            mine.unwrap()
        assert type(theirs.value) is type(ours.value) and str(theirs.value) == str(ours.value)
        assert pickle.loads(pickle.dumps(theirs.value)).outcome == outcome


@pytest.mark.slow
def test_an_internal_error_is_the_dask_tasks_error(spider: Client, config) -> None:
    bad = sc.ExecuteRequest(package="../x", task="t")
    with sc.SyncProcessPool(config) as pool, pytest.raises(sc.InvalidRequest) as local:
        pool.execute(bad, hard_timeout=5)
    future = sd.submit(spider, bad, 5)
    with pytest.raises(sc.InvalidRequest) as remote:
        future.result(timeout=60)
    assert str(remote.value) == str(local.value) and future.status == "error"


@pytest.mark.slow
def test_dask_keywords_pass_through(spider: Client) -> None:
    first, second = sorted(spider.scheduler_info()["workers"])
    futures = sd.map(spider, [req("fibonacci", i) for i in range(8)], 5, workers=[second], priority=10, retries=1)
    one = sd.submit(spider, req("fibonacci", 12), 5, workers=[first], allow_other_workers=False, key="fib-12")
    assert [o.values for o in spider.gather(futures)] == [[FIB[i]] for i in range(8)]
    assert one.result(timeout=60).values == [144] and one.key == "fib-12"
    assert {addr for f in futures for addr in spider.who_has(f)[f.key]} == {second}
    assert list(spider.who_has(one)["fib-12"]) == [first]


def test_an_unknown_keyword_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(TypeError, match=r"^spider_core\.dask\.submit\(\) got an unexpected keyword argument 'worker' "):
        sd.submit(None, req("noop"), 5, worker="tcp://x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unexpected keyword argument 'pure'"):
        sd.map(None, [req("noop")], 5, pure=True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="request must be an ExecuteRequest, got tuple"):
        sd.submit(None, ("integration_test_tasks", "noop"))  # type: ignore[arg-type]


@pytest.mark.parametrize("call", [
    lambda: sd.submit(None, req("noop"), -1),  # type: ignore[arg-type]
    lambda: sd.submit(None, req("noop"), 5, soft_timeout=float("nan")),  # type: ignore[arg-type]
    lambda: sd.map(None, [req("noop")], 0),  # type: ignore[arg-type]
], ids=["submit", "submit-soft", "map"])
def test_a_bad_timeout_is_refused_on_the_client(call) -> None:
    """As a local pool refuses it, before anything is sent (the client here is None)."""
    with pytest.raises(sc.InvalidRequest, match=r"^(hard|soft)_timeout must be a positive number of seconds, got "):
        call()


def test_worker_pool_outside_a_worker_is_a_worker_pool_error() -> None:
    with pytest.raises(sd.WorkerPoolError, match=r"^worker_pool\(\) without a worker runs only on a Dask worker "):
        sd.worker_pool()


# -- lost workers and teardown ------------------------------------------------------------------


@pytest.mark.slow
def test_a_killed_worker_loses_no_request_and_leaves_no_executor(spider: Client) -> None:
    states = spider.run(_pool_state)
    victim, (victim_pid, pids, _) = sorted(states.items())[0]
    requests = [req("sleep_ms", 200) if i % 2 else req("fibonacci", i % 20) for i in range(60)]
    futures = sd.map(spider, requests, 10)

    deadline = time.monotonic() + 30
    while not spider.processing(workers=[victim])[victim]:
        assert time.monotonic() < deadline, "the victim never ran a task"
        time.sleep(0.01)
    time.sleep(0.3)  # its slots are busy with sleep_ms now
    executors = executors_of(victim_pid)
    assert set(pids) <= set(executors) and len(executors) == 2
    os.kill(victim_pid, signal.SIGKILL)

    outcomes = spider.gather(futures)
    assert len(outcomes) == 60  # exactly one outcome per request, each its own
    assert [o.values for o in outcomes] == [[] if i % 2 else [FIB[i % 20]] for i in range(60)]
    assert all(isinstance(o, sc.Success) for o in outcomes)
    keys = [f.key for f in futures]
    retried = spider.run_on_scheduler(lambda dask_scheduler: [k for k in keys if dask_scheduler.tasks[k].suspicious])
    assert retried  # the victim's tasks in flight ran again on the other worker
    assert wait_until_gone(executors) == []

    spider.wait_for_workers(2, timeout=60)  # the nanny started a new worker; the plugin set it up too
    deadline = time.monotonic() + 30
    while not (len(states := spider.run(_pool_state)) == 2 and None not in states.values()):
        assert time.monotonic() < deadline, f"the new worker has no pool: {states}"
        time.sleep(0.1)
    assert victim_pid not in {state[0] for state in states.values()}


@pytest.mark.slow
def test_cancelling_a_running_task_kills_its_executor(spider: Client) -> None:
    future = sd.submit(spider, req("sleep_ms", 30000), 60)
    deadline = time.monotonic() + 30
    while not (worker := next((w for w, keys in spider.processing().items() if future.key in keys), None)):
        assert time.monotonic() < deadline, "the task never ran"
        time.sleep(0.01)
    time.sleep(0.3)  # its executor is in the task now
    worker_pid = spider.run(os.getpid, workers=[worker])[worker]
    executors = executors_of(worker_pid)
    assert len(executors) == 2

    started = time.monotonic()
    future.cancel()
    deadline = started + 5
    while len(left := [pid for pid, start in executors.items() if alive(pid, start)]) == 2:
        assert time.monotonic() < deadline, "no executor was killed"
        time.sleep(0.01)
    assert len(left) == 1 and time.monotonic() - started < 2  # the other slot's executor lives on
    # The pool replaced the killed executor and serves the next request there.
    again = [sd.submit(spider, req("fibonacci", 10 + i), 5, workers=[worker]) for i in range(2)]
    assert [f.result(timeout=60).values for f in again] == [[55], [89]]
    deadline = time.monotonic() + 30
    while True:  # settled: both slots with a ready executor, for the tests after this one
        _, pids, _ = spider.run(_pool_state, workers=[worker])[worker]
        if None not in pids and set(executors_of(worker_pid)) == set(pids):
            break
        assert time.monotonic() < deadline, (pids, executors_of(worker_pid))
        time.sleep(0.05)


@pytest.mark.slow
def test_unregistering_the_plugin_reaps_every_executor(spider: Client) -> None:
    executors: dict[int, int] = {}
    for worker_pid, pids, _ in spider.run(_pool_state).values():
        found = executors_of(worker_pid)
        assert set(found) == set(pids) and len(found) == 2
        executors.update(found)

    spider.unregister_worker_plugin(sd.PLUGIN_NAME)
    assert wait_until_gone(executors, timeout=0.5) == []  # unregister returns once the pools are closed
    assert set(spider.run(_pool_state).values()) == {None}

    future = sd.submit(spider, req("fibonacci", 10), 5)
    with pytest.raises(sd.WorkerPoolError, match=r"^no spider-core pool on Dask worker tcp://127\.0\.0\.1:\d+: "
                                                 r"register one with client\.register_plugin\(SpiderWorkerPlugin\(config\)\)$"):
        future.result(timeout=60)


@pytest.mark.slow
def test_unregistering_while_the_pools_start_leaves_no_pool(spider: Client, config: sc.PoolConfig) -> None:
    spider.unregister_worker_plugin(sd.PLUGIN_NAME)
    worker_pids = list(spider.run(os.getpid).values())
    registering = threading.Thread(target=spider.register_plugin, args=(sd.SpiderWorkerPlugin(config),))
    registering.start()
    deadline = time.monotonic() + 30
    while not any(executors_of(pid) for pid in worker_pids):  # a pool is starting
        assert time.monotonic() < deadline, "no pool started"
        time.sleep(0.002)
    spider.unregister_worker_plugin(sd.PLUGIN_NAME)  # its teardown waits for the setup to end
    registering.join(60)
    assert set(spider.run(_pool_state).values()) == {None}
    assert [executors_of(pid) for pid in worker_pids] == [{}, {}]


@pytest.mark.slow
def test_closing_the_cluster_shuts_every_executor_down(config: sc.PoolConfig, tmp_path: Path) -> None:
    config = attrs.evolve(config, standby=True, log_dir=tmp_path / "logs", em_id="dask")
    with LocalCluster(**CLUSTER) as cluster, Client(cluster) as client:
        client.register_plugin(sd.SpiderWorkerPlugin(config))
        assert [o.values for o in client.gather(sd.map(client, [req("fibonacci", i) for i in range(20)]))] == [
            [f] for f in FIB]
        deadline = time.monotonic() + 30
        while not all(client.run(_standbys_ready).values()):
            assert time.monotonic() < deadline, "the standbys never became ready"
            time.sleep(0.05)
        executors: dict[int, int] = {}
        for worker_pid in client.run(os.getpid).values():
            found = executors_of(worker_pid)
            assert len(found) == 4, found  # two slots, each with its standby
            executors.update(found)
        names = sorted(str(n) for n in client.run(lambda dask_worker: dask_worker.name).values())
    assert wait_until_gone(executors, timeout=5) == []
    # Each worker's pool logged under its own name, and every executor exited on Shutdown (a
    # worker that died without its teardown would have left them to PR_SET_PDEATHSIG's SIGKILL).
    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert {log.name.rpartition("-")[0] for log in logs} == {f"dask-{name}" for name in names}
    assert len(logs) == 8
    for log in logs:
        assert '"event": "exit"' in log.read_text().splitlines()[-1] and '"shutdown"' in log.read_text(), log


# -- setup errors and the upload option ----------------------------------------------------------


@pytest.mark.slow
def test_a_missing_package_dir_is_one_clear_error(spider: Client, config, tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    workers = set(spider.scheduler_info()["workers"])
    with pytest.raises(sd.WorkerPoolError) as registered:
        spider.register_plugin(sd.SpiderWorkerPlugin(attrs.evolve(config, package_dir=missing)))
    message = str(registered.value)
    assert message.startswith(f"package_dir {missing} does not exist on Dask worker ")
    assert message.rpartition(" ")[2] in workers and "\n" not in message

    future = sd.submit(spider, req("fibonacci", 10), 5)
    with pytest.raises(sd.WorkerPoolError) as submitted:
        future.result(timeout=60)
    assert str(submitted.value).startswith(f"package_dir {missing} does not exist on Dask worker ")
    assert isinstance(submitted.value, sc.InternalError)


@pytest.mark.slow
def test_upload_ships_a_package_dir_that_only_the_client_has(spider: Client, config, package_dir: Path,
                                                            tmp_path: Path) -> None:
    local = tmp_path / "client-only"
    shutil.copytree(package_dir, local)
    (local / PKG / "__pycache__").mkdir()  # not shipped
    plugin = sd.SpiderWorkerPlugin(attrs.evolve(config, package_dir=tmp_path / "nowhere"), upload=local)
    shutil.rmtree(local)  # the plugin carries the packages; nothing is read from here again
    spider.register_plugin(plugin)

    assert sd.submit(spider, req("fibonacci", 10), 5).result(timeout=60).values == [55]
    dirs = spider.run(lambda dask_worker: (str(sd.worker_pool(dask_worker).config.package_dir),
                                           dask_worker.local_directory))
    for package_dir_there, local_directory in dirs.values():
        assert package_dir_there.startswith(local_directory + "/spider-core-packages/")
        assert sorted(p.name for p in Path(package_dir_there).iterdir()) == [PKG]
        assert not (Path(package_dir_there) / PKG / "__pycache__").exists()


def test_upload_of_a_missing_directory_is_refused_at_once(config, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^cannot upload the package directory .*/gone: it does not exist$"):
        sd.SpiderWorkerPlugin(config, upload=tmp_path / "gone")


def test_the_upload_archive_unpacks_once_per_content(package_dir: Path, tmp_path: Path) -> None:
    archive = sd._pack(package_dir)
    assert sd._pack(package_dir) == archive  # reproducible: the same files give the same archive
    first = sd._unpack(archive, tmp_path)
    assert sd._unpack(archive, tmp_path) == first
    assert (first / PKG / f"lib{PKG}.so").read_bytes() == (package_dir / PKG / f"lib{PKG}.so").read_bytes()
    assert [p.name for p in (tmp_path / "spider-core-packages").iterdir()] == [first.name]


def test_the_plugin_refuses_anything_but_a_pool_config(package_dir: Path) -> None:
    with pytest.raises(TypeError, match="config must be a PoolConfig, got dict"):
        sd.SpiderWorkerPlugin({"package_dir": package_dir})  # type: ignore[arg-type]


# -- imports -----------------------------------------------------------------------------------


def test_spider_core_and_its_executor_do_not_import_dask() -> None:
    code = ("import sys, spider_core, spider_core.executor, spider_core.pool; spider_core.SyncProcessPool; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
