"""``spider batch --dask``: the batch on a real Dask cluster of worker processes, through the
installed ``spider`` entry point and the real C package.

``--dask local:N`` starts its own ``LocalCluster`` inside the ``spider`` process (a second or
two); the tests of a running scheduler share one module-scoped ``LocalCluster`` of this process.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster

from helpers import SPIDER, call, results, write_requests
from spider_core.dask import worker as sd

PKG = "integration_test_tasks"


def spider(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPIDER_")}
    full_env.update(env or {})
    return subprocess.run([str(SPIDER), *args], capture_output=True, text=True, env=full_env, timeout=timeout)


def one_clear_line(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- processes ---------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process, or None if there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> dict[int, tuple[int, str]]:
    """Every live process under ``root``: pid -> (start time, command line)."""
    children: dict[int, list[int]] = {}
    starts = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children.setdefault(stat[1], []).append(int(entry))
            starts[int(entry)] = stat[2]
    found, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found[pid] = (starts[pid], _cmdline(pid))
        todo.extend(children.get(pid, []))
    return found


def alive(pid: int, started: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] == started and stat[0] not in "ZX"


def still_alive(processes: dict[int, tuple[int, str]], timeout: float) -> list[str]:
    """The command lines of ``processes`` still alive after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = [cmd for pid, (started, cmd) in processes.items() if alive(pid, started)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def workers_and_executors(processes: dict[int, tuple[int, str]]) -> tuple[list[int], list[int]]:
    workers = [pid for pid, (_, cmd) in processes.items() if "multiprocessing.spawn" in cmd]
    executors = [pid for pid, (_, cmd) in processes.items() if "spider_core.executor" in cmd]
    return workers, executors


class Runner:
    """``spider batch ...`` in the background, watching every process it starts."""

    def __init__(self, *args: str, group: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPIDER_")}
        self.proc = subprocess.Popen([str(SPIDER), "batch", *args], stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=group)
        self.seen: dict[int, tuple[int, str]] = {}

    def watch(self) -> None:
        for pid, (started, cmd) in descendants(self.proc.pid).items():
            if cmd or self.seen.get(pid, (None,))[0] != started:  # a zombie has no command line
                self.seen[pid] = (started, cmd)

    def wait_for_lines(self, out: Path, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not (out.exists() and len(results(out)) >= count):
            assert self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline, f"fewer than {count} results in {out}"
            self.watch()
            time.sleep(0.05)
        self.watch()

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, "spider batch did not end"
            self.watch()
            time.sleep(0.05)
        return self.proc.returncode, self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stderr.close()


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for runner in made:
        runner.close()


def comparable(path: Path) -> dict[Any, dict]:
    """The records of a results file by id, without what differs between two runs."""
    records = {}
    for record in results(path):
        record.pop("executor_id", None)
        record.pop("elapsed_us", None)
        records[record["id"]] = record
    return records


def summary_counts(stderr: str) -> tuple[int, str]:
    """The count and the outcomes of ``spider batch``'s summary line."""
    match = re.search(r"^spider batch: finished in [0-9.]+s: (\d+) done \([0-9.]+/s\): (.*)$", stderr, re.M)
    assert match, stderr
    return int(match[1]), match[2]


def mixed(n: int) -> list[object]:
    lines: list[object] = []
    for i in range(n):
        kind = i % 8
        if kind == 2:
            lines.append(call(str(i), "always_fail"))
        elif kind == 4:
            lines.append(call(str(i), "segfault" if i % 16 == 4 else "always_panic"))
        elif kind == 6:
            lines.append(call(str(i), "sleep_ms", 5000, timeout=0.5))
        else:
            lines.append(call(str(i), "fibonacci", i % 20))
    return lines


# -- local:N -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dask_local_gives_the_outcomes_of_a_local_batch_and_leaves_no_process(
    package_dir: Path, tmp_path: Path, runners: list[Runner]
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [*mixed(40), "not json"])
    local = spider("batch", str(requests), "--out", str(tmp_path / "local.jsonl"), "--package-dir", str(package_dir),
                   "--slots", "2")
    out = tmp_path / "dask.jsonl"
    with socket.socket() as dashboard:
        with contextlib.suppress(OSError):  # else someone else has it
            dashboard.bind(("", 8787))  # Dask's default port: the cluster needs none of its own
        runners.append(runner := Runner(str(requests), "--out", str(out), "--package-dir", str(package_dir),
                                        "--slots", "2", "--dask", "local:2"))
        status, stderr = runner.finish()

    assert (status, local.returncode) == (1, 1) and "Traceback" not in stderr
    assert len(results(out)) == 41 and comparable(out) == comparable(tmp_path / "local.jsonl")
    assert {r["outcome"] for r in results(out)} == {"success", "task_failure", "crash", "timeout", "invalid_request"}
    # The same summary; no line from Dask or from the workers' pools.
    assert summary_counts(stderr) == summary_counts(local.stderr) == (41, "25 ok, 6 failed, 5 crashed, 5 timed out, 0 skipped")
    assert all(line.startswith("spider batch: ") for line in stderr.splitlines()), stderr
    workers, executors = workers_and_executors(runner.seen)
    assert len(workers) == 2 and len(executors) >= 4, runner.seen  # two workers, each with its two slots
    assert still_alive(runner.seen, timeout=5) == []


@pytest.mark.slow
def test_dask_local_killed_then_resumed_loses_and_repeats_nothing(
    package_dir: Path, tmp_path: Path, runners: list[Runner]
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call(str(i), "sleep_ms", 100) for i in range(60)])
    out = tmp_path / "o.jsonl"
    args = [str(requests), "--out", str(out), "--package-dir", str(package_dir), "--slots", "2", "--dask", "local:2"]
    runners.append(first := Runner(*args))
    first.wait_for_lines(out, 7)
    assert len(workers_and_executors(first.seen)[1]) == 4  # two workers' pools of two executors, all busy
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    # The workers exit with their parent, and their executors with them.
    assert still_alive(first.seen, timeout=15) == []
    assert out.read_text().endswith("\n")
    done = [r["id"] for r in results(out)]
    assert 7 <= len(done) < 60 and len(set(done)) == len(done)

    runners.append(second := Runner(*args, "--resume"))
    status, stderr = second.finish()
    assert status == 0, stderr
    assert f"{len(done)} skipped" in stderr
    ids = [r["id"] for r in results(out)]
    assert ids[: len(done)] == done and sorted(ids, key=int) == [str(i) for i in range(60)]
    assert all(r["outcome"] == "success" for r in results(out))
    assert still_alive(second.seen, timeout=5) == []


@pytest.mark.slow
def test_dask_local_reruns_the_requests_of_a_killed_worker(package_dir: Path, tmp_path: Path,
                                                           runners: list[Runner]) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call(str(i), "sleep_ms", 300) for i in range(40)])
    out = tmp_path / "o.jsonl"
    runners.append(runner := Runner(str(requests), "--out", str(out), "--package-dir", str(package_dir), "--slots", "2",
                                    "--dask", "local:2"))
    runner.wait_for_lines(out, 4)
    victim = next(pid for pid in workers_and_executors(runner.seen)[0] if workers_and_executors(descendants(pid))[1])
    os.kill(victim, signal.SIGKILL)  # with two requests running in its slots
    status, stderr = runner.finish()
    assert status == 0, stderr
    ids = [r["id"] for r in results(out)]
    assert sorted(ids, key=int) == [str(i) for i in range(40)]  # each request exactly once
    assert len(workers_and_executors(runner.seen)[0]) == 3, runner.seen  # the nanny started another worker
    assert still_alive(runner.seen, timeout=5) == []


