"""The pytest plugin (``spider_core.pytest_plugin``) and ``assert_outcome``."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import spider_core as sc
from helpers import REPO, TASK_PACKAGES
from spider_core.tdl import InvalidLibrary, TaskError, TdlError, TdlErrorKind, encode_values
from spider_core.testing import assert_outcome, describe_outcome

pytest_plugins = ["pytester"]

SUCCESS = sc.Success(outputs=encode_values([56]), elapsed_us=3)
BOOM = sc.InTaskFailure(error=TaskError(TdlError("ExecutionError", "boom")), elapsed_us=3)
ABORT = sc.ExecutorCrash(exit_status=None, signal=signal.SIGABRT)


# -- assert_outcome ------------------------------------------------------------------------


def test_assert_outcome_returns_a_matching_outcome() -> None:
    assert assert_outcome(SUCCESS, "Success", [56]) is SUCCESS
    assert assert_outcome(SUCCESS, sc.Success, values=(56,)) is SUCCESS
    assert_outcome(BOOM, "InTaskFailure", error=TaskError(TdlError("ExecutionError", "boom")))
    assert_outcome(BOOM, "InTaskFailure", error=TdlError("ExecutionError", "boom"))
    assert_outcome(BOOM, "InTaskFailure", error=TdlErrorKind.ExecutionError)
    assert_outcome(BOOM, "InTaskFailure", error=TaskError)
    assert_outcome(BOOM, "InTaskFailure", error="boom")
    assert_outcome(ABORT, "ExecutorCrash", signal=signal.SIGABRT, exit_status=None)
    assert_outcome(sc.Timeout(hard_timeout=0.5), sc.Timeout, hard_timeout=0.5)


@pytest.mark.parametrize(
    ("outcome", "args", "kwargs", "message"),
    [
        (
            BOOM,
            ("Success", [55]),
            {},
            "expected Success with values [55], got InTaskFailure: TaskError(ExecutionError: boom)",
        ),
        (SUCCESS, ("Success", [55]), {}, "expected Success with values [55], got Success with values [56]"),
        (
            BOOM,
            ("InTaskFailure",),
            {"error": TdlError("Custom", "x")},
            "expected InTaskFailure with error Custom: x, got InTaskFailure: TaskError(ExecutionError: boom)",
        ),
        (
            BOOM,
            ("InTaskFailure",),
            {"error": InvalidLibrary},
            "expected InTaskFailure with error type InvalidLibrary, got InTaskFailure: TaskError(ExecutionError: boom)",
        ),
        (
            sc.InTaskFailure(error=InvalidLibrary("no such package"), elapsed_us=0),
            ("InTaskFailure",),
            {"error": TdlErrorKind.TaskNotFound},
            "expected InTaskFailure with error kind TaskNotFound, got InTaskFailure: InvalidLibrary(no such package)",
        ),
        (
            ABORT,
            ("ExecutorCrash",),
            {"exit_status": 3},
            "expected ExecutorCrash with exit_status=3, got ExecutorCrash (signal SIGABRT) with exit_status=None",
        ),
        (sc.Timeout(hard_timeout=0.5), ("Success",), {}, "expected Success, got Timeout after 0.5 s"),
        (
            sc.Success(outputs=b"\x01", elapsed_us=0),
            ("Success", []),
            {},
            "expected Success with values [], got Success with undecodable outputs b'\\x01' (wire frame is 1 bytes, "
            "too small for the 4-byte payload count header)",
        ),
    ],
)
def test_assert_outcome_failure_messages(outcome, args, kwargs, message: str) -> None:
    with pytest.raises(AssertionError) as info:
        assert_outcome(outcome, *args, **kwargs)
    assert str(info.value) == message


def test_assert_outcome_rejects_misuse() -> None:
    with pytest.raises(TypeError, match="kind must be one of"):
        assert_outcome(SUCCESS, "Succes")
    with pytest.raises(TypeError, match="values= only applies to a Success"):
        assert_outcome(BOOM, "InTaskFailure", [1])
    with pytest.raises(TypeError, match="error= only applies to an InTaskFailure"):
        assert_outcome(SUCCESS, "Success", error="x")


def test_describe_outcome() -> None:
    assert describe_outcome(sc.ExecutorCrash(exit_status=4, signal=None)) == "ExecutorCrash (exit status 4)"
    assert describe_outcome(SUCCESS) == "Success with values [56]"


# -- the fixtures, in this session (the plugin is loaded through its entry point) ----------


def test_the_plugin_is_registered_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("spider_core")
    assert plugin is not None and plugin.__name__ == "spider_core.pytest_plugin"


@pytest.mark.slow
def test_build_c_and_copy_python_packages_then_run_them(
    spider_build_package, spider_package_dir: Path, spider_pool
) -> None:
    assert spider_build_package(TASK_PACKAGES / "integration_test_tasks") == spider_package_dir
    assert spider_build_package(TASK_PACKAGES / "complex_number") == spider_package_dir
    assert (spider_package_dir / "integration_test_tasks" / "libintegration_test_tasks.so").is_file()
    assert not (spider_package_dir / "complex_number" / "__pycache__").exists()
    # Packages are resolved on first use, so the pool may start before they are built.
    fib = sc.ExecuteRequest(package="integration_test_tasks", task="fibonacci", inputs=[10])
    assert_outcome(spider_pool.execute(fib, hard_timeout=10), "Success", [55])
    add = sc.ExecuteRequest(package="complex_number", task="add", inputs=[[1, 2], [3, 4]])
    assert_outcome(spider_pool.execute(add, hard_timeout=10), "Success", [{"re": 4.0, "im": 6.0}])


@pytest.mark.spider_pool(em_id="marked", plugin_autoload=False)
def test_spider_pool_marker_configures_the_pool(spider_pool, spider_package_dir: Path) -> None:
    assert spider_pool.config.em_id == "marked"
    assert spider_pool.config.plugin_autoload is False
    assert spider_pool.config.package_dir == spider_package_dir
    assert spider_pool.pid is not None


def test_pool_factory_pools_are_independent(spider_pool_factory, package_dir: Path, tmp_path: Path) -> None:
    first = spider_pool_factory(package_dir, plugin_autoload=False)
    second = spider_pool_factory(package_dir, plugin_autoload=False, log_dir=tmp_path / "logs")
    assert first.pid != second.pid
    assert second.log_path.parent == tmp_path / "logs"
    for pool in (first, second):
        assert_outcome(
            pool.execute(
                sc.ExecuteRequest(package="integration_test_tasks", task="fibonacci", inputs=[7]), hard_timeout=10
            ),
            "Success",
            [13],
        )


def test_build_into_another_directory(spider_build_package, tmp_path: Path) -> None:
    out = spider_build_package(TASK_PACKAGES / "complex_number", tmp_path / "elsewhere")
    assert out == tmp_path / "elsewhere" and (out / "complex_number" / "__init__.py").is_file()


# -- as a user runs it: a separate pytest process ------------------------------------------

USAGE = """\
from pathlib import Path

