"""Outcomes as values or exceptions: ``unwrap()``, ``OutcomeError`` and its subclasses, and
``ExecutorCrash.signal`` as a ``signal.Signals``."""

from __future__ import annotations

import copy
import json
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import spider_core as sc
import spider_core.errors
import spider_core.tdl
from spider_core.commands.reporting import outcome_record, outcome_summary
from spider_core.tdl import (
    DuplicatePackage,
    IncompatibleVersion,
    InvalidLibrary,
    PackageInitError,
    TaskError,
    TdlError,
    TdlErrorKind,
    Version,
    encode_values,
)

SUCCESS = sc.Success(outputs=encode_values([55, "x"]), elapsed_us=12, executor_id=3)
BOOM = sc.InTaskFailure(error=TaskError(TdlError(TdlErrorKind.ExecutionError, "boom")), elapsed_us=1, executor_id=2)
NO_TASK = sc.InTaskFailure(error=TaskError(TdlError(TdlErrorKind.TaskNotFound, "cube")), elapsed_us=1)
INIT_FAILED = sc.InTaskFailure(error=PackageInitError(TdlError(TdlErrorKind.Custom, "no config")), elapsed_us=1)
NO_LIBRARY = sc.InTaskFailure(error=InvalidLibrary("cannot open libx.so"), elapsed_us=0, executor_id=1)
DUPLICATE = sc.InTaskFailure(error=DuplicatePackage("pkg"), elapsed_us=0)
INCOMPATIBLE = sc.InTaskFailure(error=IncompatibleVersion(Version(9, 0, 0), Version(1, 0, 0)), elapsed_us=0)
TIMEOUT = sc.Timeout(hard_timeout=0.5, executor_id=4)
SEGFAULT = sc.ExecutorCrash(exit_status=None, signal=signal.SIGSEGV, executor_id=5)
EXIT_3 = sc.ExecutorCrash(exit_status=3, signal=None, executor_id=6)
#: A signal number Python has no name for (on Linux a real-time signal such as 40 is one).
UNNAMED = next(n for n in range(1, 256) if n not in {s.value for s in signal.Signals})
UNNAMED_SIGNAL = sc.ExecutorCrash(exit_status=None, signal=UNNAMED)

#: Each non-success outcome, the exception its unwrap() raises, and that exception's message.
RAISED = [
    (BOOM, sc.TaskFailed, "ExecutionError: boom"),
    (NO_TASK, sc.TaskFailed, "the package has no task named 'cube'"),
    (INIT_FAILED, sc.TaskFailed, "PackageInitError: package init failed: Custom: no config"),
    (NO_LIBRARY, sc.TaskFailed, "InvalidLibrary: cannot open libx.so"),
    (DUPLICATE, sc.TaskFailed, "DuplicatePackage: pkg"),
    (TIMEOUT, sc.TaskTimedOut, "the task did not finish within its hard timeout of 0.5s"),
    (SEGFAULT, sc.ExecutorCrashed, "the executor crashed (signal SIGSEGV)"),
    (EXIT_3, sc.ExecutorCrashed, "the executor crashed (exit status 3)"),
    (UNNAMED_SIGNAL, sc.ExecutorCrashed, f"the executor crashed (signal {UNNAMED})"),
]
RAISED_IDS = ["task_error", "task_not_found", "init_failed", "invalid_library", "duplicate", "timeout",
              "segfault", "exit_3", "unnamed_signal"]

