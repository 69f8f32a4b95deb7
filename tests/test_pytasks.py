"""Python task packages: the spider_pytasks plugin, and packages through the real pool (the SDK
alone: test_sdk.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest

import spider_core as sc
import spider_pytasks
from helpers import REPO, TASK_PACKAGES
from spider_core.plugin import TASK_PACKAGE_GROUP, InstalledPackage, PackageInfo, PackageSource, TaskPackage
from spider_core.tdl import (
    EMPTY_FRAME,
    DuplicatePackage,
    InvalidLibrary,
    PackageInitError,
    TaskContext,
    TaskError,
    TaskId,
    TdlError,
    TdlErrorKind,
    decode_values,
    encode_values,
    frame_payloads,
)
from spider_core.testing import assert_outcome
from spider_pytasks.listing import list_packages
from spider_pytasks.loader import load_directory_package

NATIVE = "integration_test_tasks"

TYPED = """
    import dataclasses
    import os
    import sys
    from typing import Any, Optional

    import attrs

    from spider_core.sdk import Package, TaskContext, TdlError

    package = Package("pytypes")


    @attrs.frozen
    class Point:
        x: int
        y: int


    @attrs.frozen
    class Shape:
        name: str
        points: list[Point]
        tags: dict[str, int]
        color: Optional[str] = None


    @dataclasses.dataclass
    class Reading:
        sensor: str
        values: list[float]
        raw: bytes


    @package.task
    def echo_int(ctx: TaskContext, v: int) -> int:
        return v


    @package.task
    def echo_float(ctx: TaskContext, v: float) -> float:
        return v


    @package.task
    def echo_str(ctx: TaskContext, v: str) -> str:
        return v


    @package.task
    def echo_bytes(ctx: TaskContext, v: bytes) -> bytes:
        return v


    @package.task
    def echo_bool(ctx: TaskContext, v: bool) -> bool:
        return v


    @package.task
    def echo_list(ctx: TaskContext, v: list[int]) -> list[int]:
        return v


    @package.task
    def echo_dict(ctx: TaskContext, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return v


    @package.task
    def echo_optional(ctx: TaskContext, v: Optional[int]) -> tuple[Optional[int]]:
        return (v,)


    @package.task
    def scale(ctx: TaskContext, shape: Shape, factor: int) -> Shape:
        assert type(shape) is Shape and all(type(p) is Point for p in shape.points)
        points = [Point(p.x * factor, p.y * factor) for p in shape.points]
        return attrs.evolve(shape, points=points)


    @package.task
    def calibrate(ctx: TaskContext, reading: Reading) -> Reading:
        assert type(reading) is Reading and type(reading.raw) is bytes
        return dataclasses.replace(reading, values=[v * 2 for v in reading.values])


    @package.task
    def types_of(ctx: TaskContext, a: Any, b: Optional[Shape]) -> list[str]:
        return [type(a).__name__, type(b).__name__]


    @package.task(name="divmod")
    def divide(ctx: TaskContext, a: int, b: int) -> tuple[int, int]:
        return divmod(a, b)


    @package.task
    def nothing(ctx: TaskContext) -> None:
        return None


    @package.task
    def empty_tuple(ctx: TaskContext) -> tuple[()]:
        return ()


    @package.task
    def context(ctx: TaskContext) -> list[Any]:
        return [ctx.job_id, str(ctx.task_id), ctx.task_instance_id, ctx.resource_group_id]


    @package.task
    def fibonacci(ctx: TaskContext, n: int) -> int:
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a


    @package.task
    def fail_tdl(ctx: TaskContext) -> None:
        raise TdlError("Custom", "nope")


    @package.task
    def boom(ctx: TaskContext, divisor: int) -> int:
        return 1 // divisor


    @package.task
    def unserializable(ctx: TaskContext) -> object:
        return object()


    @package.task
    def spin(ctx: TaskContext) -> None:
        while True:
            pass


    @package.task
    def exit_with(ctx: TaskContext, code: int) -> None:
        sys.exit(code)


    @package.task
    def hard_exit(ctx: TaskContext, code: int) -> None:
        os._exit(code)


    @package.task
    def segfault(ctx: TaskContext) -> None:
        import ctypes

        ctypes.string_at(0)


    @package.task
    def chatty(ctx: TaskContext) -> str:
        print("hello from a Python task")
        return "ok"
"""

INIT_FAILS = """
    from spider_core.sdk import Package, TdlError

    def setup():
        raise TdlError("Custom", "init failed on purpose")

    package = Package("initfails", init=setup)

    @package.task
    def hello(ctx) -> str:
        return "never"
"""


def write_package(root: Path, name: str, source: str, files: dict[str, str] | None = None) -> Path:
    """``root/<name>/__init__.py`` (plus ``files``); returns ``root``."""
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "__init__.py").write_text(textwrap.dedent(source))
    for file, text in (files or {}).items():
        (directory / file).write_text(textwrap.dedent(text))
    return root


def make_installed(root: Path, dist: str, module: str, source: str, entries: dict[str, str]) -> Path:
    """A distribution in ``root`` whose ``spider_core.task_packages`` entry points are ``entries``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 2.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{TASK_PACKAGE_GROUP}]\n{lines}")
    return root


