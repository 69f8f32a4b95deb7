"""Helpers for testing task packages (the pytest plugin re-exports them).

``assert_outcome(outcome, "Success", values=[55])`` fails with a readable message such as
``expected Success with values [55], got InTaskFailure: TaskError(ExecutionError: boom)``.
"""

from __future__ import annotations

import signal as _signal
from typing import Any

__all__ = ["assert_outcome", "describe_error", "describe_outcome"]

_UNSET: Any = object()
_KINDS = ("Success", "InTaskFailure", "Timeout", "ExecutorCrash")


def describe_error(error: BaseException) -> str:
    """``TaskError(ExecutionError: boom)``, ``InvalidLibrary(cannot load ...)``."""
    from spider_core.tdl import TdlError

    inner = getattr(error, "error", None)
    if isinstance(inner, TdlError):
        return f"{type(error).__name__}({inner.kind.name}: {inner.message})"
    if isinstance(error, TdlError):
        return f"{error.kind.name}: {error.message}"
    message = getattr(error, "message", None) or str(error)
    return f"{type(error).__name__}({message})"


def describe_outcome(outcome: Any) -> str:
    """One line saying what an outcome is: ``Success with values [55]``."""
    name = type(outcome).__name__
    if name == "Success":
        try:
            return f"Success with values {outcome.values!r}"
        except Exception as e:
            return f"Success with undecodable outputs {outcome.outputs!r} ({e})"
    if name == "InTaskFailure":
        return f"InTaskFailure: {describe_error(outcome.error)}"
    if name == "Timeout":
        return f"Timeout after {outcome.hard_timeout} s"
    if name == "ExecutorCrash":
        if outcome.signal is not None:
            try:
                signame = _signal.Signals(outcome.signal).name
            except ValueError:
                signame = str(outcome.signal)
            return f"ExecutorCrash (signal {signame})"
        return f"ExecutorCrash (exit status {outcome.exit_status})"
    return repr(outcome)


def _error_matches(actual: BaseException, expected: Any) -> bool:
    from spider_core.tdl import ExecutorError, TdlError, TdlErrorKind

    inner = getattr(actual, "error", None)
    if isinstance(expected, ExecutorError):
        return actual == expected
    if isinstance(expected, TdlError):
        return inner == expected
    if isinstance(expected, TdlErrorKind):
        return isinstance(inner, TdlError) and inner.kind is expected
    if isinstance(expected, type):
        return isinstance(actual, expected)
    if isinstance(expected, str):
        return expected in str(actual)
    raise TypeError(
        f"error= takes an ExecutorError, a TdlError, a TdlErrorKind, an exception class or a "
        f"substring of the message, not {expected!r}"
    )


def _expected_error_text(expected: Any) -> str:
    from spider_core.tdl import ExecutorError, TdlError, TdlErrorKind

    if isinstance(expected, ExecutorError):
        return describe_error(expected)
    if isinstance(expected, TdlError):
        return f"error {describe_error(expected)}"
    if isinstance(expected, TdlErrorKind):
        return f"error kind {expected.name}"
    if isinstance(expected, type):
        return f"error type {expected.__name__}"
    return f"an error containing {expected!r}"


def assert_outcome(outcome: Any, kind: str | type, values: Any = _UNSET, *, error: Any = _UNSET, **fields: Any) -> Any:
    """Assert an outcome's kind, and optionally its values, error or fields; return it.

    :param outcome: What ``ProcessPool.execute`` returned.
    :param kind: ``"Success"``, ``"InTaskFailure"``, ``"Timeout"``, ``"ExecutorCrash"`` or the
        class itself.
    :param values: For a ``Success``: the expected decoded outputs (a list).
    :param error: For an ``InTaskFailure``: an ``ExecutorError`` (compared for equality), a
        ``TdlError`` (the wrapped task or init error), a ``TdlErrorKind``, an exception class,
        or a substring of the error message.
    :param fields: Attributes to compare, e.g. ``exit_status=3`` or ``signal=signal.SIGABRT``.
    :raises AssertionError: ``expected Success with values [55], got InTaskFailure: ...``.
    """
    __tracebackhide__ = True
    name = kind if isinstance(kind, str) else kind.__name__
    if name not in _KINDS:
        raise TypeError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    if values is not _UNSET and name != "Success":
        raise TypeError("values= only applies to a Success")
    if error is not _UNSET and name != "InTaskFailure":
        raise TypeError("error= only applies to an InTaskFailure")

    wanted = name
    if values is not _UNSET:
        wanted += f" with values {list(values)!r}"
    if error is not _UNSET:
        wanted += f" with {_expected_error_text(error)}"
    if fields:
        wanted += f" with {', '.join(f'{k}={v!r}' for k, v in fields.items())}"

    ok = type(outcome).__name__ == name
    got = describe_outcome(outcome)
    if ok and values is not _UNSET:
        try:
            ok = outcome.values == list(values)
        except Exception:
            ok = False
    if ok and error is not _UNSET:
        ok = _error_matches(outcome.error, error)
    if ok:
        missing = object()
        actual = {k: getattr(outcome, k, missing) for k in fields}
        if any(actual[k] != v for k, v in fields.items()):
            ok = False
            got += f" with {', '.join(f'{k}={actual[k]!r}' for k in fields)}"
    if not ok:
        raise AssertionError(f"expected {wanted}, got {got}")
    return outcome