ROUND_TRIPS: dict[str, Callable[[Any], Any]] = {
    "pickle": lambda value: pickle.loads(pickle.dumps(value)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
}

# -- unwrap ---------------------------------------------------------------------------------


def test_success_unwrap_returns_the_values() -> None:
    assert SUCCESS.unwrap() == [55, "x"]
    assert sc.Success(outputs=encode_values([]), elapsed_us=0).unwrap() == []


@pytest.mark.parametrize(("outcome", "error_class", "message"), RAISED, ids=RAISED_IDS)
def test_unwrap_raises_the_outcomes_exception(outcome: Any, error_class: type, message: str) -> None:
    with pytest.raises(sc.OutcomeError) as caught:
        outcome.unwrap()
    error = caught.value
    assert type(error) is error_class
    assert error.outcome is outcome
    assert error.args == (outcome,)
    assert str(error) == message
    assert not isinstance(error, sc.InternalError)


@pytest.mark.parametrize(("outcome", "error_class", "message"), RAISED, ids=RAISED_IDS)
def test_the_message_is_what_spider_run_says(outcome: Any, error_class: type, message: str) -> None:
    assert str(error_class(outcome)) == outcome_summary(outcome)


def test_the_three_exceptions_are_outcome_errors_only() -> None:
    for cls in (sc.TaskFailed, sc.TaskTimedOut, sc.ExecutorCrashed):
        assert cls.__bases__ == (sc.OutcomeError,)
    assert sc.OutcomeError.__bases__ == (Exception,)


def test_an_outcome_error_takes_the_outcome_by_keyword_too() -> None:
    error = sc.TaskTimedOut(outcome=TIMEOUT)
    assert error.args == (TIMEOUT,) and error.outcome is TIMEOUT
    assert str(error) == "the task did not finish within its hard timeout of 0.5s"


def test_the_message_of_something_that_is_not_an_outcome_is_its_repr() -> None:
    assert str(sc.OutcomeError("neither")) == "'neither'"
    assert str(sc.TaskFailed(None)) == "None"


def test_raising_an_outcome_error_shows_the_message() -> None:
    with pytest.raises(sc.ExecutorCrashed, match=r"^the executor crashed \(signal SIGSEGV\)$"):
        SEGFAULT.unwrap()
    assert repr(sc.TaskTimedOut(TIMEOUT)) == "TaskTimedOut(Timeout(hard_timeout=0.5, executor_id=4))"


# -- pickling and copying -------------------------------------------------------------------


def _round_trips(cases: list[tuple[str, Any]]) -> list[Any]:
    """Every (case, round trip) pair."""
    return [pytest.param(value, how, id=f"{name}-{how}") for name, value in cases for how in ROUND_TRIPS]


EXCEPTIONS = [
    ("task_error", sc.TaskFailed(BOOM)),
    ("init_failed", sc.TaskFailed(INIT_FAILED)),
    ("invalid_library", sc.TaskFailed(NO_LIBRARY)),
    ("duplicate", sc.TaskFailed(DUPLICATE)),
    ("incompatible", sc.TaskFailed(INCOMPATIBLE)),
    ("timeout", sc.TaskTimedOut(TIMEOUT)),
    ("segfault", sc.ExecutorCrashed(SEGFAULT)),
    ("exit_3", sc.ExecutorCrashed(EXIT_3)),
    ("unnamed_signal", sc.ExecutorCrashed(UNNAMED_SIGNAL)),
    ("base", sc.OutcomeError(TIMEOUT)),
]


@pytest.mark.parametrize(("error", "how"), _round_trips(EXCEPTIONS))
def test_an_outcome_error_survives_a_round_trip(error: sc.OutcomeError, how: str) -> None:
    again = ROUND_TRIPS[how](error)
    assert type(again) is type(error)
    assert again.outcome == error.outcome and type(again.outcome) is type(error.outcome)
    assert again.args == (again.outcome,)
    assert str(again) == str(error)
    if isinstance(error.outcome, sc.InTaskFailure):  # tdl's own error must come back intact too
        assert str(again.outcome.error) == str(error.outcome.error)
        assert type(again.outcome.error) is type(error.outcome.error)


OUTCOMES = [
    ("success", SUCCESS),
    ("task_error", BOOM),
    ("invalid_library", NO_LIBRARY),
    ("duplicate", DUPLICATE),
    ("incompatible", INCOMPATIBLE),
    ("timeout", TIMEOUT),
    ("segfault", SEGFAULT),
    ("exit_3", EXIT_3),
    ("unnamed_signal", UNNAMED_SIGNAL),
]


@pytest.mark.parametrize(("outcome", "how"), _round_trips(OUTCOMES))
def test_an_outcome_survives_a_round_trip(outcome: Any, how: str) -> None:
    again = ROUND_TRIPS[how](outcome)
    assert type(again) is type(outcome)
    assert again == outcome
    if isinstance(outcome, sc.ExecutorCrash):
        assert type(again.signal) is type(outcome.signal)
    if isinstance(outcome, sc.InTaskFailure):
        assert str(again.error) == str(outcome.error)


def _exception_classes() -> set[type[BaseException]]:
    """Every exception class that spider-core and its default plugins define."""
    import importlib
    import pkgutil

    import spider_core

    found = set()
    names = [m.name for m in pkgutil.walk_packages(spider_core.__path__, "spider_core.")]
    for name in [*names, "spider_libso", "spider_msgpack", "spider_supervisor", "spider_pytasks", "spider_rustexec"]:
        if name.endswith("__main__") or name == "spider_core.pytest_plugin":
            continue
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == name:
                if not value.__name__.startswith("_"):  # private bases are never raised as such
                    found.add(value)
    return found


def _samples() -> dict[type[BaseException], BaseException]:
    from spider_core.bench import BenchError
    from spider_core.build import BuildError, PackageSourceError
    from spider_core.commands.batch import BatchError
    from spider_core.commands.common import CliError
    from spider_core.commands.demo import CacheError
    from spider_core.commands.soak import SoakError
    from spider_core.dask import WorkerPoolError
    from spider_core.dask.cluster import ClusterError, ClusterUnavailable
    from spider_core.plugin import FramingError, PluginError
    from spider_core.protocol import ProtocolError
    from spider_core.sdk.conform import Mismatch
    from spider_core.tdl import EncodingError, InvalidPackageName, TdlErrorKind, Version, WireFormatError

    samples: list[BaseException] = [
        sc.InternalError("x"), sc.NotRunning("the pool is closed"), sc.ExecutorCreationFailure("no"),
        sc.InvalidRequest("bad"), sc.EncodeTaskContext("ctx"), sc.EncodeTaskInputs("in"), sc.BuildTaskContext("b"),
        sc.SoftTimeout(0.5), sc.OutcomeError(TIMEOUT), sc.TaskFailed(BOOM), sc.TaskTimedOut(TIMEOUT),
        sc.ExecutorCrashed(SEGFAULT), TdlError(TdlErrorKind.Custom, "c"), sc.ExecutorError("e"),
        sc.InvalidLibrary("lib"), sc.IncompatibleVersion(Version(0, 2, 0), Version(0, 1, 0)),
        sc.DuplicatePackage("dup"), sc.InvalidUtf8("utf"), sc.TaskError(TdlError(TdlErrorKind.ExecutionError, "t")),
        sc.PackageInitError(TdlError(TdlErrorKind.Custom, "i")), sc.ErrorPayloadDeserializationFailure("p"),
        EncodingError("enc"), WireFormatError("wire"), InvalidPackageName("name"), ProtocolError("proto"),
        FramingError("frame"), PluginError("plugin"), BuildError("build"), PackageSourceError("src"),
        CacheError("cache"), BenchError("bench"), BatchError("batch", 5), CliError("cli", 4), Mismatch("m"),
        WorkerPoolError("package_dir /x does not exist on Dask worker tcp://127.0.0.1:1"),
        ClusterError("KilledWorker: attempted to run task 'x' on 4 different workers"),
        SoakError("the fault rate must be a number from 0 to 1, got 2"),
        ClusterUnavailable("cannot start a local Dask cluster of 2 worker processes: OSError: no", internal=True),
    ]
    return {type(sample): sample for sample in samples}


def test_every_exception_spider_core_defines_has_a_round_trip_sample() -> None:
    missing = _exception_classes() - set(_samples())
    assert not missing, f"add a sample of {sorted(c.__qualname__ for c in missing)} to _samples()"


@pytest.mark.parametrize("how", ROUND_TRIPS)
def test_every_exception_spider_core_defines_survives_pickle_and_copy(how: str) -> None:
    for cls, error in _samples().items():
        again = ROUND_TRIPS[how](error)
        assert type(again) is cls and str(again) == str(error) and again.args == error.args, cls
        assert vars(again) == vars(error), cls  # every attribute (exit codes, wrapped errors) too


# -- ExecutorCrash.signal -------------------------------------------------------------------


def test_a_signal_number_becomes_a_signals_member() -> None:
    crash = sc.ExecutorCrash(exit_status=None, signal=11)
    assert crash.signal is signal.SIGSEGV and type(crash.signal) is signal.Signals
    assert crash.signal.name == "SIGSEGV"
    assert crash == sc.ExecutorCrash(exit_status=None, signal=signal.SIGSEGV)


def test_a_signals_member_stays_itself() -> None:
    assert sc.ExecutorCrash(exit_status=None, signal=signal.SIGABRT).signal is signal.SIGABRT


def test_no_signal_stays_none() -> None:
    assert EXIT_3.signal is None


def test_a_number_with_no_signal_name_stays_an_int() -> None:
    assert type(UNNAMED_SIGNAL.signal) is int and UNNAMED_SIGNAL.signal == UNNAMED
    assert sc.ExecutorCrash(exit_status=None, signal=0).signal == 0


def test_evolve_converts_the_signal_too() -> None:
    assert attrs.evolve(EXIT_3, exit_status=None, signal=6).signal is signal.SIGABRT


def test_reporting_still_names_the_signal() -> None:
    record = outcome_record(sc.ExecutorCrash(exit_status=None, signal=6, executor_id=1))
    assert json.loads(json.dumps(record)) == {"outcome": "crash", "exit_status": None, "signal": "SIGABRT",
                                              "executor_id": 1, "reason": None}
    assert outcome_summary(sc.ExecutorCrash(exit_status=None, signal=6)) == "the executor crashed (signal SIGABRT)"


# -- exports --------------------------------------------------------------------------------

VARIANTS = ["InvalidLibrary", "IncompatibleVersion", "DuplicatePackage", "InvalidUtf8", "TaskError",
            "PackageInitError", "ErrorPayloadDeserializationFailure"]


@pytest.mark.parametrize("name", VARIANTS)
def test_spider_core_exports_each_executor_error_variant(name: str) -> None:
    assert getattr(sc, name) is getattr(spider_core.tdl, name)
    assert issubclass(getattr(sc, name), sc.ExecutorError)
    assert name in sc.__all__


def test_the_variants_exported_are_all_there_are() -> None:
    assert set(VARIANTS) == set(sc.ExecutorError.variants)


@pytest.mark.parametrize("name", ["OutcomeError", "TaskFailed", "TaskTimedOut", "ExecutorCrashed"])
def test_spider_core_exports_the_outcome_errors(name: str) -> None:
    assert getattr(sc, name) is getattr(spider_core.errors, name)
    assert name in sc.__all__


def test_the_errors_module_imports_nothing_else_of_spider_core() -> None:
    code = "import sys, spider_core.errors; print(sorted(m for m in sys.modules if m.startswith('spider_core')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['spider_core', 'spider_core._lazy', 'spider_core.errors']"


# -- with the real pool ---------------------------------------------------------------------


def test_unwrap_with_the_real_pool(package_dir: Path) -> None:
    config = sc.PoolConfig(package_dir=package_dir, plugin_autoload=False)
    with sc.SyncProcessPool(config) as pool:
        def run(task: str, *inputs: Any) -> Any:
            return pool.execute(sc.ExecuteRequest(package="integration_test_tasks", task=task, inputs=inputs),
                                hard_timeout=5)

        assert run("fibonacci", 10).unwrap() == [55]
        crash = run("always_panic")
    assert isinstance(crash, sc.ExecutorCrash)
    assert crash.signal is signal.SIGABRT and crash.exit_status is None
    with pytest.raises(sc.ExecutorCrashed, match=r"^the executor crashed \(signal SIGABRT\)$") as caught:
        crash.unwrap()
    assert caught.value.outcome is crash
