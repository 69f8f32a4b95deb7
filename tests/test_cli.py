"""The `spider` command line, through the installed entry point."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import SPIDER, call, results, write_requests

PKG = "integration_test_tasks"


def spider(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SPIDER_")}
    full_env.update(env or {})
    return subprocess.run([str(SPIDER), *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


@pytest.fixture
def run(package_dir: Path):
    def run(*args: str, **kwargs):
        return spider("run", "--package-dir", str(package_dir), *args, **kwargs)

    return run


def one_clear_line(done: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


# -- spider run --------------------------------------------------------------------------------


def test_run_success_prints_a_json_array(run) -> None:
    done = run(PKG, "fibonacci", "10")
    assert (done.returncode, done.stdout, done.stderr) == (0, "[55]\n", "")


def test_run_with_a_fork_server(run) -> None:
    done = run(PKG, "fibonacci", "10", "--start-method", "forkserver", "--json")
    record = json.loads(done.stdout)
    assert (done.returncode, record["outcome"], record["values"]) == (0, "success", [55])


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--start-method", "spawn"],
      "argument --start-method: invalid choice: 'spawn' (choose from 'exec', 'forkserver') (see `spider run --help`)"),
     (["--start-method", "forkserver", "--executor", "/bin/true"],
      "--start-method forkserver needs spider-core's own executor, and --executor runs spider's")],
    ids=["unknown", "with-the-rust-executor"],
)
def test_a_start_method_that_cannot_serve_is_one_line_and_exit_2(run, argv: list[str], message: str) -> None:
    done = run(PKG, "fibonacci", "10", *argv)
    assert done.returncode == 2 and one_clear_line(done).endswith(message), done.stderr


@pytest.mark.slow
def test_run_takes_json_arguments(run) -> None:
    done = run(PKG, "sleep_and_echo", '["a", "b c"]')
    assert done.returncode == 0 and json.loads(done.stdout) == [["a", "b c"]]


@pytest.mark.slow
def test_run_json_record(run) -> None:
    done = run(PKG, "fibonacci", "10", "--json")
    record = json.loads(done.stdout)
    assert record["outcome"] == "success" and record["values"] == [55] and record["executor_id"] == 1


def test_run_package_dir_from_the_environment(package_dir: Path) -> None:
    done = spider("run", PKG, "fibonacci", "7", env={"SPIDER_TDL_PACKAGE_DIR": str(package_dir)})
    assert done.returncode == 0 and done.stdout == "[13]\n"


@pytest.mark.slow
def test_exit_1_task_failure(run) -> None:
    done = run(PKG, "always_fail")
    assert done.returncode == 1 and done.stdout == ""
    assert one_clear_line(done) == f"spider: {PKG}/always_fail: ExecutionError: always_fail: intentional failure"


def test_exit_1_task_failure_json(run) -> None:
    done = run(PKG, "always_fail", "--json")
    record = json.loads(done.stdout)
    assert done.returncode == 1
    assert record["outcome"] == "task_failure"
    assert record["error"] == {"TaskError": {"ExecutionError": "always_fail: intentional failure"}}


@pytest.mark.slow
def test_exit_3_timeout(run) -> None:
    done = run(PKG, "fibonacci", "45", "--timeout", "0.3", "--json")
    assert done.returncode == 3
    assert json.loads(done.stdout) == {"outcome": "timeout", "hard_timeout": 0.3, "executor_id": 1}
    assert "hard timeout of 0.3s" in one_clear_line(done)


@pytest.mark.slow
def test_exit_4_crash(run) -> None:
    done = run(PKG, "segfault", "--json")
    assert done.returncode == 4
    assert json.loads(done.stdout)["signal"] == "SIGSEGV"
    assert "signal SIGSEGV" in one_clear_line(done)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([PKG, "fibonacci", "{bad"], "argument 1 ('{bad') is not a JSON value"),
        (["../etc", "fibonacci", "1"], "invalid package name '../etc'"),
        (["absent", "fibonacci", "1"], "no task package named 'absent'"),
        ([PKG, "no_such_task"], "has no task named 'no_such_task'"),
        ([PKG, "fibonacci", "100000000000000000000000"], "cannot encode the inputs"),
    ],
)
@pytest.mark.slow
def test_exit_2_bad_input(run, args: list[str], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2, done.stderr
    assert message in one_clear_line(done)



@pytest.mark.slow
def test_a_missing_or_unloadable_package_is_one_error_in_run_batch_and_the_api(package_dir: Path, tmp_path: Path) -> None:
    import spider_core as sc
    from spider_core.commands.reporting import outcome_record

    packages = tmp_path / "packages"
    packages.mkdir()
    (packages / PKG).symlink_to(package_dir / PKG)
    (packages / "junk").mkdir()
    (packages / "junk" / "libjunk.so").write_bytes(b"not a library")
    names = ["absent", "junk"]
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=packages)) as pool:
        api = {name: pool.execute(sc.ExecuteRequest(package=name, task="fibonacci", inputs=[3]), hard_timeout=10)
               for name in names}
    requests = write_requests(tmp_path / "r.jsonl", [{**call(name, "fibonacci", 3), "package": name} for name in names])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o.jsonl"), "--package-dir", str(packages), "--quiet")
    assert done.returncode == 1
    batch = {r["id"]: r for r in results(tmp_path / "o.jsonl")}
    for name in names:
        outcome = api[name]
        assert isinstance(outcome, sc.InTaskFailure) and isinstance(outcome.error, sc.InvalidLibrary), outcome
        expected = {key: outcome_record(outcome)[key] for key in ("outcome", "error", "message")}
        done = spider("run", "--package-dir", str(packages), name, "fibonacci", "3", "--json")
        assert done.returncode == 2, done.stderr
        record = json.loads(done.stdout)
        assert one_clear_line(done) == f"spider: {name}/fibonacci: {record['message']}"
        for found in (record, batch[name]):
            assert {key: found[key] for key in expected} == expected
    assert "no task package named 'absent'" in batch["absent"]["message"]
    assert "cannot load" in batch["junk"]["message"]

@pytest.mark.slow
def test_exit_2_missing_package_dir(tmp_path: Path) -> None:
    done = spider("run", "--package-dir", str(tmp_path / "nope"), PKG, "fibonacci", "1")
    assert done.returncode == 2 and "does not exist" in one_clear_line(done)
    done = spider("run", PKG, "fibonacci", "1")  # no package directory: installed packages only
    assert done.returncode == 2
    assert (f"no task package named {PKG!r} installed, and no package directory is set (SPIDER_TDL_PACKAGE_DIR)"
            in one_clear_line(done))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run"], "spider: error: run: the following arguments are required: PACKAGE, TASK (see `spider run --help`)"),
        ([], "spider: error: the following arguments are required: COMMAND (see `spider --help`)"),
        (["frobnicate"], "spider: error: argument COMMAND: invalid choice: 'frobnicate'"),
        (["batch", "r.jsonl", "--out", ""], "spider: error: batch: argument --out: an empty path names no file"),
        (["build-package", "", "--out", "x"], "spider: error: build-package: argument SRC: an empty path names no file"),
        (["bench", "--calls", "0"], "spider: error: bench: argument --calls: '0' must be at least 1"),
        (["bench", "--calls", "x"], "spider: error: bench: argument --calls: 'x' is not a whole number"),
    ],
)
def test_exit_2_usage_is_one_line(args: list[str], message: str) -> None:
    done = spider(*args)
    assert done.returncode == 2 and one_clear_line(done).startswith(message)


@pytest.mark.slow
def test_json_record_of_an_invalid_request(run) -> None:
    done = run(PKG, "fibonacci", str(2**70), "--json")
    assert done.returncode == 2
    record = json.loads(done.stdout)
    assert (record["outcome"], record["error"]) == ("invalid_request", "EncodeTaskInputs")


def test_log_dir_that_is_a_file(run, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    done = run(PKG, "fibonacci", "1", "--log-dir", str(tmp_path / "afile"))
    assert done.returncode == 2
    assert one_clear_line(done) == f"spider: error: cannot write logs to {tmp_path / 'afile'}: it is not a directory"


def test_a_closed_stdout_is_an_error_not_a_silent_success(package_dir: Path) -> None:
    done = subprocess.run(f"{SPIDER} run --package-dir {package_dir} {PKG} fibonacci 5 >&-", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 5
    assert one_clear_line(done) == "spider: error: cannot write output: standard output is closed"


def test_bench_cannot_write_its_report(package_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = spider("bench", "--package-dir", str(package_dir), "--quick", "--output", str(tmp_path / "file" / "r"))
    assert done.returncode == 2
    assert one_clear_line(done) == f"spider: error: cannot use {tmp_path / 'file' / 'r'}: Not a directory"


def test_exit_2_bad_timeout(run) -> None:
    done = run(PKG, "fibonacci", "1", "--timeout", "0")
    assert done.returncode == 2 and "must be a positive number of seconds" in done.stderr


def test_exit_5_internal_error(package_dir: Path) -> None:
    done = spider("run", "--package-dir", str(package_dir), PKG, "fibonacci", "1",
                  env={"SPIDER_DISABLE_PLUGINS": "spider_supervisor"})
    assert done.returncode == 5
    assert "spider_launcher" in one_clear_line(done)


def test_help_documents_exit_statuses() -> None:
    done = spider("run", "--help")
    assert done.returncode == 0
    for line in ["0  success", "1  the task failed", "2  usage error", "3  the task hit its hard timeout",
                 "4  the executor crashed", "5  internal error"]:
        assert line in done.stdout


def test_log_dir(run, tmp_path: Path) -> None:
    done = run(PKG, "print_to_stdout", "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 0
    assert "hello from a task" in (tmp_path / "logs" / "spider-cli-1.log").read_text()


def test_python_m_spider_core(package_dir: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "spider_core", "run", "--package-dir", str(package_dir), PKG, "fibonacci", "5"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "[5]\n"


# -- spider batch ------------------------------------------------------------------------------


@pytest.mark.slow
def test_batch_with_a_crash_a_timeout_and_a_malformed_line(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "requests.jsonl", [
        call("a", "fibonacci", 10),
        call("b", "always_panic"),
        "this is not json",
        call("c", "fibonacci", 45, timeout=0.3),
        call("d", "fibonacci", 20),
        {"id": "e", "package": PKG},
        call("f", "always_fail"),
    ])
    out = tmp_path / "results.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    by_id = {r["id"]: r for r in results(out) if r["id"] is not None}
    assert by_id["a"]["values"] == [55] and by_id["a"]["outcome"] == "success"
    assert by_id["b"]["outcome"] == "crash" and by_id["b"]["signal"] == "SIGABRT"
    assert by_id["c"]["outcome"] == "timeout"
    assert by_id["d"]["values"] == [6765]
    assert by_id["f"]["outcome"] == "task_failure"
    malformed = [r for r in results(out) if r["outcome"] == "invalid_request"]
    assert [r["line"] for r in malformed] == [3, 6]
    assert "line 3: not valid JSON" in done.stderr and "line 6: 'task' must be a non-empty string" in done.stderr
    assert "finished in" in done.stderr and "1 crashed, 1 timed out" in done.stderr


def test_batch_all_successful_exits_0(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call(str(i), "fibonacci", i) for i in range(5)])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o.jsonl"), "--package-dir", str(package_dir))
    assert done.returncode == 0
    assert [r["values"] for r in results(tmp_path / "o.jsonl")] == [[0], [1], [1], [2], [3]]


def test_batch_strict_stops_at_a_malformed_line(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3), "{", call("b", "fibonacci", 4)])
    out = tmp_path / "o.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--strict")
    assert done.returncode == 2 and "line 2 is malformed and --strict is set" in done.stderr
    assert [r["id"] for r in results(out)] == ["a", None]


def test_batch_resume_skips_done_ids(package_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps({"id": "a", "line": 1, "outcome": "success", "values": [2]}) + "\n" + '{"id": "b", "outc')  # torn line
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3), call("b", "fibonacci", 4)])
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--resume")
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r.get("values")) for r in results(out)] == [("a", [2]), ("b", [3])]
    assert "dropped an incomplete last line" in done.stderr and "1 skipped" in done.stderr


@pytest.mark.slow
def test_killing_the_batch_runner_loses_no_written_line(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call(str(i), "sleep_ms", 100) for i in range(100)])
    out = tmp_path / "o.jsonl"
    runner = subprocess.Popen([str(SPIDER), "batch", str(requests), "--out", str(out), "--package-dir", str(package_dir)],
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 5):
        time.sleep(0.05)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    written = out.read_text()
    assert written.endswith("\n")
    first = results(out)
    assert len(first) >= 5 and all(r["outcome"] == "success" for r in first)
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--resume")
    assert done.returncode == 0
    ids = [r["id"] for r in results(out)]
    assert sorted(ids, key=int) == [str(i) for i in range(100)] and len(ids) == 100


@pytest.mark.slow
def test_batch_reads_requests_from_stdin(package_dir: Path, tmp_path: Path) -> None:
    long = "z" * 200_000  # a line over several reads of the pipe
    lines = [call("0", "fibonacci", 0), call("long", "sleep_and_echo", [long]), call("2", "fibonacci", 3)]
    text = "\n".join(json.dumps(line) for line in lines)  # the last line has no newline
    out = tmp_path / "o.jsonl"
    done = subprocess.run([str(SPIDER), "batch", "-", "--out", str(out), "--package-dir", str(package_dir)],
                          input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r["values"]) for r in results(out)] == [("0", [0]), ("long", [[long]]), ("2", [2])]


@pytest.mark.slow
def test_batch_reads_a_file_named_dash_given_as_dot_slash_dash(package_dir: Path, tmp_path: Path) -> None:
    write_requests(tmp_path / "-", [call("file", "fibonacci", 7)])
    done = subprocess.run([str(SPIDER), "batch", "./-", "--out", "o.jsonl", "--package-dir", str(package_dir)],
                          cwd=tmp_path, input="", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r["values"]) for r in results(tmp_path / "o.jsonl")] == [("file", [13])]


def wait_for_results(out: Path, count: int) -> list[dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if out.exists() and len(found := results(out)) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} results in {out} after 30 s")


@pytest.mark.slow
def test_batch_runs_each_piped_request_as_it_arrives(package_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    runner = subprocess.Popen([str(SPIDER), "batch", "-", "--out", str(out), "--package-dir", str(package_dir)],
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for i in range(3):  # the next line is written only once the previous result is on disk
            runner.stdin.write(json.dumps(call(str(i), "fibonacci", i + 5)).encode() + b"\n")
            runner.stdin.flush()
            assert [r["values"] for r in wait_for_results(out, i + 1)][-1] == [[5, 8, 13][i]]
        runner.stdin.close()
        assert runner.wait(60) == 0
    finally:
        runner.kill()
        runner.wait()
        runner.stderr.close()


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status", "line"), [
    pytest.param(signal.SIGINT, 130, "spider: interrupted", id="SIGINT"),
    pytest.param(signal.SIGTERM, 143, "spider: terminated", id="SIGTERM"),
    pytest.param(signal.SIGHUP, 129, "spider: terminated", id="SIGHUP"),
])
def test_batch_interrupted_while_waiting_for_input_exits_at_once(package_dir: Path, tmp_path: Path, signum: int,
                                                                 status: int, line: str) -> None:
    out = tmp_path / "o.jsonl"
    runner = subprocess.Popen([str(SPIDER), "batch", "-", "--out", str(out), "--package-dir", str(package_dir)],
                              stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        runner.stdin.write(json.dumps(call("a", "fibonacci", 3)) + "\n")
        runner.stdin.flush()
        wait_for_results(out, 1)  # the run is under way and waits for the next line
        # Only the main thread may take the signal: the reader thread blocked in read() blocks it.
        threads = [t for t in Path(f"/proc/{runner.pid}/task").iterdir() if t.name != str(runner.pid)]
        assert threads
        for thread in threads:
            blocked = int(re.search(r"^SigBlk:\s*([0-9a-f]+)$", (thread / "status").read_text(), re.M)[1], 16)
            assert blocked & (1 << (signum - 1)), f"thread {thread.name} would take signal {signum}"
        runner.send_signal(signum)
        assert runner.wait(10) == status  # the open stdin does not keep it alive
        assert runner.stderr.read().splitlines()[-1] == line and results(out)[0]["values"] == [2]
    finally:
        runner.kill()
        runner.wait()
        runner.stdin.close()
        runner.stderr.close()


@pytest.mark.slow
def test_batch_line_that_is_not_utf8_is_malformed_and_lines_split_only_at_newlines(
    package_dir: Path, tmp_path: Path
) -> None:
    requests = tmp_path / "r.jsonl"
    requests.write_bytes(
        json.dumps(call("a", "sleep_and_echo", ["x\u2028y"]), ensure_ascii=False).encode() + b"\n"
        + b'{"id": "\xff"}\n'
        + json.dumps(call("b", "fibonacci", 4)).encode() + b"\n"
    )
    out = tmp_path / "o.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir))
    assert done.returncode == 1
    records = results(out)
    assert [(r["id"], r["line"], r["outcome"]) for r in records] == [
        ("a", 1, "success"), (None, 2, "invalid_request"), ("b", 3, "success")
    ]
    assert records[0]["values"] == [["x\u2028y"]] and "line 2: not UTF-8 text; skipped" in done.stderr


def test_batch_refuses_an_out_file_in_a_missing_directory(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    out = tmp_path / "missing" / "dir" / "r.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir))
    assert done.returncode == 2
    assert one_clear_line(done) == (
        f"spider: error: --out {out}: the directory {out.parent} does not exist; create it first"
    )
    assert not (tmp_path / "missing").exists()


@pytest.mark.slow
def test_batch_refuses_standard_input_that_is_its_own_output(package_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps({"id": "a", "line": 1, "outcome": "success", "values": [1]}) + "\n")
    with out.open("rb") as stdin:  # it would read its own results back, without end
        done = subprocess.run([str(SPIDER), "batch", "-", "--out", str(out), "--package-dir", str(package_dir)],
                              stdin=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "is the requests file" in one_clear_line(done)
    assert len(results(out)) == 1


@pytest.mark.slow
def test_batch_keeps_an_id_that_utf8_cannot_hold(package_dir: Path, tmp_path: Path) -> None:
    requests = tmp_path / "r.jsonl"
    surrogate_id = json.dumps(call("placeholder", "fibonacci", 5)).replace('"placeholder"', '"\\ud800"')
    requests.write_text(surrogate_id + "\n" + json.dumps(call("z", "fibonacci", 6)) + "\n")
    out = tmp_path / "o.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir))
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r["values"]) for r in results(out)] == [("\ud800", [5]), ("z", [8])]
    again = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--resume")
    assert again.returncode == 0 and "2 skipped" in again.stderr


def test_batch_unreadable_requests(tmp_path: Path, package_dir: Path) -> None:
    done = spider("batch", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o"), "--package-dir", str(package_dir))
    assert done.returncode == 2 and "cannot read" in one_clear_line(done)



@pytest.mark.slow
def test_batch_slots_run_requests_at_once_and_write_them_as_they_complete(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call(str(i), "sleep_ms", 400) for i in range(4)])
    out = tmp_path / "o.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--slots", "2")
    assert done.returncode == 0, done.stderr
    records = results(out)
    assert sorted(r["id"] for r in records) == ["0", "1", "2", "3"]
    assert {r["executor_id"] for r in records} == {1, 2} and "4 ok" in done.stderr
    # The quick request waits for the first free slot, then overtakes the long one.
    requests = write_requests(tmp_path / "q.jsonl", [
        call("long", "sleep_ms", 1000), call("short", "sleep_ms", 200), call("quick", "fibonacci", 10),
    ])
    out = tmp_path / "q-out.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--slots", "2")
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r["line"]) for r in results(out)] == [("short", 2), ("quick", 3), ("long", 1)]


@pytest.mark.slow
def test_killing_a_batch_runner_with_slots_then_resuming_runs_each_request_once(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call(str(i), "sleep_ms", 100) for i in range(60)])
    out = tmp_path / "o.jsonl"
    base = ["batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--slots", "3"]
    runner = subprocess.Popen([str(SPIDER), *base], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 7):
        time.sleep(0.05)
    runner.send_signal(signal.SIGKILL)  # with requests running in all three slots
    runner.wait()
    assert out.read_text().endswith("\n")
    first = [r["id"] for r in results(out)]
    assert 7 <= len(first) < 60 and len(set(first)) == len(first)
    assert {r["executor_id"] for r in results(out)} == {1, 2, 3}
    done = spider(*base, "--resume")
    assert done.returncode == 0, done.stderr
    assert f"{len(first)} skipped" in done.stderr
    ids = [r["id"] for r in results(out)]
    assert ids[: len(first)] == first and sorted(ids, key=int) == [str(i) for i in range(60)]


@pytest.mark.parametrize("value, message", [("0", "'0' must be at least 1"), ("-3", "'-3' must be at least 1"),
                                            ("x", "'x' is not a whole number"), ("1.5", "'1.5' is not a whole number")])
def test_batch_bad_slots_is_a_usage_error(tmp_path: Path, value: str, message: str) -> None:
    done = spider("batch", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "o"), "--slots", value)
    assert done.returncode == 2
    assert one_clear_line(done) == f"spider: error: batch: argument --slots: {message} (see `spider batch --help`)"
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_batch_slots_with_crashes_timeouts_and_failures_among_many(package_dir: Path, tmp_path: Path) -> None:
    lines: list[object] = []
    expected = {}
    for i in range(24):
        kind = i % 6
        if kind == 1:
            lines.append(call(str(i), "always_panic"))
            expected[str(i)] = "crash"
        elif kind == 3:
            lines.append(call(str(i), "sleep_ms", 5000, timeout=0.3))
            expected[str(i)] = "timeout"
        elif kind == 4:
            lines.append(call(str(i), "always_fail"))
            expected[str(i)] = "task_failure"
        else:
            lines.append(call(str(i), "fibonacci", i))
            expected[str(i)] = "success"
    lines.insert(5, "not json")
    lines.insert(9, call("0", "fibonacci", 1))  # a duplicate: the first "0" wins
    requests = write_requests(tmp_path / "r.jsonl", lines)
    out = tmp_path / "o.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--slots", "3")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    records = results(out)
    assert len(records) == 26
    by_id = {r["id"]: r for r in records if r["id"] is not None}
    assert len(by_id) == 24 and {k: r["outcome"] for k, r in by_id.items()} == expected
    assert by_id["0"]["line"] == 1 and by_id["0"]["values"] == [0] and by_id["8"]["values"] == [21]
    assert all(r["signal"] == "SIGABRT" for r in by_id.values() if r["outcome"] == "crash")
    ids = [r["id"] for r in records]
    assert ids.index("5") < ids.index("3")  # run in another slot while "3" ran into its timeout
    malformed = sorted((r["line"], r["message"]) for r in records if r["id"] is None)
    assert [line for line, _ in malformed] == [6, 10] and malformed[0][1].startswith("not valid JSON")
    assert malformed[1][1] == "duplicate id '0' (first on line 1)"
    assert "26 done" in done.stderr and "12 ok, 6 failed, 4 crashed, 4 timed out" in done.stderr


@pytest.mark.slow
def test_batch_slots_interrupted_cancels_the_running_requests(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [
        call("quick", "fibonacci", 5), call("long", "sleep_ms", 20000), call("longer", "sleep_ms", 20000),
    ])
    out = tmp_path / "o.jsonl"
    runner = subprocess.Popen([str(SPIDER), "batch", str(requests), "--out", str(out), "--package-dir", str(package_dir),
                               "--slots", "2"], stderr=subprocess.PIPE, text=True)
    try:
        assert [r["id"] for r in wait_for_results(out, 1)] == ["quick"]
        time.sleep(0.2)  # both long requests hold a slot
        runner.send_signal(signal.SIGINT)
        assert runner.wait(10) == 130
        assert "spider: interrupted" in runner.stderr.read()
        assert [r["id"] for r in results(out)] == ["quick"]
    finally:
        runner.kill()
        runner.wait()
        runner.stderr.close()




def children(pid: int) -> list[int]:
    """The executors whose parent is ``pid`` (its children but the pool's guard process)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid and b"os.killpg" not in cmdline:
            found.append(int(stat.parent.name))
    return found


def wait_for_log(path: Path, event: str) -> None:
    """Wait until the log at ``path`` (its wildcards matching one file) holds ``event``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(f'"event": "{event}"' in log.read_text() for log in Path(path.anchor).glob(str(path.relative_to(path.anchor)))):
            return
        time.sleep(0.02)
    raise AssertionError(f"no {event!r} event in {path} after 30 s")


SIGNALS = pytest.mark.parametrize(("signum", "status", "line"), [
    pytest.param(signal.SIGTERM, 143, "spider: terminated", id="SIGTERM"),
    pytest.param(signal.SIGHUP, 129, "spider: terminated", id="SIGHUP"),
    pytest.param(signal.SIGINT, 130, "spider: interrupted", id="SIGINT"),
])


@pytest.mark.slow
@SIGNALS
def test_a_signal_ends_run_with_one_line_and_reaps_the_executor(package_dir: Path, tmp_path: Path, signum: int,
                                                                 status: int, line: str) -> None:
    runner = subprocess.Popen([str(SPIDER), "run", "--package-dir", str(package_dir), "--log-dir", str(tmp_path),
                               PKG, "sleep_ms", "20000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_log(tmp_path / "spider-cli-1.log", "package loaded")  # the task is running
        executors = children(runner.pid)
        assert len(executors) == 1
        runner.send_signal(signum)
        assert runner.wait(10) == status
        assert (runner.stdout.read(), runner.stderr.read()) == ("", line + "\n")
        assert [pid for pid in executors if Path(f"/proc/{pid}").exists()] == []  # killed and reaped
    finally:
        runner.kill()
        runner.communicate()


@pytest.mark.slow
@SIGNALS
def test_a_signal_ends_batch_with_one_line_keeping_the_written_lines(package_dir: Path, tmp_path: Path, signum: int,
                                                                     status: int, line: str) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [
        call("quick", "fibonacci", 5), call("long", "sleep_ms", 20000), call("longer", "sleep_ms", 20000),
    ])
    out = tmp_path / "o.jsonl"
    runner = subprocess.Popen([str(SPIDER), "batch", str(requests), "--out", str(out), "--package-dir", str(package_dir),
                               "--slots", "2", "--quiet", "--log-dir", str(tmp_path / "logs")],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert [r["id"] for r in wait_for_results(out, 1)] == ["quick"]
        for executor_id in (1, 2):  # both long requests hold a slot
            wait_for_log(tmp_path / "logs" / f"spider-cli-{executor_id}.log", "package loaded")
        executors = children(runner.pid)
        assert len(executors) == 2
        runner.send_signal(signum)
        assert runner.wait(10) == status
        assert runner.stderr.read() == line + "\n"
        assert out.read_text().endswith("\n") and [r["id"] for r in results(out)] == ["quick"]
        assert [pid for pid in executors if Path(f"/proc/{pid}").exists()] == []
    finally:
        runner.kill()
        runner.wait()
        runner.stderr.close()


@pytest.mark.slow
def test_a_hangup_ignored_by_nohup_stays_ignored(package_dir: Path, tmp_path: Path) -> None:
    runner = subprocess.Popen([str(SPIDER), "run", "--package-dir", str(package_dir), "--log-dir", str(tmp_path),
                               PKG, "sleep_ms", "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        wait_for_log(tmp_path / "spider-cli-1.log", "package loaded")
        runner.send_signal(signal.SIGHUP)
        assert runner.wait(10) == 0 and runner.stdout.read() == "[]\n"
    finally:
        runner.kill()
        runner.communicate()

# -- --max-frame-size --------------------------------------------------------------------------


@pytest.mark.slow
def test_max_frame_size_sets_the_limit_and_the_error_says_how_to_raise_it(package_dir: Path, tmp_path: Path) -> None:
    base = ["--package-dir", str(package_dir), "--max-frame-size", "1K"]
    done = spider("run", *base, PKG, "big", "2000")
    assert done.returncode == 1
    assert re.fullmatch(  # the size varies with the encoded elapsed time
        rf"spider: {PKG}/big: SerializationError: cannot send the task's outputs: message of 20\d\d bytes exceeds "
        r"the maximum frame size of 1024 bytes \(raise max_frame_size to allow it: PoolConfig\(max_frame_size=\.\.\.\), "
        r"or --max-frame-size of spider run and spider batch\)",
        one_clear_line(done),
    )
    done = spider("run", *base, PKG, "big", "900")
    assert (done.returncode, done.stdout) == (0, json.dumps(["x" * 900]) + "\n")
    requests = write_requests(tmp_path / "r.jsonl", [
        call("out", "big", 2000), call("in", "sleep_and_echo", ["y" * 2000]), call("ok", "big", 900),
    ])
    out = tmp_path / "o.jsonl"
    done = spider("batch", str(requests), "--out", str(out), *base, "--quiet")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    records = {r["id"]: r for r in results(out)}
    assert records["out"]["outcome"] == "task_failure" and "--max-frame-size" in records["out"]["message"]
    assert (records["in"]["outcome"], records["in"]["error"]) == ("invalid_request", "EncodeTaskInputs")
    assert "--max-frame-size" in records["in"]["message"]
    assert records["ok"]["outcome"] == "success"
    assert spider("batch", str(requests), "--out", str(tmp_path / "o2.jsonl"), "--package-dir", str(package_dir),
                  "--max-frame-size", "3MiB", "--quiet").returncode == 0


@pytest.mark.slow
def test_batch_reads_a_line_as_long_as_max_frame_size(package_dir: Path, tmp_path: Path) -> None:
    """A line over 64 MiB (here padded with JSON whitespace) is read when --max-frame-size is larger."""
    line = json.dumps(call("long", "fibonacci", 5))[:-1] + " " * (65 << 20) + "}\n"
    requests = tmp_path / "r.jsonl"
    requests.write_text(line + json.dumps(call("short", "fibonacci", 6)) + "\n")
    base = ["batch", str(requests), "--package-dir", str(package_dir), "--quiet"]
    done = spider(*base, "--out", str(tmp_path / "o.jsonl"), "--max-frame-size", "100M")
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r["values"]) for r in results(tmp_path / "o.jsonl")] == [("long", [5]), ("short", [8])]
    done = spider(*base, "--out", str(tmp_path / "o2.jsonl"))  # the default, 64M
    assert done.returncode == 1
    assert [(r["line"], r["outcome"]) for r in results(tmp_path / "o2.jsonl")] == [(1, "invalid_request"), (2, "success")]
    assert f"line 1: longer than {64 << 20} bytes (raise --max-frame-size to read it); skipped" in done.stderr


@pytest.mark.parametrize(("value", "message"), [
    ("0", "'0' must be at least 1 byte"),
    ("1.5M", "'1.5M' is not a number of bytes (such as 134217728, 128M or 1G)"),
    ("-1", "'-1' is not a number of bytes"),
    ("12 parsecs", "'12 parsecs' is not a number of bytes"),
])
@pytest.mark.parametrize("command", ["run", "batch"])
def test_bad_max_frame_size_is_a_usage_error(package_dir: Path, tmp_path: Path, command: str, value: str,
                                             message: str) -> None:
    args = [PKG, "fibonacci", "1"] if command == "run" else [str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "o")]
    done = spider(command, "--package-dir", str(package_dir), *args, f"--max-frame-size={value}")
    assert done.returncode == 2
    assert one_clear_line(done).startswith(f"spider: error: {command}: argument --max-frame-size: {message}")
    assert not (tmp_path / "o").exists()

# -- spider packages, plugins, build-package ---------------------------------------------------


@pytest.mark.slow
def test_packages_lists_native_packages(package_dir: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(package_dir / PKG, tmp_path / PKG)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "libjunk.so").write_bytes(b"not a library")
    shutil.copytree(package_dir / PKG, tmp_path / "renamed")
    (tmp_path / "renamed" / f"lib{PKG}.so").rename(tmp_path / "renamed" / "librenamed.so")
    done = spider("packages", "--package-dir", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    records = {r["name"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert records[PKG]["abi_version"] == "0.1.0" and records[PKG]["compatible"] is True and records[PKG]["error"] is None
    assert records[PKG]["kind"] == "native"
    assert "cannot load" in records["junk"]["error"]
    assert "declares package name 'integration_test_tasks'" in records["renamed"]["error"]
    table = spider("packages", "--package-dir", str(tmp_path)).stdout
    assert "integration_test_tasks" in table and "broken: cannot load" in table


def test_packages_prints_native_and_python_paths_absolute(package_dir: Path, tmp_path: Path) -> None:
    import shutil

    from helpers import TASK_PACKAGES

    shutil.copytree(package_dir / PKG, tmp_path / "packages" / PKG)
    shutil.copytree(TASK_PACKAGES / "complex_number", tmp_path / "packages" / "complex_number")
    done = spider("packages", "--package-dir", "packages", "--json", cwd=tmp_path)  # a relative directory
    assert done.returncode == 0, done.stderr
    assert {r["name"]: r["location"] for r in map(json.loads, done.stdout.splitlines())} == {
        PKG: str(tmp_path / "packages" / PKG / f"lib{PKG}.so"),
        "complex_number": str(tmp_path / "packages" / "complex_number"),
    }
    table = spider("packages", "--package-dir", "packages", cwd=tmp_path).stdout
    assert f" {tmp_path}/packages/{PKG}/lib{PKG}.so\n" in table and f" {tmp_path}/packages/complex_number\n" in table


@pytest.mark.slow
def test_packages_shows_incompatible_versions(tmp_path: Path) -> None:
    import spider_core
    from helpers import TASK_PACKAGES

    spider_core.build_package(TASK_PACKAGES / PKG, tmp_path, cflags=["-DSPIDER_TDL_VERSION_MINOR=2"])
    record = json.loads(spider("packages", "--package-dir", str(tmp_path), "--json").stdout)
    assert (record["abi_version"], record["compatible"]) == ("0.2.0", False)


@pytest.mark.slow
def test_plugins_lists_defaults() -> None:
    done = spider("plugins", "--json")
    assert done.returncode == 0
    records = {r["name"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert records["spider_libso"]["status"] == "default"
    assert records["spider_libso"]["distribution"] == "spider-core-pool"
    assert "spider_resolve_package" in records["spider_libso"]["hooks"]
    assert records["spider_supervisor"]["hooks"] == ["spider_launcher", "spider_respawn_decision", "spider_spawner"]
    blocked = spider("plugins", env={"SPIDER_DISABLE_PLUGINS": "spider_msgpack"})
    line = next(line for line in blocked.stdout.splitlines() if line.startswith("spider_msgpack"))
    assert "blocked" in line


# -- spider demo -------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo(tmp_path: Path) -> None:
    done = spider("demo", "--cache-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for text in ["Success [75025]", "InTaskFailure", "ExecutorCrash", "signal SIGABRT", "Timeout",
                 "cancelled", "(respawned)", "demo-1.log"]:
        assert text in out
    assert len(list((tmp_path / "demo-logs").glob("*/demo-*.log"))) >= 5
    again = spider("demo", "--cache-dir", str(tmp_path))
    assert again.returncode == 0 and len([p for p in (tmp_path / "packages").iterdir() if not p.is_symlink()]) == 1  # built once
    current = tmp_path / "packages" / "current"  # what the last line says to export
    assert f"try: export SPIDER_TDL_PACKAGE_DIR={current}; spider run" in again.stdout
    assert (current / "integration_test_tasks" / "libintegration_test_tasks.so").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status", "line"), [
    pytest.param(signal.SIGINT, 130, "spider: interrupted", id="SIGINT"),
    pytest.param(signal.SIGTERM, 143, "spider: terminated", id="SIGTERM"),
])
def test_a_signal_stops_the_demo_during_its_10_s_task(tmp_path: Path, signum: int, status: int, line: str) -> None:
    """The demo's cancelled call runs a 10 s task: a signal then does not wait it out."""
    runner = subprocess.Popen([str(SPIDER), "demo", "--cache-dir", str(tmp_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_log(tmp_path / "demo-logs" / "*" / "demo-3.log", "package loaded")  # executor 3 runs sleep_ms(10000)
        executors = children(runner.pid)
        assert executors
        runner.send_signal(signum)
        assert runner.wait(5) == status  # well before the task's 10 s
        assert runner.stderr.read().splitlines() == [line] and "done in" not in runner.stdout.read()
        assert [pid for pid in executors if Path(f"/proc/{pid}").exists()] == []  # killed and reaped
    finally:
        runner.kill()
        runner.communicate()


@pytest.mark.slow
def test_bench_quick_writes_a_report(package_dir: Path, tmp_path: Path) -> None:
    done = spider("bench", "--package-dir", str(package_dir), "--quick", "--calls", "20", "--peers", "pipe-sync",
                  "--workloads", "noop", "--output", str(tmp_path / "report"), "--targets")
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    from spider_core.bench import Stats

    ours = report["workloads"]["noop"]["spider-core"]
    samples = ours["samples"]["e2e"]
    assert len(samples) == 20
    expected = Stats.of(samples)
    assert ours["stats"]["e2e"]["p50"] == pytest.approx(expected.p50, abs=1e-3)
    assert ours["stats"]["e2e"]["p99"] == pytest.approx(expected.p99, abs=1e-3)
    floor = report["workloads"]["noop"]["pipe-sync"]
    assert floor["ours_over_peer"]["p50"] == pytest.approx(expected.p50 / floor["stats"]["e2e"]["p50"], rel=1e-3)
    assert "| spider-core |" in (tmp_path / "report" / "report.md").read_text()
    assert "\n## Targets\n" in done.stdout and "- target: executor start" in done.stdout  # asked for with --targets


@pytest.mark.slow
def test_a_plugin_that_fails_to_import_is_listed_as_broken_and_fails_the_other_commands_in_one_line(
    package_dir: Path, tmp_path: Path
) -> None:
    from helpers import make_distribution

    root = make_distribution(tmp_path / "site", "spider-broken", "brokenplugin", "raise RuntimeError('boom')\n", "broken")
    typo = make_distribution(tmp_path / "typo", "spider-typo", "typoplugin",
                             "from spider_core import hookimpl\n@hookimpl\ndef spider_no_such_hook():\n    pass\n", "typo")
    env = {"PYTHONPATH": f"{root}:{typo}"}
    done = spider("plugins", env=env)
    assert (done.returncode, done.stderr) == (0, "")
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert re.fullmatch(r"broken +spider-broken 1\.2\.3 +broken: RuntimeError: boom +-", rows["broken"])
    assert "broken: PluginValidationError: unknown hook 'spider_no_such_hook'" in rows["typo"]
    assert rows["spider_libso"].split()[3] == "default"
    assert done.stdout.rstrip().endswith(
        "the other commands fail until each broken plugin is fixed or disabled: SPIDER_DISABLE_PLUGINS=broken,typo"
    )
    records = {r["name"]: r for r in map(json.loads, spider("plugins", "--json", env=env).stdout.splitlines())}
    assert (records["broken"]["status"], records["broken"]["error"]) == ("broken", "RuntimeError: boom")
    assert records["spider_libso"]["error"] is None
    from helpers import TASK_PACKAGES

    for args in (["run", "--package-dir", str(package_dir), PKG, "fibonacci", "1"],
                 ["packages", "--package-dir", str(package_dir)],
                 ["build-package", str(TASK_PACKAGES / PKG), "--out", str(tmp_path / "built")]):
        done = spider(*args, env=env)
        assert done.returncode == 5
        assert one_clear_line(done) == (
            "spider: error: plugin 'broken' (from spider-broken) failed to import: RuntimeError: boom; "
            "disable it with SPIDER_DISABLE_PLUGINS=broken"
        )
    assert not (tmp_path / "built").exists()  # the build that could not be checked left nothing
    done = spider("run", "--package-dir", str(package_dir), PKG, "fibonacci", "1", env={**env, "SPIDER_DISABLE_PLUGINS": "broken"})
    assert done.returncode == 5
    assert one_clear_line(done).startswith("spider: error: plugin 'typo' (from spider-typo) is invalid: ")
    blocked = {**env, "SPIDER_DISABLE_PLUGINS": "broken,typo"}
    done = spider("plugins", env=blocked)
    assert done.returncode == 0 and "broken:" not in done.stdout and "fails until" not in done.stdout
    assert spider("run", "--package-dir", str(package_dir), PKG, "fibonacci", "1", env=blocked).stdout == "[1]\n"


FAILING_LIFECYCLE_HOOK = """
from spider_core import hookimpl

@hookimpl
def spider_task_finished(request, outcome):
    raise KeyError("metrics bug")
"""


@pytest.mark.slow
def test_a_lifecycle_hook_that_raises_is_one_warning_line_and_a_traceback_only_with_v(
    package_dir: Path, tmp_path: Path
) -> None:
    from helpers import make_distribution

    root = make_distribution(tmp_path / "site", "spider-metrics", "metricsplugin", FAILING_LIFECYCLE_HOOK, "metrics")
    env = {"PYTHONPATH": str(root)}
    warning = (
        "spider: WARNING: spider_core.plugins: a spider_task_finished hook failed (plugin 'metrics'; logged once "
        "per pool; SPIDER_DISABLE_PLUGINS=metrics disables it): KeyError: 'metrics bug'"
    )
    done = spider("run", "--package-dir", str(package_dir), PKG, "fibonacci", "3", env=env)
    assert (done.returncode, done.stdout) == (0, "[2]\n")
    assert one_clear_line(done) == warning
    requests = write_requests(tmp_path / "r.jsonl", [call(str(n), "fibonacci", n) for n in range(4)])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o"), "--package-dir", str(package_dir), env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[0] == warning and done.stderr.count("hook failed") == 1  # once per pool
    done = spider("-v", "run", "--package-dir", str(package_dir), PKG, "fibonacci", "3", env=env)
    assert done.returncode == 0 and done.stderr.startswith(warning + "\nTraceback (most recent call last):\n")
    assert done.stderr.rstrip().endswith("KeyError: 'metrics bug'")


BUGGY_PLUGIN = """
from spider_core import hookimpl

@hookimpl
def spider_resolve_package(package, package_dir):
    raise KeyError("resolver bug")

@hookimpl
def spider_list_packages(package_dir):
    raise KeyError("lister bug")
"""


@pytest.mark.slow
def test_a_plugin_whose_hook_raises_is_one_line(package_dir: Path, tmp_path: Path) -> None:
    from helpers import make_distribution

    root = make_distribution(tmp_path / "site", "spider-buggy", "buggyplugin", BUGGY_PLUGIN, "buggy")
    env = {"PYTHONPATH": str(root)}
    done = spider("run", "--package-dir", str(package_dir), PKG, "fibonacci", "1", env=env)
    assert done.returncode == 5
    assert one_clear_line(done).startswith(
        f"spider: error: a plugin failed while looking for package '{PKG}': KeyError: 'resolver bug'"
    )
    done = spider("packages", "--package-dir", str(package_dir), env=env)
    assert done.returncode == 5
    assert one_clear_line(done).startswith("spider: error: a plugin failed while listing packages: KeyError")


@pytest.mark.slow
def test_blocked_resolvers_are_named(package_dir: Path) -> None:
    done = spider("run", "--package-dir", str(package_dir), PKG, "fibonacci", "1",
                  env={"SPIDER_DISABLE_PLUGINS": "spider_libso"})
    assert done.returncode == 2
    assert "(searched by spider_installed, spider_pytasks; blocked plugins: spider_libso)" in one_clear_line(done)
    done = spider("run", "--package-dir", str(package_dir), PKG, "fibonacci", "1",
                  env={"SPIDER_DISABLE_PLUGINS": "spider_libso,spider_pytasks,spider_installed"})
    assert done.returncode == 5
    assert "no plugin implements the required hook spider_resolve_package" in one_clear_line(done)


@pytest.mark.slow
def test_batch_resume_keys_implicit_ids_by_line_and_does_not_repeat_malformed_lines(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [
        {"package": PKG, "task": "fibonacci", "inputs": [3]},  # no id: line 1
        "{broken",
        call(1, "fibonacci", 4),  # the explicit id 1 is not line 1
    ])
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps({"id": None, "line": 1, "outcome": "success", "values": [2]}) + "\n")
    args = ["batch", str(requests), "--out", str(out), "--package-dir", str(package_dir), "--resume"]
    for _ in range(2):
        done = spider(*args)
        assert done.returncode == 1 and "Traceback" not in done.stderr
    records = results(out)
    assert [(r["id"], r["line"], r["outcome"]) for r in records] == [
        (None, 1, "success"), (None, 2, "invalid_request"), (1, 3, "success")
    ]
    assert "line 2: still malformed" in done.stderr


def test_batch_rejects_duplicate_ids(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3), call("a", "fibonacci", 4)])
    out = tmp_path / "o.jsonl"
    done = spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir))
    assert done.returncode == 1
    assert [(r["id"], r["outcome"]) for r in results(out)] == [("a", "success"), (None, "invalid_request")]
    assert "line 2: duplicate id 'a' (first on line 1)" in done.stderr


