"""The Python task SDK on its own (spider_core.sdk): structuring, type names, tasks and
packages, without an executor; and spider_core.tdl, which no longer holds it."""

from __future__ import annotations

import ast
import subprocess
import sys
from typing import NewType

import attrs
import pytest

from spider_core.sdk import Package, TaskContext, structure, task

# -- the SDK -------------------------------------------------------------------------------


@attrs.define
class Tree:
    value: int
    kids: list[Tree]


UserId = NewType("UserId", int)


@pytest.mark.parametrize(
    ("value", "tp", "expected"),
    [
        ([1, [[2, []], {"value": 3, "kids": []}]], Tree, Tree(1, [Tree(2, []), Tree(3, [])])),
        ([3, 1, 3], set[int], {1, 3}),
        ([1, "a"], tuple[int, str], (1, "a")),
        ([1, 2, 3], tuple[int, ...], (1, 2, 3)),
        (7, UserId, 7),
        ({"1": [1.5, 2]}, dict[str, list[float]], {"1": [1.5, 2.0]}),
        (3, int | str, 3),
        ("3", int | str, "3"),
        (3, float | int, 3),  # the value's own type first, whatever the order
        (3, float | str, 3.0),
        (b"ab", int | str, "ab"),
        ([97], int | bytes, b"a"),
        (None, int | str | None, None),
        ([True, 2], list[bool | int], [True, 2]),
    ],
)
def test_structure(value: object, tp: object, expected: object) -> None:
    result = structure(value, tp)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "tp", "message"),
    [
        ([1, [[2, [[3, "x"]]]]], Tree, "kids[0].kids[0].kids: expected list[Tree] (an array), got str 'x'"),
        ([1, [[2]]], Tree, "kids[0]: expected Tree as an array of 2 field values (value, kids), got 1 elements"),
        ({1: 2}, dict[str, int], "[key 1]: expected str, got int 1"),
        ("7", UserId, "expected int, got str '7'"),
        ([1, "a", 2], tuple[int, str], "expected tuple[int, str] (2 elements), got 3 elements"),
        (b"\xff", str, "expected str, got bin that is not valid UTF-8"),
        (True, int | str, "expected int | str, got bool True"),
        (1.5, int | str, "expected int | str, got float 1.5"),
        (None, int | float, "expected int | float, got NoneType None"),
        ("x", float | int | None, "expected int | float | None, got str 'x'"),  # members in one order
        ([1, True], list[int | str], "[1]: expected int | str, got bool True"),
    ],
)
def test_structure_errors(value: object, tp: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        structure(value, tp)
    assert str(info.value) == message


def test_a_task_is_still_a_plain_function() -> None:
    @task(name="renamed")
    def add(ctx: TaskContext, a: int, b: int) -> int:
        """Add two ints."""
        return a + b

    assert add(None, 2, 3) == 5
    assert (add.name, add.__name__, add.__doc__) == ("renamed", "add", "Add two ints.")
    assert add.signature() == "renamed(a: int, b: int) -> int"


def test_signatures_name_the_types() -> None:
    package = Package("sigs")

    @package.task
    def f(ctx, a: list[dict[str, int]], b: bytes | None, c) -> tuple[int, str]:
        return 1, "x"

    @package.task
    def g(ctx: TaskContext):
        return None

    assert f.signature() == "f(a: list[dict[str, int]], b: bytes | None, c: Any) -> tuple[int, str]"
    assert g.signature() == "g()"


@pytest.mark.parametrize(
    ("define", "message"),
    [
        (lambda: task(lambda: None), "the first parameter must receive the TaskContext"),
        (lambda: task(lambda ctx, *args: None), "parameter 'args' must be positional"),
        (lambda: task(lambda ctx, *, k: None), "parameter 'k' must be positional"),
        (lambda: task(lambda ctx, **kw: None), "parameter 'kw' must be positional"),
    ],
)
def test_functions_that_cannot_be_tasks(define, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        define()


def test_async_functions_cannot_be_tasks() -> None:
    async def work(ctx):
        return None

    with pytest.raises(TypeError, match="async functions cannot be tasks"):
        task(work)


def test_package_rejects_duplicate_tasks_and_bad_names() -> None:
    def t(ctx):
        return None

    package = Package("dups", tasks=[t])
    with pytest.raises(ValueError, match="package 'dups' already has a task named 't'"):
        package.add(task(t))
    with pytest.raises(ValueError, match="invalid package name '../x'"):
        Package("../x")
    assert list(package.tasks) == ["t"] and repr(package) == "<Package dups: t>"


# -- spider_core.tdl: the ground floor under the SDK ---------------------------------------


def test_tdl_imports_nothing_else_from_spider_core() -> None:
    """Every name of ``spider_core.tdl`` loaded, and nothing of spider_core outside it but the
    package itself and its import helper (which imports nothing)."""
    code = (
        "import sys\nfrom spider_core.tdl import *\n"
        "print(sorted(m for m in sys.modules if m.startswith('spider_core')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(done.stdout)
    assert "spider_core.tdl.wire" in loaded
    outside = [m for m in loaded if m not in ("spider_core", "spider_core._lazy") and not m.startswith("spider_core.tdl")]
    assert outside == []
