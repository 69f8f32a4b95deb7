"""What a Python task may do to its executor process, and what it may not break.

Found by an adversarial review: tasks that raise BaseExceptions, exit while loading, fork,
leave processes running, close fds 2 or the protocol descriptors.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

import spider_core as sc
from helpers import wait_until
from spider_core.tdl import InvalidLibrary, PackageInitError, TaskError, TdlErrorKind

HOSTILE = """
import asyncio, os, subprocess, sys, time
from spider_core.sdk import Package

package = Package("hostile")


@package.task
def ping(ctx) -> str:
    return "pong"


class Custom(BaseException):
    pass


@package.task
def raise_base(ctx, kind: str) -> None:
    raise {"kbi": KeyboardInterrupt, "cancelled": asyncio.CancelledError, "custom": Custom,
           "genexit": GeneratorExit}[kind]("from a task")


@package.task
def fork_and_return(ctx) -> str:
    child = os.fork()
    if child == 0:
        return "child"  # the child returns into the executor: it must vanish
    os.waitpid(child, 0)  # once it has, without a word
    return "parent"


@package.task
def fork_and_raise(ctx) -> str:
    child = os.fork()
    if child == 0:
        raise ValueError("in the child")
    os.waitpid(child, 0)
    return "parent"


@package.task
def spawn_stderr_writer(ctx) -> str:
    subprocess.Popen([sys.executable, "-c", "import sys\\nwhile True: sys.stderr.write('y' * 100 + '\\\\n')"])
    return "spawned"


@package.task
def close_stderr(ctx) -> str:
    os.close(2)
    return "closed"


@package.task
def close_low_fds_then_open_files(ctx, directory: str) -> int:
    os.closerange(3, 64)
    files = [open(os.path.join(directory, f"f{i}"), "w") for i in range(8)]
    for f in files:
        f.write("user data")
        f.close()
    return len(files)


@package.task
def clobber_protocol(ctx) -> str:
    null = os.open(os.devnull, os.O_WRONLY)
    for fd in range(200, 1024):
        try:
            os.fstat(fd)
        except OSError:
            continue
        os.dup2(null, fd)
    return "clobbered"
"""

EXITS_ON_IMPORT = """
import argparse
argparse.ArgumentParser().parse_args(["--no-such-option"])
"""

EXITS_IN_INIT = """
import sys
from spider_core.sdk import Package

def init():
    sys.exit(3)