@pytest.mark.slow
def test_batch_repairs_a_torn_last_line_without_resume(package_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_text('{"id": "x", "outcome": "success"}\n{"id": "y", "outc')
    requests = write_requests(tmp_path / "r.jsonl", [call("z", "fibonacci", 2)])
    assert spider("batch", str(requests), "--out", str(out), "--package-dir", str(package_dir)).returncode == 0
    assert [r["id"] for r in results(out)] == ["x", "z"]


# -- found by an adversarial review -------------------------------------------------------------


@pytest.mark.slow
def test_deeply_nested_and_non_standard_json_arguments(run) -> None:
    # 50000: past json's depth limit on every Python (about 1000 on 3.11, 10000 on 3.13), within
    # the 128 KiB an argument may have
    for arg, message in [("[" * 50_000 + "]" * 50_000, "nested too deeply"), ("NaN", "NaN is not valid JSON"),
                         ('{"re": Infinity}', "Infinity is not valid JSON"),
                         ("[1e999]", "1e999 is out of range for a float")]:
        done = run(PKG, "sleep_and_echo", arg)
        assert done.returncode == 2 and message in one_clear_line(done)


@pytest.mark.slow
def test_wrong_argument_count_or_type_is_bad_input(run) -> None:
    for args in ([], ["1", "2"], ["-5"], ['"x"']):
        done = run(PKG, "fibonacci", *args)
        assert done.returncode == 2, done.stderr
        assert "DeserializationError" in one_clear_line(done)


@pytest.mark.slow
def test_broken_pipe_on_stdout_is_quiet(package_dir: Path) -> None:
    command = f"{SPIDER} run --package-dir {package_dir} {PKG} big 2000000 | head -c1"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


@pytest.mark.slow
def test_full_disk_on_stdout_is_one_line(package_dir: Path) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(SPIDER), "run", "--package-dir", str(package_dir), PKG, "big", "100000"],
                              stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 5 and "cannot write output" in one_clear_line(done)