from spider_core import ExecuteRequest
from spider_core.testing import assert_outcome

COMPLEX_NUMBER = Path(__file__).parent.parent / "task_packages" / "complex_number"


def test_add(spider_build_package, spider_pool):
    spider_build_package(COMPLEX_NUMBER)
    request = ExecuteRequest(package="complex_number", task="add", inputs=[[1, 2], [3, 4]])
    assert_outcome(spider_pool.execute(request, hard_timeout=5), "Success", values=[{"re": 4.0, "im": 6.0}])


def test_division_by_zero(spider_build_package, spider_pool):
    spider_build_package(COMPLEX_NUMBER)
    request = ExecuteRequest(package="complex_number", task="div", inputs=[[1, 2], [0, 0]])
    assert_outcome(spider_pool.execute(request, hard_timeout=5), "InTaskFailure", error="division by zero")
"""

CHECKS = """
    import os
    from pathlib import Path

    import pytest

    from spider_core import ExecuteRequest
    from spider_core.testing import assert_outcome

    NATIVE_SRC = Path({native!r})
    PIDS = Path(__file__).parent.parent / "pids"


    @pytest.mark.spider_pool(em_id="inner")
    def test_native(spider_build_package, spider_pool):
        spider_build_package(NATIVE_SRC)
        PIDS.open("a").write(f"{{spider_pool.pid}}\\n")
        request = ExecuteRequest(package="integration_test_tasks", task="fibonacci", inputs=[10])
        assert_outcome(spider_pool.execute(request, hard_timeout=5), "Success", [55])


    def test_factory(spider_build_package, spider_pool_factory):
        pool = spider_pool_factory(spider_build_package(NATIVE_SRC))
        PIDS.open("a").write(f"{{pool.pid}}\\n")
        request = ExecuteRequest(package="integration_test_tasks", task="nope")
        assert_outcome(pool.execute(request, hard_timeout=5), "Success", [5])
"""


def run_user_tests(pytester: pytest.Pytester, files: dict[str, str]) -> pytest.RunResult:
    for path, text in files.items():
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--strict-markers",
        "-W",
        "error::pytest.PytestWarning",
        "tests",
    )


@pytest.mark.slow
def test_a_user_project_uses_the_fixtures(pytester: pytest.Pytester) -> None:
    result = run_user_tests(
        pytester,
        {
            "task_packages/complex_number/__init__.py": (TASK_PACKAGES / "complex_number" / "__init__.py").read_text(),
            "tests/test_complex_number.py": USAGE,
            "tests/test_checks.py": textwrap.dedent(
                CHECKS.format(native=str(TASK_PACKAGES / "integration_test_tasks"))
            ),
        },
    )
    result.assert_outcomes(passed=3, failed=1, warnings=0)
    # Whether spider-core is installed from a wheel or editable (this checkout), pytest finds
    # nothing of it to warn about: the run above would have stopped on it (-W error).
    assert "PytestAssertRewriteWarning" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(
        ["*AssertionError: expected Success with values [[]5[]], got InTaskFailure: TaskError(TaskNotFound: nope)"]
    )
    pids = [int(line) for line in (pytester.path / "pids").read_text().split()]
    assert len(pids) == 2
    for pid in pids:  # every pool was closed and its executor reaped
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_the_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_needs(spider_pool):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:spider_core")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'spider_pool' not found*"])


def test_importing_the_plugin_is_cheap() -> None:
    code = "import sys, spider_core.pytest_plugin; print(sorted(m for m in sys.modules if m.startswith(('spider_core.', 'cattrs', 'msgpack'))))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['spider_core._lazy', 'spider_core.pytest_plugin', 'spider_core.testing']"


def test_docs_usage_example_is_tested_here() -> None:
    page = (REPO / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert USAGE in blocks, "the pytest example of docs/testing.md differs from USAGE in this file"