def req(task_name: str, *inputs: object, package: str = "pytypes", **kwargs: object) -> sc.ExecuteRequest:
    return sc.ExecuteRequest(package=package, task=task_name, inputs=inputs, **kwargs)


@pytest.fixture(scope="module")
def mixed_dir(tmp_path_factory: pytest.TempPathFactory, package_dir: Path) -> Path:
    """One package dir: the native integration_test_tasks (a symlink to the session build), the
    typed Python package, complex_number and a package whose init fails."""
    root = tmp_path_factory.mktemp("mixed")
    (root / NATIVE).symlink_to(package_dir / NATIVE, target_is_directory=True)
    write_package(root, "pytypes", TYPED)
    write_package(root, "initfails", INIT_FAILS)
    (root / "complex_number").symlink_to(TASK_PACKAGES / "complex_number", target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def pool(mixed_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    logs = tmp_path_factory.mktemp("pytask-logs")
    with sc.SyncProcessPool(sc.PoolConfig(package_dir=mixed_dir, log_dir=logs, plugin_autoload=False)) as pool:
        yield pool


def still_serving(pool, executor_id: int | None = None) -> None:
    """The pool answers the next call (on the same executor when ``executor_id`` is given)."""
    outcome = assert_outcome(pool.execute(req("echo_int", 5), hard_timeout=10), "Success", [5])
    if executor_id is not None:
        assert outcome.executor_id == executor_id


# -- typed round trips through the real executor -------------------------------------------

SHAPE = {"name": "tri", "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}], "tags": {"a": 1}, "color": None}


@pytest.mark.parametrize(
    ("task_name", "value", "expected"),
    [
        ("echo_int", 0, 0),
        ("echo_int", -(2**63), -(2**63)),
        ("echo_int", 2**64 - 1, 2**64 - 1),
        ("echo_float", 1.5, 1.5),
        ("echo_float", 2, 2.0),  # an int is a valid f64, as rmp-serde reads it
        ("echo_str", "héllo", "héllo"),
        ("echo_bytes", b"\x00\xffbin", b"\x00\xffbin"),
        ("echo_bytes", [0, 1, 255], b"\x00\x01\xff"),  # a Rust Vec<u8> arrives as an array of u8
        ("echo_bool", True, True),
        ("echo_list", [1, 2, 3], [1, 2, 3]),
        ("echo_list", [], []),
        ("echo_dict", {"a": ["x"], "b": []}, {"a": ["x"], "b": []}),
        ("echo_optional", None, None),
        ("echo_optional", 7, 7),
        ("scale", SHAPE, {**SHAPE, "points": [{"x": 2, "y": 4}, {"x": 6, "y": 8}]}),
    ],
)
def test_typed_round_trip(pool, task_name: str, value: object, expected: object) -> None:
    inputs = (value, 2) if task_name == "scale" else (value,)
    outcome = assert_outcome(pool.execute(req(task_name, *inputs), hard_timeout=10), "Success", [expected])
    assert outcome.outputs == encode_values([expected])


def test_attrs_class_from_an_array_as_rmp_serde_writes_a_struct(pool) -> None:
    shape = ["tri", [[1, 2], [3, 4]], {"a": 1}, None]
    outcome = pool.execute(req("scale", shape, 2), hard_timeout=10)
    assert_outcome(outcome, "Success", [{**SHAPE, "points": [{"x": 2, "y": 4}, {"x": 6, "y": 8}]}])


def test_dataclass_round_trip(pool) -> None:
    reading = {"sensor": "t1", "values": [1.0, 2.5], "raw": b"\x01\x02"}
    outcome = pool.execute(req("calibrate", reading), hard_timeout=10)
    assert_outcome(outcome, "Success", [{"sensor": "t1", "values": [2.0, 5.0], "raw": b"\x01\x02"}])


def test_any_and_optional_struct(pool) -> None:
    assert_outcome(pool.execute(req("types_of", [1], SHAPE), hard_timeout=10), "Success", [["list", "Shape"]])
    assert_outcome(pool.execute(req("types_of", "x", None), hard_timeout=10), "Success", [["str", "NoneType"]])


def test_tuple_return_is_one_payload_per_element(pool) -> None:
    outcome = assert_outcome(pool.execute(req("divmod", 17, 5), hard_timeout=10), "Success", [3, 2])
    assert outcome.outputs == frame_payloads([b"\x03", b"\x02"])


@pytest.mark.parametrize("task_name", ["nothing", "empty_tuple"])
def test_none_and_empty_tuple_give_no_payloads(pool, task_name: str) -> None:
    outcome = assert_outcome(pool.execute(req(task_name), hard_timeout=10), "Success", [])
    assert outcome.outputs == EMPTY_FRAME


def test_the_task_context_is_the_first_argument(pool) -> None:
    request = req("context", job_id=7, task_id=TaskId.of(3), task_instance_id=11, resource_group_id=2)
    assert_outcome(pool.execute(request, hard_timeout=10), "Success", [[7, "Index(3)", 11, 2]])


def test_print_in_a_task_does_not_corrupt_the_protocol(pool) -> None:
    assert_outcome(pool.execute(req("chatty"), hard_timeout=10), "Success", ["ok"])
    still_serving(pool)


# -- native and Python side by side -------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 10, 20, 30])
def test_python_and_c_fibonacci_give_identical_frames(pool, n: int) -> None:
    native = assert_outcome(pool.execute(req("fibonacci", n, package=NATIVE), hard_timeout=10), "Success")
    python = assert_outcome(pool.execute(req("fibonacci", n), hard_timeout=10), "Success")
    assert python.outputs == native.outputs


def test_python_and_c_length_mismatch_errors_are_identical(pool) -> None:
    native = assert_outcome(pool.execute(req("fibonacci", package=NATIVE), hard_timeout=10), "InTaskFailure")
    python = assert_outcome(pool.execute(req("fibonacci"), hard_timeout=10), "InTaskFailure")
    assert python.error.encode() == native.error.encode()
    assert python.error == TaskError(
        TdlError("DeserializationError", "`__fibonacci_params`: expected 1 payloads, got 0")
    )


def test_native_and_python_packages_share_one_package_dir(pool, mixed_dir: Path) -> None:
    assert (mixed_dir / NATIVE / f"lib{NATIVE}.so").is_file()
    assert_outcome(pool.execute(req("fibonacci", 10, package=NATIVE), hard_timeout=10), "Success", [55])
    assert_outcome(pool.execute(req("echo_str", "py"), hard_timeout=10), "Success", ["py"])
    assert_outcome(
        pool.execute(req("always_fail", package=NATIVE), hard_timeout=10),
        "InTaskFailure",
        error=TdlErrorKind.ExecutionError,
    )


def test_native_library_wins_in_a_directory_holding_both(tmp_path: Path, package_dir: Path, pm) -> None:
    both = tmp_path / NATIVE
    both.mkdir()
    (both / f"lib{NATIVE}.so").symlink_to(package_dir / NATIVE / f"lib{NATIVE}.so")
    (both / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    source = pm.hook.spider_resolve_package(package=NATIVE, package_dir=tmp_path, installed_packages=True)
    assert source.kind == "native"
    assert spider_pytasks.spider_resolve_package(package=NATIVE, package_dir=tmp_path) is None


# -- the complex_number example ------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_name", "a", "b", "expected"),
    [
        ("add", [1, 2], [3, 4], {"re": 4.0, "im": 6.0}),
        ("sub", {"re": 1, "im": 2}, {"re": 3, "im": 4}, {"re": -2.0, "im": -2.0}),
        ("mul", [1, 2], [3, 4], {"re": -5.0, "im": 10.0}),
        ("div", [-5, 10], [3, 4], {"re": 1.0, "im": 2.0}),
    ],
)
def test_complex_number(pool, task_name: str, a: object, b: object, expected: dict) -> None:
    outcome = pool.execute(req(task_name, a, b, package="complex_number"), hard_timeout=10)
    assert_outcome(outcome, "Success", [expected])


def test_complex_division_by_zero_is_a_tdl_error(pool) -> None:
    outcome = pool.execute(req("div", [1, 2], [0, 0], package="complex_number"), hard_timeout=10)
    assert_outcome(outcome, "InTaskFailure", error=TdlError("ExecutionError", "div: division by zero"))
    still_serving(pool, outcome.executor_id)


# -- error paths: each leaves the executor serving ---------------------------------------------


def test_raised_tdl_error_is_returned_as_is(pool) -> None:
    outcome = pool.execute(req("fail_tdl"), hard_timeout=10)
    assert_outcome(outcome, "InTaskFailure", error=TaskError(TdlError("Custom", "nope")))
    still_serving(pool, outcome.executor_id)


def test_structuring_failure_names_the_parameter_and_type(pool) -> None:
    outcome = pool.execute(req("scale", {**SHAPE, "points": [{"x": "1", "y": 2}]}, 2), hard_timeout=10)
    assert_outcome(
        outcome,
        "InTaskFailure",
        error=TaskError(
            TdlError(
                "DeserializationError",
                "`__scale_params`: failed to deserialize parameter `shape` (payload 0) as Shape: "
                "points[0].x: expected int, got str '1'",
            )
        ),
    )
    still_serving(pool, outcome.executor_id)


@pytest.mark.parametrize(
    ("task_name", "value", "detail"),
    [
        ("echo_int", "5", "as int: expected int, got str '5'"),
        ("echo_int", 1.5, "as int: expected int, got float 1.5"),
        ("echo_int", True, "as int: expected int, got bool True"),
        ("echo_str", 5, "as str: expected str, got int 5"),
        ("echo_list", [1, "x"], "as list[int]: [1]: expected int, got str 'x'"),
        ("echo_optional", "x", "as int | None: expected int | None, got str 'x'"),
        ("calibrate", {"sensor": "s", "values": [], "raw": b"", "extra": 1}, "as Reading: extra fields found (extra)"),
    ],
)
def test_structuring_is_as_strict_as_rmp_serde(pool, task_name: str, value: object, detail: str) -> None:
    outcome = assert_outcome(pool.execute(req(task_name, value), hard_timeout=10), "InTaskFailure")
    error = outcome.error.error
    assert error.kind is TdlErrorKind.DeserializationError
    assert error.message.endswith(detail), error.message


def test_other_exceptions_are_execution_errors_with_the_traceback_logged(pool) -> None:
    outcome = pool.execute(req("boom", 0), hard_timeout=10)
    assert_outcome(
        outcome,
        "InTaskFailure",
        error=TaskError(TdlError("ExecutionError", "ZeroDivisionError: integer division or modulo by zero")),
    )
    still_serving(pool, outcome.executor_id)
    deadline = time.monotonic() + 10
    while True:
        events = [json.loads(line) for line in pool.log_path.read_text().splitlines() if line.startswith("{")]
        raised = [e for e in events if e["event"] == "task raised" and e.get("task") == "boom"]
        if raised or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert raised, "no 'task raised' line in the executor log"
    assert raised[-1]["package"] == "pytypes"
    assert "Traceback" in raised[-1]["traceback"] and "ZeroDivisionError" in raised[-1]["traceback"]


def test_wrong_number_of_inputs_is_spiders_length_mismatch(pool) -> None:
    outcome = pool.execute(req("echo_int", 1, 2), hard_timeout=10)
    assert_outcome(
        outcome,
        "InTaskFailure",
        error=TaskError(TdlError("DeserializationError", "`__echo_int_params`: expected 1 payloads, got 2")),
    )
    renamed = pool.execute(req("divmod", 1), hard_timeout=10)  # the function's name, as spider's macro uses
    assert_outcome(renamed, "InTaskFailure", error="`__divide_params`: expected 2 payloads, got 1")
    still_serving(pool, outcome.executor_id)


def test_unknown_task_is_task_not_found(pool) -> None:
    outcome = pool.execute(req("no_such_task"), hard_timeout=10)
    assert_outcome(outcome, "InTaskFailure", error=TaskError(TdlError("TaskNotFound", "no_such_task")))
    still_serving(pool, outcome.executor_id)


def test_unserializable_output_is_a_serialization_error(pool) -> None:
    outcome = pool.execute(req("unserializable"), hard_timeout=10)
    assert_outcome(outcome, "InTaskFailure", error=TdlErrorKind.SerializationError)
    assert "cannot serialize the output (object)" in outcome.error.error.message
    still_serving(pool, outcome.executor_id)


def test_failing_init_is_a_package_init_error(pool) -> None:
    outcome = pool.execute(req("hello", package="initfails"), hard_timeout=10)
    assert_outcome(outcome, "InTaskFailure", error=PackageInitError(TdlError("Custom", "init failed on purpose")))
    still_serving(pool, outcome.executor_id)


@pytest.mark.slow
def test_infinite_loop_is_killed_by_the_hard_timeout(pool) -> None:
    first = pool.executor_id
    assert_outcome(pool.execute(req("spin"), hard_timeout=0.5), "Timeout", hard_timeout=0.5, executor_id=first)
    still_serving(pool, first + 1)


@pytest.mark.parametrize("task_name", ["exit_with", "hard_exit"])
def test_exiting_task_is_an_executor_crash_and_the_next_call_succeeds(pool, task_name: str) -> None:
    first = pool.executor_id
    outcome = pool.execute(req(task_name, 3), hard_timeout=10)
    assert_outcome(outcome, "ExecutorCrash", exit_status=3, signal=None, executor_id=first)
    still_serving(pool, first + 1)


def test_segfault_in_a_python_task_is_an_executor_crash(pool) -> None:
    first = pool.executor_id
    outcome = pool.execute(req("segfault"), hard_timeout=10)
    assert_outcome(outcome, "ExecutorCrash", exit_status=None, signal=signal.SIGSEGV, executor_id=first)
    still_serving(pool, first + 1)


# -- plugin blocking and installed packages ------------------------------------------------


def test_blocking_the_plugin_makes_python_packages_unresolvable(mixed_dir: Path, spider_pool_factory) -> None:
    blocked = spider_pool_factory(mixed_dir, disabled_plugins=("spider_pytasks",), plugin_autoload=False)
    outcome = blocked.execute(req("echo_int", 1), hard_timeout=10)
    assert_outcome(outcome, "InTaskFailure", error=InvalidLibrary)
    assert "no task package named 'pytypes'" in outcome.error.message
    assert_outcome(blocked.execute(req("fibonacci", 10, package=NATIVE), hard_timeout=10), "Success", [55])


INSTALLED = """
    from spider_core.sdk import Package, TaskContext

    package = Package("installed_tasks")

    @package.task
    def where(ctx: TaskContext) -> str:
        return "installed"

    @package.task
    def add(ctx: TaskContext, a: int, b: int) -> int:
        return a + b
"""


SHADOWING = """
    from spider_core.sdk import Package, TaskContext

    package = Package("shadowed")

    @package.task
    def where(ctx: TaskContext) -> str:
        return "directory"
"""


@pytest.fixture
def installed_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site dir with an installed package (entry point ``installed_tasks``) and a package that
    is also a directory package (``shadowed``), on ``sys.path`` and ``PYTHONPATH``."""
    site = make_installed(
        tmp_path / "site",
        "spider-installed-tasks",
        "installed_tasks_mod",
        textwrap.dedent(INSTALLED) + "\nshadowed = Package('shadowed', tasks=[where])\n",
        {"installed_tasks": "installed_tasks_mod:package", "shadowed": "installed_tasks_mod:shadowed"},
    )
    monkeypatch.syspath_prepend(str(site))
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    return site


def test_installed_entry_point_package_through_the_pool(
    installed_site: Path, tmp_path: Path, spider_pool_factory
) -> None:
    packages = write_package(tmp_path / "packages", "shadowed", SHADOWING)
    pool = spider_pool_factory(packages, inherited_env=("PYTHONPATH",), plugin_autoload=False)
    assert_outcome(pool.execute(req("add", 2, 3, package="installed_tasks"), hard_timeout=10), "Success", [5])
    assert_outcome(pool.execute(req("where", package="installed_tasks"), hard_timeout=10), "Success", ["installed"])
    # A directory package is found before an installed one of the same name.
    assert_outcome(pool.execute(req("where", package="shadowed"), hard_timeout=10), "Success", ["directory"])


def test_installed_package_is_resolved_with_its_distribution(installed_site: Path, tmp_path: Path, pm) -> None:
    source = pm.hook.spider_resolve_package(package="installed_tasks", package_dir=tmp_path, installed_packages=True)
    assert source.kind == "python"
    assert source.details == InstalledPackage(
        entry_point="installed_tasks_mod:package", distribution="spider-installed-tasks", version="2.0"
    )
    loaded = pm.hook.spider_load_package(source=source)
    assert loaded.name == "installed_tasks" and loaded.kind == "python"
    assert isinstance(loaded, TaskPackage)


def test_installed_package_whose_entry_point_names_another_package(tmp_path: Path, monkeypatch, pm) -> None:
    site = make_installed(tmp_path / "site", "spider-misnamed", "misnamed_mod", INSTALLED, {"alias": "misnamed_mod:package"})
    monkeypatch.syspath_prepend(str(site))
    source = pm.hook.spider_resolve_package(package="alias", package_dir=tmp_path, installed_packages=True)
    with pytest.raises(InvalidLibrary, match="declares package name 'installed_tasks' but was requested as 'alias'"):
        pm.hook.spider_load_package(source=source)


def test_two_distributions_installing_one_name_is_a_duplicate(tmp_path: Path, monkeypatch, pm) -> None:
    for i in (1, 2):
        site = make_installed(
            tmp_path / f"site{i}", f"spider-dup{i}", f"dup_mod{i}", INSTALLED, {"dup": f"dup_mod{i}:package"}
        )
        monkeypatch.syspath_prepend(str(site))
    with pytest.raises(DuplicatePackage, match="task package 'dup' is installed more than once"):
        pm.hook.spider_resolve_package(package="dup", package_dir=tmp_path, installed_packages=True)


def test_unknown_package_resolves_to_none(tmp_path: Path, pm) -> None:
    assert spider_pytasks.spider_resolve_package(package="nowhere", package_dir=tmp_path) is None
    assert pm.hook.spider_resolve_package(package="nowhere", package_dir=tmp_path, installed_packages=True) is None


def test_loader_ignores_other_kinds() -> None:
    assert spider_pytasks.spider_load_package(source=PackageSource(package="x", kind="native", location="/x")) is None


# -- loading in process: the checks and errors ---------------------------------------------


def load(root: Path, name: str):
    return load_directory_package(root / name, expected_name=name)


def test_load_runs_init_once_and_supports_relative_imports(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        "withhelpers",
        """
        from spider_core.sdk import Package, TaskContext
        from .helpers import double

        calls = []
        package = Package("withhelpers", init=lambda: calls.append("init"))

        @package.task
        def twice(ctx: TaskContext, v: int) -> int:
            return double(v)
        """,
        files={"helpers.py": "def double(v):\n    return 2 * v\n"},
    )
    path_before = list(sys.path)
    loaded = load(tmp_path, "withhelpers")
    assert loaded.module.calls == ["init"]
    assert loaded.module.__name__ == "spider_pytasks.loaded.withhelpers"
    assert decode_values(loaded.execute("twice", TaskContext().encode(), encode_values([21]))) == [42]
    assert sys.path == path_before
    assert not (tmp_path / "withhelpers" / "__pycache__").exists()


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "import no_such_module_xyz\n",
            "cannot import Python task package 'broken' from .*: ModuleNotFoundError: No module named 'no_such_module_xyz'",
        ),
        ("def oops(:\n", "cannot import Python task package 'broken' from .*: SyntaxError"),
        ("x = 1\n", "does not define `package`"),
        ("package = 42\n", "the package object is of type int, not spider_core.sdk.Package"),
        (
            "from spider_core.sdk import Package\npackage = Package('other')\n",
            "declares package name 'other' but was requested as 'broken'",
        ),
        (
            "from spider_core.sdk import Package\npackage = Package('broken')\n"
            "@package.task\ndef t(ctx, v: 'NoSuchType') -> int:\n    return 1\n",
            "cannot resolve the annotations of t: NameError",
        ),
        (
            "from spider_core.sdk import Package\npackage = Package('broken')\n"
            "@package.task\ndef t(ctx: int) -> int:\n    return 1\n",
            r"the first parameter \(ctx\) receives the TaskContext but is annotated int",
        ),
    ],
)
def test_broken_packages_are_invalid_libraries(tmp_path: Path, source: str, message: str) -> None:
    write_package(tmp_path, "broken", source)
    with pytest.raises(InvalidLibrary, match=message):
        load(tmp_path, "broken")
    assert not [m for m in sys.modules if m.startswith("spider_pytasks.loaded.broken")]


def test_init_raising_another_exception_is_a_package_init_error(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        "badinit",
        "from spider_core.sdk import Package\n"
        "def setup():\n    raise OSError('no disk')\npackage = Package('badinit', init=setup)\n",
    )
    with pytest.raises(PackageInitError) as info:
        load(tmp_path, "badinit")
    assert info.value.error == TdlError("ExecutionError", "OSError: no disk")
    assert "spider_pytasks.loaded.badinit" not in sys.modules


def test_a_bad_task_context_is_a_deserialization_error(mixed_dir: Path) -> None:
    loaded = load(mixed_dir, "pytypes")
    with pytest.raises(TaskError) as info:
        loaded.execute("echo_int", b"\xc1", encode_values([1]))
    assert info.value.error.kind is TdlErrorKind.DeserializationError
    assert info.value.error.message.startswith("failed to deserialize `TaskContext`: ")


def test_a_truncated_input_frame_is_a_deserialization_error(mixed_dir: Path) -> None:
    loaded = load(mixed_dir, "pytypes")
    with pytest.raises(TaskError) as info:
        loaded.execute("echo_int", TaskContext().encode(), b"\x01")
    assert info.value.error.kind is TdlErrorKind.DeserializationError
    assert info.value.error.message.startswith("`__echo_int_params`: wire frame is 1 bytes")


def test_system_exit_is_not_caught(mixed_dir: Path) -> None:
    loaded = load(mixed_dir, "pytypes")
    with pytest.raises(SystemExit):
        loaded.execute("exit_with", TaskContext().encode(), encode_values([4]))


def test_package_names_with_dots_and_dashes_load_as_distinct_modules(tmp_path: Path) -> None:
    for name in ("a.b", "a-b", "a%2Eb"):
        write_package(tmp_path, name, f"from spider_core.sdk import Package\npackage = Package({name!r})\n")
        assert load(tmp_path, name).module.__name__ == spider_pytasks.loader.module_name(name)
    assert len({spider_pytasks.loader.module_name(n) for n in ("a.b", "a-b", "a%2Eb")}) == 3


# -- listing -------------------------------------------------------------------------------


@pytest.mark.slow
def test_list_packages(tmp_path: Path, installed_site: Path, package_dir: Path, pm) -> None:
    root = tmp_path / "packages"
    root.mkdir()
    (root / NATIVE).symlink_to(package_dir / NATIVE, target_is_directory=True)
    shutil.copytree(TASK_PACKAGES / "complex_number", root / "complex_number")
    write_package(root, "broken", "import no_such_module_xyz\n")
    write_package(root, "shadowed", "from spider_core.sdk import Package\npackage = Package('shadowed')\n")
    write_package(root, "exits", "raise SystemExit(3)\n")
    write_package(root, "crashes", "import os\nos._exit(9)\n")
    write_package(root, "misnamed", "from spider_core.sdk import Package\npackage = Package('other')\n")
    pid_file = tmp_path / "pid"
    write_package(
        root,
        "chatty",
        f"import os\nprint('{{not json')\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "from spider_core.sdk import Package\npackage = Package('chatty')\n",
    )
    (root / "notes").mkdir()  # neither kind of package

    infos = {i.name: i for i in list_packages(root)}

    assert int(pid_file.read_text()) != os.getpid()  # imported in a child, never here
    assert NATIVE not in infos and "notes" not in infos
    assert infos["complex_number"] == PackageInfo(
        name="complex_number",
        kind="python",
        location=root / "complex_number",
        tasks=(
            "add(a: Complex, b: Complex) -> Complex",
            "sub(a: Complex, b: Complex) -> Complex",
            "mul(a: Complex, b: Complex) -> Complex",
            "div(a: Complex, b: Complex) -> Complex",
        ),
    )
    assert infos["chatty"].error is None and infos["chatty"].tasks == ()
    assert infos["broken"].error == "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    assert infos["exits"].error == "SystemExit: 3"
    assert infos["crashes"].error == "importing it broke the inspecting process (exit status 9)"
    assert infos["misnamed"].error == "declares package name 'other' but is found as 'misnamed'"
    assert infos["shadowed"].location == root / "shadowed" and infos["shadowed"].error is None
    assert "installed_tasks" not in infos  # spider_installed lists installed packages
    assert not (root / "complex_number" / "__pycache__").exists()

    listed = {(i.name, i.source): i for found in pm.hook.spider_list_packages(package_dir=root) for i in found}
    assert listed[NATIVE, "directory"].kind == "native" and listed["complex_number", "directory"].kind == "python"
    # Both copies of a package in the directory and installed are listed, each with its source.
    assert listed["shadowed", "directory"].location == root / "shadowed"
    assert listed["shadowed", "installed"].distribution == "spider-installed-tasks"
    installed = listed["installed_tasks", "installed"]
    assert installed.tasks == ("where() -> str", "add(a: int, b: int) -> int") and installed.error is None
    assert installed.location == installed_site / "installed_tasks_mod.py"
    assert (installed.kind, installed.distribution, installed.version) == ("python", "spider-installed-tasks", "2.0")


@pytest.mark.slow
def test_list_packages_survives_a_package_that_hangs_on_import(tmp_path: Path, monkeypatch) -> None:
    from spider_pytasks import listing

    monkeypatch.setattr(listing, "PACKAGE_TIMEOUT", 1.0)
    write_package(tmp_path, "a_hangs", "while True:\n    pass\n")
    write_package(tmp_path, "b_fine", "from spider_core.sdk import Package\npackage = Package('b_fine')\n")
    write_package(tmp_path, "c_hangs", "while True:\n    pass\n")
    write_package(tmp_path, "d_fine", "from spider_core.sdk import Package\npackage = Package('d_fine')\n")
    started = time.monotonic()
    infos = list_packages(tmp_path, timeout=30)
    assert [(i.name, i.error) for i in infos] == [
        ("a_hangs", "importing it broke the inspecting process (no answer within 1 s)"),
        ("b_fine", None),
        ("c_hangs", "importing it broke the inspecting process (no answer within 1 s)"),
        ("d_fine", None),
    ]
    assert time.monotonic() - started < 15  # each hang costs its own budget, not the whole


@pytest.mark.slow
def test_list_packages_has_one_overall_deadline(tmp_path: Path, monkeypatch) -> None:
    from spider_pytasks import listing

    monkeypatch.setattr(listing, "PACKAGE_TIMEOUT", 1.0)
    for name in ("a_hangs", "b_hangs", "c_hangs"):
        write_package(tmp_path, name, "while True:\n    pass\n")
    infos = list_packages(tmp_path, timeout=1.5)
    errors = [i.error for i in infos]
    assert errors[0] == "importing it broke the inspecting process (no answer within 1 s)"
    assert errors[1].startswith("importing it broke the inspecting process (no answer within 0.")
    assert errors[2] == "not inspected: listing took longer than 1.5 s"


def test_list_packages_does_not_wait_for_processes_a_package_starts(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        "spawner",
        "import subprocess, sys\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "from spider_core.sdk import Package\npackage = Package('spawner')\n",
    )
    started = time.monotonic()
    infos = list_packages(tmp_path, timeout=30)
    assert [(i.name, i.error) for i in infos] == [("spawner", None)]
    assert time.monotonic() - started < 10


def test_list_packages_without_a_directory(tmp_path: Path, monkeypatch, pm) -> None:
    assert list_packages(None) == []
    assert list_packages("/no/such/dir") == []
    for i in (1, 2):
        site = make_installed(
            tmp_path / f"site{i}", f"spider-twice{i}", f"twice_mod{i}", INSTALLED, {"twice": f"twice_mod{i}:package"}
        )
        monkeypatch.syspath_prepend(str(site))
    (twice,) = [i for found in pm.hook.spider_list_packages(package_dir=None) for i in found if i.name == "twice"]
    assert twice.error.startswith("task package 'twice' is installed more than once: entry point twice_mod")
    assert "spider-twice1 2.0" in twice.error and "spider-twice2 2.0" in twice.error


# -- the documented example ----------------------------------------------------------------


def test_docs_package_example_is_task_packages_complex_number() -> None:
    page = (REPO / "docs" / "python-packages.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, re.S)
    assert blocks, "docs/python-packages.md has no python example"
    assert blocks[0] == (TASK_PACKAGES / "complex_number" / "__init__.py").read_text()
