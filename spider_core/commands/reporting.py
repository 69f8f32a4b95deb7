"""Outcomes as people and programs read them: exit statuses, one-line summaries, JSON records."""

from __future__ import annotations

import base64
import json
import math
import signal
from typing import Any

from spider_core.errors import describe_error, describe_outcome
from spider_core.models import ExecutorCrash, InTaskFailure, Success, Timeout
from spider_core.tdl import (
    DuplicatePackage,
    IncompatibleVersion,
    InvalidLibrary,
    InvalidUtf8,
    TaskError,
    TdlErrorKind,
    is_utf8,
)

EXIT_OK = 0
EXIT_TASK_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_CRASH = 4
EXIT_INTERNAL = 5

#: The errors of an ``InTaskFailure`` that say the package is missing or cannot be loaded: the
#: request named something unusable, so ``spider run`` exits with ``EXIT_USAGE`` for them, as
#: for a task the package does not have. (``PackageInitError`` is not one: the package loaded
#: and its own init code failed, a task failure.)
PACKAGE_ERRORS = (InvalidLibrary, IncompatibleVersion, DuplicatePackage, InvalidUtf8)


def json_default(value: Any) -> Any:
    """Task values that JSON cannot hold: bytes become ``{"$bytes": "<base64>"}``."""
    if isinstance(value, bytes | bytearray):
        return {"$bytes": base64.b64encode(value).decode()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _json_safe(value: Any) -> Any:
    """``value`` with what strict JSON cannot hold spelled out: non-finite floats become
    ``{"$float": "nan"}`` (or ``"inf"``, ``"-inf"``), map keys become strings (bytes keys as
    base64)."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "nan" if value != value else ("inf" if value > 0 else "-inf")}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {_json_key(k): _json_safe(v) for k, v in value.items()}
    return value


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bytes | bytearray):
        return base64.b64encode(key).decode()
    return json.dumps(_json_safe(key), default=json_default)


def to_json(value: Any) -> str:
    """Strict JSON (no NaN), task values included (see ``json_default`` and ``_json_safe``).
    Text that UTF-8 cannot hold (a lone surrogate, which JSON input may carry) is escaped."""
    try:
        text = json.dumps(value, default=json_default, ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError):
        value = _json_safe(value)
        text = json.dumps(value, default=json_default, ensure_ascii=False, allow_nan=False)
    if not is_utf8(text):
        text = json.dumps(value, default=json_default, ensure_ascii=True, allow_nan=False)
    return text


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a float")
    return value


def parse_json(text: str) -> Any:
    """Parse strict JSON (no NaN or Infinity, not even as ``1e999``); ``ValueError`` with one
    clear reason."""
    try:
        return json.loads(text, parse_constant=_no_constants, parse_float=_finite_float)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON: {e.msg} (at character {e.pos})") from None
    except RecursionError:
        raise ValueError("nested too deeply") from None


def signal_name(number: int | None) -> str | None:
    if number is None:
        return None
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def outcome_record(outcome: Any) -> dict[str, Any]:
    """A JSON-ready record of an outcome (what ``--json`` and ``batch`` write)."""
    if isinstance(outcome, Success):
        return {
            "outcome": "success",
            "values": outcome.values,
            "elapsed_us": outcome.elapsed_us,
            "executor_id": outcome.executor_id,
        }
    if isinstance(outcome, InTaskFailure):
        return {
            "outcome": "task_failure",
            "error": outcome.error.to_primitive(),
            "message": describe_error(outcome.error),
            "elapsed_us": outcome.elapsed_us,
            "executor_id": outcome.executor_id,
        }
    if isinstance(outcome, Timeout):
        return {"outcome": "timeout", "hard_timeout": outcome.hard_timeout, "executor_id": outcome.executor_id}
    if isinstance(outcome, ExecutorCrash):
        return {
            "outcome": "crash",
            "exit_status": outcome.exit_status,
            "signal": signal_name(outcome.signal),
            "executor_id": outcome.executor_id,
            "reason": outcome.reason,
        }
    raise TypeError(f"not an outcome: {outcome!r}")


def outcome_exit_code(outcome: Any) -> int:
    from spider_core.models import ExecutorCrash, InTaskFailure, Success, Timeout

    if isinstance(outcome, Success):
        return EXIT_OK
    if isinstance(outcome, InTaskFailure):
        error = outcome.error
        if isinstance(error, PACKAGE_ERRORS):  # no such package, or one that cannot be loaded
            return EXIT_USAGE
        if isinstance(error, TaskError) and error.error.kind is TdlErrorKind.TaskNotFound:
            return EXIT_USAGE
        return EXIT_TASK_FAILURE
    if isinstance(outcome, Timeout):
        return EXIT_TIMEOUT
    if isinstance(outcome, ExecutorCrash):
        return EXIT_CRASH
    return EXIT_INTERNAL


def outcome_summary(outcome: Any) -> str:
    """A short human description of a non-success outcome (the words ``OutcomeError`` uses)."""
    return describe_outcome(outcome)


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