SIGNALS = pytest.mark.parametrize(("signum", "status", "line"), [
    pytest.param(signal.SIGINT, 130, "spider: interrupted", id="SIGINT"),
    pytest.param(signal.SIGTERM, 143, "spider: terminated", id="SIGTERM"),
    pytest.param(signal.SIGHUP, 129, "spider: terminated", id="SIGHUP"),
])


@pytest.mark.slow
@SIGNALS
def test_dask_local_interrupted_keeps_its_lines_and_leaves_no_process(
    package_dir: Path, tmp_path: Path, runners: list[Runner], signum: int, status: int, line: str
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("quick", "fibonacci", 5),
                                                     *(call(str(i), "sleep_ms", 30000) for i in range(4))])
    out = tmp_path / "o.jsonl"
    # In a process group of its own, signalled as a terminal signals its foreground group:
    # the workers, in the same group, leave the signal to spider.
    runners.append(runner := Runner(str(requests), "--out", str(out), "--package-dir", str(package_dir),
                                    "--slots", "2", "--dask", "local:2", "--quiet", group=True))
    runner.wait_for_lines(out, 1)
    deadline = time.monotonic() + 30
    while len(workers_and_executors(runner.seen)[1]) < 4:  # both workers' pools
        assert time.monotonic() < deadline, runner.seen
        time.sleep(0.05)
        runner.watch()
    time.sleep(0.3)  # their four slots run the four long requests
    started = time.monotonic()
    os.killpg(runner.proc.pid, signum)
    assert runner.finish(timeout=20) == (status, line + "\n")
    assert time.monotonic() - started < 10  # the running requests are cancelled, not waited for
    assert [r["id"] for r in results(out)] == ["quick"] and out.read_text().endswith("\n")
    assert still_alive(runner.seen, timeout=5) == []