@pytest.mark.slow
def test_unusable_log_dir_is_refused(run, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    done = run(PKG, "fibonacci", "1", "--log-dir", str(afile))
    assert done.returncode == 2 and "cannot write logs to" in one_clear_line(done)
    done = run(PKG, "fibonacci", "1", "--log-dir", "")
    assert done.returncode == 2 and "an empty path is not a directory" in done.stderr


@pytest.mark.slow
def test_non_finite_outputs_are_strict_json(tmp_path: Path) -> None:
    from helpers import TASK_PACKAGES

    (tmp_path / "complex_number").symlink_to(TASK_PACKAGES / "complex_number")
    done = spider("run", "--package-dir", str(tmp_path), "complex_number", "add", "[1e308, 0]", "[1e308, 0]")
    assert done.returncode == 0
    assert json.loads(done.stdout) == [{"re": {"$float": "inf"}, "im": 0.0}]


@pytest.mark.slow
def test_batch_refuses_dangerous_outputs(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    notes = tmp_path / "notes.txt"
    notes.write_text("important notes, no newline")
    base = ["--package-dir", str(package_dir)]
    cases = [
        (tmp_path, "is a directory"),
        (requests, "is the requests file"),
        (notes, "is not a results file of spider batch"),
    ]
    for out, message in cases:
        done = spider("batch", str(requests), "--out", str(out), *base)
        assert done.returncode == 2 and message in one_clear_line(done)
    assert notes.read_text() == "important notes, no newline"
    assert json.loads(requests.read_text()) == call("a", "fibonacci", 3)


@pytest.mark.slow
def test_batch_to_a_pipe_does_not_hang(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    command = f"{SPIDER} batch {requests} --out /dev/stdout --package-dir {package_dir} --quiet | cat"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout.splitlines()[0])["values"] == [2]


@pytest.mark.slow
def test_batch_resume_keeps_failures_in_the_exit_status(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "always_fail"), call("b", "fibonacci", 3)])
    out = tmp_path / "o.jsonl"
    base = ["batch", str(requests), "--out", str(out), "--package-dir", str(package_dir)]
    assert spider(*base).returncode == 1
    assert spider(*base, "--resume").returncode == 1  # nothing ran, but "a" still failed