package = Package("exits_in_init", init=init)
"""


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    for name, source in [("hostile", HOSTILE), ("exits_on_import", EXITS_ON_IMPORT), ("exits_in_init", EXITS_IN_INIT)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(textwrap.dedent(source))
    return tmp_path


@pytest.fixture
def pool(packages: Path):
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=packages, plugin_autoload=False, shutdown_grace=0.5)) as pool:
        yield pool


def call(pool, task: str, *inputs: object, package: str = "hostile"):
    return pool.execute(sc.ExecuteRequest(package=package, task=task, inputs=inputs), hard_timeout=10)


def assert_pong(pool, executor_id: int | None = None) -> None:
    outcome = call(pool, "ping")
    assert outcome.values == ["pong"], outcome
    if executor_id is not None:
        assert outcome.executor_id == executor_id


@pytest.mark.parametrize(("kind", "name"), [("kbi", "KeyboardInterrupt"), ("cancelled", "CancelledError"),
                                            ("custom", "Custom"), ("genexit", "GeneratorExit")])
def test_base_exceptions_are_task_failures(pool, kind: str, name: str) -> None:
    outcome = call(pool, "raise_base", kind)
    assert isinstance(outcome, sc.InTaskFailure), outcome
    assert isinstance(outcome.error, TaskError) and outcome.error.error.kind is TdlErrorKind.ExecutionError
    assert outcome.error.error.message == f"{name}: from a task"
    assert_pong(pool, outcome.executor_id)


def test_exit_at_import_is_an_invalid_library(pool) -> None:
    outcome = call(pool, "anything", package="exits_on_import")
    assert isinstance(outcome.error, InvalidLibrary) and "SystemExit: 2" in outcome.error.message
    assert_pong(pool, outcome.executor_id)


def test_exit_in_init_is_a_package_init_error(pool) -> None:
    outcome = call(pool, "anything", package="exits_in_init")
    assert isinstance(outcome.error, PackageInitError) and "SystemExit: 3" in outcome.error.error.message
    assert_pong(pool, outcome.executor_id)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["fork_and_return", "fork_and_raise"])
def test_a_forked_child_never_answers(pool, task: str) -> None:
    outcome = call(pool, task)
    assert outcome.values == ["parent"], outcome
    for _ in range(3):
        assert_pong(pool, outcome.executor_id)


@pytest.mark.slow
def test_processes_a_task_leaves_behind_do_not_hold_up_close(packages: Path, tmp_path: Path) -> None:
    config = sc.PoolConfig(package_dir=packages, log_dir=tmp_path / "logs", plugin_autoload=False, shutdown_grace=0.5)
    started = time.monotonic()
    with sc.SyncProcessPool(config) as pool:
        assert call(pool, "spawn_stderr_writer").values == ["spawned"]
        wait_until(lambda: any(b"y" * 100 in log.read_bytes()[: 1 << 16] for log in config.log_dir.glob("*.log")),
                   "the left-behind process writes to the executor's stderr")
    assert time.monotonic() - started < 60  # it never ends: close did not wait for it


def test_closing_stderr_does_not_break_later_loads(pool) -> None:
    first = call(pool, "close_stderr")
    assert first.values == ["closed"]
    outcome = call(pool, "anything", package="exits_in_init")  # loading logs to the closed fd 2
    assert isinstance(outcome.error, PackageInitError)
    assert_pong(pool, first.executor_id)


def test_closing_low_descriptors_leaves_the_protocol_alone(pool, tmp_path: Path) -> None:
    outcome = call(pool, "close_low_fds_then_open_files", str(tmp_path))
    assert outcome.values == [8]
    assert all((tmp_path / f"f{i}").read_text() == "user data" for i in range(8))
    assert_pong(pool, outcome.executor_id)


def test_clobbering_the_protocol_descriptors_is_a_crash_not_corruption(pool) -> None:
    outcome = call(pool, "clobber_protocol")
    assert isinstance(outcome, sc.ExecutorCrash) and outcome.exit_status == 3, outcome
    assert_pong(pool)


def test_task_definitions_are_checked_when_written() -> None:
    import functools

    from spider_core.sdk import Package, task

    class Adder:
        def __call__(self, ctx, a: int) -> int:
            return a + 1

    with pytest.raises(TypeError, match="a task must be a function"):
        task(Adder())
    with pytest.raises(TypeError, match="a task must be a function"):
        task(functools.partial(lambda ctx, a: a, a=1))
    with pytest.raises(TypeError, match="must be printable UTF-8"):
        Package("names").task(name="\udcff")(lambda ctx: None)
    with pytest.raises(TypeError, match="must be printable UTF-8"):
        Package("names").task(name="two\nlines")(lambda ctx: None)


def test_a_task_name_that_is_not_utf8_is_an_invalid_request(pool) -> None:
    with pytest.raises(sc.InvalidRequest, match="UTF-8"):
        call(pool, "\udcff")
    assert_pong(pool)


STRICT = """
import enum
from typing import Literal, Union

import attrs
from spider_core.sdk import Package

package = Package("strict")


@attrs.frozen
class P:
    x: int


@attrs.frozen
class Q:
    y: str


class Color(enum.Enum):
    RED = 1


@package.task
def union_x(ctx, p: Union[P, Q]) -> str:
    return repr(p)


@package.task
def literal(ctx, v: Literal[1, 2]) -> str:
    return repr(v)


@package.task
def color(ctx, c: Color) -> str:
    return c.name
"""


@pytest.mark.parametrize(
    ("task", "value", "expected"),
    [
        ("union_x", {"x": 7}, "P(x=7)"),
        ("union_x", {"x": 7.9}, None),
        ("union_x", {"x": "7"}, None),
        ("literal", 2, "2"),
        ("literal", True, None),
        ("literal", 1.0, None),
        ("color", 1, "RED"),
        ("color", True, None),
    ],
)
def test_inputs_are_as_strict_as_rmp_serde_everywhere(tmp_path: Path, task: str, value: object, expected: str | None) -> None:
    (tmp_path / "strict").mkdir()
    (tmp_path / "strict" / "__init__.py").write_text(textwrap.dedent(STRICT))
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=tmp_path, plugin_autoload=False)) as pool:
        outcome = call(pool, task, value, package="strict")
    if expected is None:
        assert isinstance(outcome, sc.InTaskFailure), outcome
        assert outcome.error.error.kind is TdlErrorKind.DeserializationError
    else:
        assert outcome.values == [expected]