# -- usage errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["local:0", "local:x", "local:", "local", "local:-2", "local:1.5", "local:100000",
                                   "", "tcp://a b"])
def test_bad_dask_values_are_usage_errors(tmp_path: Path, value: str) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o"), "--package-dir", str(tmp_path),
                  "--dask", value)
    assert done.returncode == 2
    message = one_clear_line(done)
    assert message.startswith("spider: error: batch: argument --dask: ") and message.endswith(
        " (see `spider batch --help`)")
    if value.startswith("local"):
        assert "local:N takes a number of worker processes N from 1 to 256" in message
    else:
        assert "is not a Dask scheduler address (such as tcp://host:8786) or local:N" in message
    assert not (tmp_path / "o").exists()


def test_dask_without_distributed_is_one_line(package_dir: Path, tmp_path: Path) -> None:
    fake = tmp_path / "site" / "distributed"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'distributed'\", name='distributed')\n")
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o"), "--package-dir", str(package_dir),
                  "--dask", "local:1", env={"PYTHONPATH": str(tmp_path / "site")})
    assert done.returncode == 2
    assert one_clear_line(done) == "spider: error: --dask needs Dask's distributed: pip install 'spider-core-pool[dask]'"
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_clear_line(package_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as closed:  # bound, never listening: every connection is refused
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
        requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
        started = time.monotonic()
        done = spider("batch", str(requests), "--out", str(tmp_path / "o"), "--package-dir", str(package_dir),
                      "--dask", address)
    assert done.returncode == 2
    assert one_clear_line(done) == f"spider: error: cannot reach the Dask scheduler at {address}: no answer within 10 s"
    assert time.monotonic() - started < 30


@pytest.mark.slow
def test_an_address_dask_cannot_use_is_one_clear_line(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o"), "--package-dir", str(package_dir),
                  "--dask", "nosuchscheme://host:1")
    assert done.returncode == 2
    assert one_clear_line(done).startswith(
        "spider: error: cannot use the Dask scheduler at nosuchscheme://host:1: unknown address scheme 'nosuchscheme'")


# -- a running scheduler -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=2, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        yield client


def _worker_state(dask_worker: Any) -> tuple[int, bool]:
    """On a worker: its process id and whether it has a spider-core pool."""
    try:
        sd.worker_pool(dask_worker)
    except sd.WorkerPoolError:
        return os.getpid(), False
    return os.getpid(), True


def executors_under(pids: list[int]) -> dict[int, tuple[int, str]]:
    return {pid: v for worker in pids for pid, v in descendants(worker).items() if "spider_core.executor" in v[1]}


@pytest.mark.slow
def test_dask_address_runs_on_the_cluster_and_takes_its_pools_away_after(
    client: Client, package_dir: Path, tmp_path: Path, runners: list[Runner]
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", mixed(24))
    local = spider("batch", str(requests), "--out", str(tmp_path / "local.jsonl"), "--package-dir", str(package_dir),
                   "--slots", "2")
    out = tmp_path / "o.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--slots", "2",
                  "--dask", client.scheduler.address)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert comparable(out) == comparable(tmp_path / "local.jsonl") and local.returncode == 1
    # The batch unregistered its plugin: no worker keeps a pool, or an executor.
    states = client.run(_worker_state)
    assert len(states) == 2 and not any(has_pool for _, has_pool in states.values())
    assert executors_under([pid for pid, _ in states.values()]) == {}


def _executing(dask_worker: Any) -> int:
    return sum(task.state == "executing" for task in dask_worker.state.tasks.values())


@pytest.mark.slow
@pytest.mark.parametrize("when", ["running", "starting"])
def test_dask_address_interrupted_leaves_nothing_running_on_the_workers(
    client: Client, package_dir: Path, tmp_path: Path, runners: list[Runner], when: str
) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call(str(i), "sleep_ms", 30000) for i in range(6)])
    out = tmp_path / "o.jsonl"
    worker_pids = [pid for pid, _ in client.run(_worker_state).values()]
    assert executors_under(worker_pids) == {}  # the executors below are the batch's
    runners.append(runner := Runner(str(requests), "--out", str(out), "--package-dir", str(package_dir),
                                    "--slots", "2", "--dask", client.scheduler.address, "--quiet"))
    deadline = time.monotonic() + 30
    if when == "starting":  # as soon as the first pool is there: the plugin is being registered
        while not (executors := executors_under(worker_pids)):
            assert time.monotonic() < deadline and runner.proc.poll() is None
            time.sleep(0.005)
    else:  # the four requests are running
        while sum(client.run(_executing).values()) < 4:
            assert time.monotonic() < deadline and runner.proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.2)
        executors = executors_under(worker_pids)
        assert len(executors) == 4
    runner.proc.send_signal(signal.SIGINT)
    assert runner.finish(timeout=30) == (130, "spider: interrupted\n")
    # Every executor is gone, its request killed rather than left to sleep 30 s, and with it
    # the pools: the batch's plugin is unregistered.
    assert still_alive(executors, timeout=5) == []
    assert executors_under(worker_pids) == {}
    assert not any(has_pool for _, has_pool in client.run(_worker_state).values())
    assert not out.exists() or results(out) == []


@pytest.mark.slow
def test_workers_without_the_package_dir_are_one_clear_line(client: Client, tmp_path: Path) -> None:
    missing = tmp_path / "only-on-the-workers"  # need not exist here: it is the workers' path
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o"), "--package-dir", str(missing),
                  "--dask", client.scheduler.address)
    assert done.returncode == 2
    message = one_clear_line(done)
    assert message.startswith(f"spider: error: package_dir {missing} does not exist on Dask worker tcp://")
    assert message.rpartition(" ")[2] in client.scheduler_info()["workers"]
    assert not any(has_pool for _, has_pool in client.run(_worker_state).values())


@pytest.mark.slow
def test_local_dask_needs_the_package_dir_here(tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o"), "--package-dir", str(tmp_path / "missing"),
                  "--dask", "local:1")
    assert done.returncode == 2
    assert one_clear_line(done) == f"spider: error: package directory {tmp_path / 'missing'} does not exist or is not a directory"