def test_batch_when_the_pool_cannot_start(package_dir: Path, tmp_path: Path) -> None:
    requests = write_requests(tmp_path / "r.jsonl", [call("a", "fibonacci", 3)])
    done = spider("batch", str(requests), "--out", str(tmp_path / "o"), "--package-dir", str(package_dir),
                  env={"SPIDER_DISABLE_PLUGINS": "spider_msgpack"})
    assert done.returncode == 5 and "spider_framing" in one_clear_line(done)


@pytest.mark.slow
def test_demo_and_bench_with_an_unusable_cache(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    done = spider("demo", env={"XDG_CACHE_HOME": str(afile)})
    assert done.returncode == 2 and "cannot use the package cache" in one_clear_line(done)
    done = spider("demo", "--cache-dir", str(afile))
    assert done.returncode == 2 and "Traceback" not in done.stderr


@pytest.mark.slow
def test_bench_with_bad_directories(package_dir: Path, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    done = spider("bench", "--package-dir", str(package_dir), "--output", str(afile), "--quick")
    assert done.returncode == 2 and "is a file, not a directory" in one_clear_line(done)
    done = spider("bench", "--package-dir", str(tmp_path), "--quick")
    assert done.returncode == 2 and "has no integration_test_tasks package" in one_clear_line(done)


def test_version() -> None:
    done = spider("--version")
    assert done.returncode == 0 and done.stdout.startswith("spider ")


def test_executor_needs_a_plugin_that_speaks_its_protocol(run) -> None:
    # --executor takes its protocol from the plugins' spider_protocol_names: none, none to take
    done = run(PKG, "fibonacci", "10", "--executor", "/bin/true", env={"SPIDER_DISABLE_PLUGINS": "spider_rustexec"})
    assert done.returncode == 5
    assert one_clear_line(done).endswith("--executor needs a plugin that speaks spider's executor protocol, and none "
                                         "does; blocked plugins: spider_rustexec"), done.stderr
