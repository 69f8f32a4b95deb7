"""``spider soak`` and :mod:`spider_core.commands.soak`: a short soak holds every invariant, a broken
invariant fails it (exit status 1, naming the invariant), bad flags are one line (exit 2), and
a thousand concurrent callers on two slots are all served. Real executors, the real C package."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import PKG, SPIDER, TASK_PACKAGES, write_c_package
from spider_core.build import build_package
from spider_core.commands import main
from spider_core.commands.soak import FAULTS, INJECTIONS, SoakError, SoakSummary, run_soak


def assert_every_invariant(summary: SoakSummary, tasks: int) -> None:
    assert summary.failures == (), summary.failures
    assert summary.ok
    assert sum(k.count for k in summary.kinds if k.kind != "final") == tasks
    for kind in summary.kinds:
        assert kind.as_expected == kind.count, kind
        assert kind.others == {}, kind
    assert summary.lost == 0
    assert summary.misattributed == 0
    assert summary.unexpected == 0
    assert summary.fds_after == summary.fds_before
    assert summary.children_after == summary.children_before
    assert summary.respawns == summary.expected_respawns
    assert summary.exits == summary.expected_exits
    assert summary.unrecovered == 0


@pytest.mark.slow
def test_a_short_soak_holds_every_invariant(package_dir: Path, start_method: str) -> None:
    summary = run_soak(package_dir, tasks=5000, callers=16, slots=2, fault_rate=0.01, seed=7, start_method=start_method)
    assert_every_invariant(summary, 5000)
    kinds = {k.kind: k.count for k in summary.kinds}
    assert set(FAULTS) <= set(kinds), f"seed 7 no longer draws every fault: {kinds}"
    replacing = sum(kinds[k] for k in ("segfault", "abort", "exit", "timeout", "cancel", "kill"))
    assert summary.respawns == replacing
    assert summary.recoveries == replacing and summary.slowest_recovery is not None
    assert summary.exits["shutdown"] == 2
    assert summary.exits["crash"] == sum(kinds[k] for k in ("segfault", "abort", "exit", "kill"))


@pytest.mark.slow
def test_a_thousand_callers_on_two_slots_are_all_served(package_dir: Path, start_method: str) -> None:
    """1,000 concurrent callers, two tasks each, on two slots, with 1% faults: every call
    completes as expected; the longest queue wait comes from the spider_task_finished hook."""
    summary = run_soak(package_dir, tasks=2000, callers=1000, slots=2, fault_rate=0.01, seed=11, start_method=start_method)
    assert_every_invariant(summary, 2000)
    assert 0 < summary.queue_wait_p99 <= summary.longest_queue_wait
    print(f"1000 callers on 2 slots: longest queue wait {summary.longest_queue_wait:.3f} s, "
          f"p99 {summary.queue_wait_p99:.3f} s")


@pytest.mark.slow
def test_a_task_of_your_own_serves_as_the_fault_free_task(package_dir: Path) -> None:
    summary = run_soak(package_dir, tasks=200, fault_rate=0.05, seed=1, package=PKG, task="fibonacci", inputs=[20])
    assert_every_invariant(summary, 200)
    kinds = {k.kind: k.count for k in summary.kinds}
    faults = sum(n for kind, n in kinds.items() if kind in FAULTS)
    assert kinds["user"] + kinds["echo"] + faults == 200
    assert abs(kinds["user"] - kinds["echo"]) <= faults  # the fault-free tasks alternate


@pytest.mark.slow
@pytest.mark.parametrize(
    ("inject", "invariant"),
    [("misattribute", "misattributed: 1 tasks received values that are not theirs"),
     ("leak-fd", "descriptors: the parent had"),
     ("lose", "lost: 1 results were lost")],
)
def test_a_broken_invariant_fails_the_soak(package_dir: Path, inject: str, invariant: str) -> None:
    summary = run_soak(package_dir, tasks=100, callers=4, fault_rate=0, seed=1, _inject=inject)  # type: ignore[arg-type]
    assert not summary.ok
    assert len(summary.failures) == 1
    assert summary.failures[0].startswith(invariant)


@pytest.mark.slow
@pytest.mark.parametrize("inject", INJECTIONS)
def test_the_command_exits_1_and_names_the_broken_invariant(package_dir: Path, tmp_path: Path, inject: str) -> None:
    out = tmp_path / "summary.json"
    done = subprocess.run(
        [str(SPIDER), "soak", "--tasks", "100", "--callers", "4", "--package-dir", str(package_dir), "--json", str(out)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "SPIDER_SOAK_INJECT": inject},
    )
    assert done.returncode == 1, done.stderr
    name = {"misattribute": "misattributed", "leak-fd": "descriptors", "lose": "lost"}[inject]
    assert done.stderr.startswith(f"spider: soak: 1 invariant broke: {name}: "), done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert "FAILED" in done.stdout
    record = json.loads(out.read_text())
    assert record["ok"] is False and record["failures"][0].startswith(f"{name}: ")


@pytest.mark.slow
def test_the_command_prints_one_table_and_writes_the_json_summary(package_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    done = subprocess.run(
        [str(SPIDER), "soak", "--tasks", "300", "--fault-rate", "0.05", "--seed", "5",
         "--package-dir", str(package_dir), "--json", str(out)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    assert lines[0] == "spider soak --tasks 300 --callers 16 --slots 2 --fault-rate 0.05 --seed 5"
    assert lines[1].split() == ["CHECK", "EXPECTED", "OBSERVED", "OK"]
    assert "FAILED" not in done.stdout
    for check in ("results lost", "misattributed", "open descriptors", "child processes", "executor respawns",
                  "recovery", "parent RSS", "queue wait"):
        assert any(line.startswith(check) for line in lines), check
    record = json.loads(out.read_text())
    assert record["ok"] is True and record["tasks"] == 300 and record["lost"] == 0 and record["seed"] == 5
    assert record["fds_before"] == record["fds_after"]


@pytest.mark.slow
def test_the_command_runs_under_a_fork_server_and_says_how_to_replay(package_dir: Path) -> None:
    done = subprocess.run(
        [str(SPIDER), "soak", "--tasks", "200", "--fault-rate", "0.05", "--seed", "5", "--start-method", "forkserver",
         "--package-dir", str(package_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0 and "FAILED" not in done.stdout, done.stdout + done.stderr
    assert done.stdout.splitlines()[0].endswith("--seed 5 --start-method forkserver")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tasks", "0"], "argument --tasks: '0' must be at least 1"),
        (["--callers", "x"], "argument --callers: 'x' is not a whole number"),
        (["--fault-rate", "1.5"], "argument --fault-rate: '1.5' must be from 0 to 1"),
        (["--fault-rate", "nan"], "argument --fault-rate: 'nan' must be from 0 to 1"),
        (["--package", PKG], "--package and --task go together"),
        (["--input", "1"], "--input is for the task of --package and --task"),
        (["--package", PKG, "--task", "fibonacci", "--input", "{"], "--input 1 ('{') is not a JSON value"),
        (["--package", "a/b", "--task", "t"], "invalid package name 'a/b'"),
        (["--json", "/nonexistent/dir/s.json"], "cannot write the summary to /nonexistent/dir/s.json"),
        (["--package-dir", "/nonexistent"], "package directory /nonexistent does not exist"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str],
                                           package_dir: Path) -> None:
    if "--package-dir" not in argv:
        argv = [*argv, "--package-dir", str(package_dir)]
    try:
        code = main(["soak", *argv])
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("spider: error: ") and message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_an_unknown_injection_is_a_usage_error(package_dir: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIDER_SOAK_INJECT", "everything")
    assert main(["soak", "--package-dir", str(package_dir)]) == 2
    assert "SPIDER_SOAK_INJECT='everything' is not one of misattribute, leak-fd, lose" in capsys.readouterr().err


def test_settings_out_of_range_raise_soak_error(package_dir: Path) -> None:
    with pytest.raises(SoakError, match="the fault rate must be a number from 0 to 1, got -0.1"):
        run_soak(package_dir, fault_rate=-0.1)
    with pytest.raises(SoakError, match="slots must be a whole number of at least 1, got 0"):
        run_soak(package_dir, slots=0)
    with pytest.raises(SoakError, match="a task of your own needs both its package and its task name"):
        run_soak(package_dir, package=PKG)


def test_a_package_dir_without_the_test_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SoakError, match=f"{tmp_path} has no {PKG} package; build it with"):
        run_soak(tmp_path, tasks=10)


@pytest.mark.slow
def test_an_outdated_test_package_is_refused_before_the_run(tmp_path: Path) -> None:
    """A package named integration_test_tasks without the soak's tasks (an old build)."""
    src = write_c_package(tmp_path / "src", PKG, """\
        #include <spider_tdl.h>
        spider_tdl_version __spider_tdl_package_get_version(void) { return spider_tdl_host_version(); }
        spider_tdl_char_array __spider_tdl_package_get_name(void) {
            spider_tdl_char_array a = {"integration_test_tasks", 22};
            return a;
        }
        spider_tdl_task_execution_result __spider_tdl_package_execute(
            spider_tdl_char_array name, spider_tdl_byte_array ctx, spider_tdl_byte_array inputs) {
            (void)ctx; (void)inputs;
            return spider_tdl_result_error_n(SPIDER_TDL_ERR_TASK_NOT_FOUND, name.pointer, name.length);
        }
    """)
    build_package(src, tmp_path / "packages")
    with pytest.raises(SoakError, match=f"{PKG} cannot run the soak's tasks .*TaskNotFound.*rebuild it"):
        run_soak(tmp_path / "packages", tasks=10)


@pytest.mark.slow
def test_a_user_package_dir_is_combined_with_the_bundled_package(tmp_path: Path, package_dir: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A --package-dir without integration_test_tasks: the bundled one is built into the cache
    and linked beside the user's packages."""
    import shutil

    user = tmp_path / "mine"
    user.mkdir()
    shutil.copytree(TASK_PACKAGES / "complex_number", user / "complex_number")
    code = main(["soak", "--tasks", "60", "--fault-rate", "0", "--package-dir", str(user), "--cache-dir",
                 str(tmp_path / "cache"), "--package", "complex_number", "--task", "add",
                 "--input", '{"re": 1, "im": 2}', "--input", '{"re": 3, "im": 4}'])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "user tasks" in out and "30 of 30" in out
    assert sorted(p.name for p in user.iterdir()) == ["complex_number"]  # nothing was added to the user's dir
