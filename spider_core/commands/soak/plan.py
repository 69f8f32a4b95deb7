"""What a soak runs: the kinds of fault and what each must end in, the plan (the kind of each
task, drawn from a seed), each task's request, and the package directory that holds the
bundled ``integration_test_tasks``."""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import signal
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from attrs import define

from spider_core.bundled import NATIVE, cache_root, prepare_packages
from spider_core.commands.common import os_reason
from spider_core.models import ExecuteRequest

#: The fault kinds, drawn evenly.
FAULTS = ("segfault", "abort", "exit", "timeout", "cancel", "stdout", "large", "fail", "kill")
#: The kind of a fault-free task.
FREE = "echo"
#: The kind of a fault-free task of the user's package.
USER = "user"
#: The kind of the tasks run after all callers finished, one per slot at once.
FINAL = "final"

#: The hard timeout of a ``timeout`` fault, in seconds.
TIMEOUT_FAULT = 0.1
#: How long a ``timeout`` or ``cancel`` fault's task would sleep, in milliseconds.
LONG_SLEEP_MS = 120_000
#: Largest output of a ``large`` fault, in bytes (each is 1 MiB to this).
LARGE_MAX = 4 << 20
#: Longest wait, in seconds, for anything the soak itself waits on (a cancel fault's task to
#: start, the calls in flight to drain before a kill, a killed process to die).
WAIT = 60.0

#: What each kind of task must end in, as the summary names it.
DESCRIPTIONS = {
    FREE: "Success echoing its token",
    USER: "Success with the values of its first run",
    FINAL: "Success echoing its token",
    "segfault": "ExecutorCrash (SIGSEGV)",
    "abort": "ExecutorCrash (SIGABRT)",
    "exit": "ExecutorCrash (its exit status)",
    "timeout": f"Timeout ({TIMEOUT_FAULT} s)",
    "cancel": "cancelled while running",
    "stdout": "Success (stdout only logged)",
    "large": "Success with its 1-4 MiB",
    "fail": "InTaskFailure (ExecutionError)",
    "kill": "idle executor SIGKILLed; next task Success",
}

#: Faults after which the pool must replace an executor, and the exit reason it reports.
REPLACING: dict[str, str] = {
    "segfault": "crash", "abort": "crash", "exit": "crash", "kill": "crash", "timeout": "timeout", "cancel": "cancelled",
}


class SoakError(Exception):
    """The soak cannot run as asked (a bad setting, a package it cannot use); one sentence."""


@define
class Task:
    """One planned task."""

    index: int
    kind: str
    request: ExecuteRequest
    hard_timeout: float
    expected: Any = None  # the values of a Success, the exit status of an exit, ...


def plan_task(index: int, kind: str, *, rng: random.Random, timeout: float, marks: Path,
              user: ExecuteRequest | None = None, reference: Any = None) -> Task:
    """Task ``index`` of ``kind``: its request, hard timeout and what it must return.

    :param rng: Draws its token (and a ``large`` fault's size).
    :param timeout: The hard timeout of every task but a ``timeout`` fault.
    :param marks: Where a ``cancel`` fault's task writes the file that says it runs.
    :param user: The user's fault-free task, whose values must equal ``reference``.
    """
    token = f"{index}:{rng.getrandbits(64):016x}"
    if kind in (FREE, FINAL, "kill"):
        return _call(timeout, index, kind, "sleep_and_echo", [token], expected=[[token]])
    if kind == USER:
        assert user is not None
        return Task(index=index, kind=kind, request=user, hard_timeout=timeout, expected=reference)
    if kind == "segfault":
        return _call(timeout, index, kind, "segfault", expected=signal.SIGSEGV)
    if kind == "abort":
        return _call(timeout, index, kind, "always_panic", expected=signal.SIGABRT)
    if kind == "exit":
        code = 1 + index % 120
        return _call(timeout, index, kind, "exit_with", code, expected=code)
    if kind == "timeout":
        return _call(timeout, index, kind, "sleep_ms", LONG_SLEEP_MS, hard_timeout=TIMEOUT_FAULT)
    if kind == "cancel":
        return _call(timeout, index, kind, "mark_and_sleep", str(marks / str(index)), LONG_SLEEP_MS,
                     hard_timeout=2 * WAIT)
    if kind == "stdout":
        return _call(timeout, index, kind, "print_to_stdout", expected=[])
    if kind == "large":
        size = rng.randint(1 << 20, LARGE_MAX)
        return _call(timeout, index, kind, "big", size, expected=size)
    if kind == "fail":
        return _call(timeout, index, kind, "always_fail")
    raise ValueError(f"unknown task kind {kind!r}")


def _call(timeout: float, index: int, kind: str, task: str, *inputs: Any, expected: Any = None,
          hard_timeout: float | None = None) -> Task:
    request = ExecuteRequest(package=NATIVE, task=task, inputs=inputs)
    return Task(index=index, kind=kind, request=request, hard_timeout=hard_timeout or timeout,
                expected=expected)


def make_plan(tasks: int, fault_rate: float, rng: random.Random, free: Sequence[str] = (FREE,)) -> list[str]:
    """The kind of each task: a fault (drawn evenly from :data:`FAULTS`) with probability
    ``fault_rate``, else the fault-free kinds in turn."""
    plan = []
    for index in range(tasks):
        plan.append(rng.choice(FAULTS) if rng.random() < fault_rate else free[index % len(free)])
    return plan


def check_settings(tasks: int, callers: int, slots: int, fault_rate: float, timeout: float) -> None:
    """:raises SoakError: a setting out of range, in one sentence."""
    for name, value in (("tasks", tasks), ("callers", callers), ("slots", slots)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SoakError(f"{name} must be a whole number of at least 1, got {value!r}")
    if isinstance(fault_rate, bool) or not isinstance(fault_rate, int | float) or not 0 <= fault_rate <= 1:
        raise SoakError(f"the fault rate must be a number from 0 to 1, got {fault_rate!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise SoakError(f"the timeout must be a positive number of seconds, got {timeout!r}")


@contextlib.contextmanager
def soak_package_dir(user_dir: Path | None, cache_dir: Path | None = None) -> Iterator[Path]:
    """A package directory with the bundled ``integration_test_tasks``: ``user_dir`` itself
    if it has one, else a temporary directory of links to ``user_dir``'s packages and to the
    bundled package built into the cache (as ``spider demo`` builds it).

    :raises SoakError: the cache cannot be used, or ``user_dir`` cannot be read.
    """
    if user_dir is not None and (user_dir / NATIVE).is_dir():
        yield user_dir
        return
    try:
        built = prepare_packages(cache_root(cache_dir))
    except (OSError, RuntimeError) as e:
        raise SoakError(f"cannot build the bundled {NATIVE} into the package cache: {os_reason(e)}") from None
    if user_dir is None:
        yield built
        return
    combined = Path(tempfile.mkdtemp(prefix="spider-soak-packages-"))
    try:
        try:
            for entry in user_dir.iterdir():
                (combined / entry.name).symlink_to(entry.resolve())
        except OSError as e:
            raise SoakError(f"cannot read package directory {user_dir}: {os_reason(e)}") from None
        (combined / NATIVE).symlink_to(built / NATIVE)
        yield combined
    finally:
        shutil.rmtree(combined, ignore_errors=True)
