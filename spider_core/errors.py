"""The exceptions of the user-facing API.

``InternalError``: the pool could not serve a call. Nothing else escapes ``execute`` (except
``asyncio.CancelledError``).

``OutcomeError``: what ``Outcome.unwrap()`` raises for an outcome other than ``Success``; it
carries the outcome. This module imports no other part of ``spider_core`` at load time
(:mod:`spider_core.models` imports it), so the messages go by the outcome's class name.
"""

from __future__ import annotations

import signal
from typing import Any


class InternalError(Exception):
    """The pool could not serve the call; the task did not run (or its result is unknown)."""


class NotRunning(InternalError):
    """The pool has no executor and may not spawn one now (closed, or backing off after
    repeated spawn failures)."""


class ExecutorCreationFailure(InternalError):
    """An executor process could not be started or never became ready; also raised by
    ``start()`` when ``PoolConfig.package_dir`` is not a directory."""


class InvalidRequest(InternalError):
    """The request itself is unusable (bad package name, bad task name, bad timeout)."""


class EncodeTaskContext(InternalError):
    """The task context could not be encoded."""


class EncodeTaskInputs(InternalError):
    """The task inputs could not be encoded (a value msgpack cannot represent)."""


class BuildTaskContext(InternalError):
    """The request's ids and task-graph outputs do not form a valid task context."""


# -- outcomes as exceptions -----------------------------------------------------------------


class OutcomeError(Exception):
    """An outcome other than ``Success``, raised by its ``unwrap()``; ``outcome`` is the outcome.

    ``args`` is ``(outcome,)``, so pickling and copying rebuild the same exception, outcome
    and all; the message is made from the outcome, in the words ``spider run`` uses.
    """

    def __init__(self, outcome: Any) -> None:
        super().__init__(outcome)
        self.outcome = outcome

    def __str__(self) -> str:
        try:
            return describe_outcome(self.outcome)
        except Exception:  # a message must never hide the exception it belongs to
            return repr(self.outcome)


class TaskFailed(OutcomeError):
    """The task, or its package, failed: ``outcome`` is an ``InTaskFailure`` and
    ``outcome.error`` the ``ExecutorError`` (``TaskError``, ``InvalidLibrary``, ...)."""


class TaskTimedOut(OutcomeError):
    """The task ran past its hard timeout: ``outcome`` is a ``Timeout``."""


class ExecutorCrashed(OutcomeError):
    """The executor died mid-task: ``outcome`` is an ``ExecutorCrash`` (its ``signal`` or
    ``exit_status`` says how)."""


def describe_outcome(outcome: Any) -> str:
    """One sentence for a non-success outcome: what ``OutcomeError``s say and what the CLI
    prints."""
    kind = type(outcome).__name__
    if kind == "InTaskFailure":
        return describe_error(outcome.error)
    if kind == "Timeout":
        return f"the task did not finish within its hard timeout of {outcome.hard_timeout:g}s"
    if kind == "ExecutorCrash":
        if outcome.reason:
            return f"the executor broke the protocol and was killed: {outcome.reason}"
        if outcome.signal:
            return f"the executor crashed (signal {_signal_name(outcome.signal)})"
        return f"the executor crashed (exit status {outcome.exit_status})"
    return repr(outcome)


def describe_error(error: Any) -> str:
    """One line for an ``ExecutorError``: a ``TaskError``'s own kind and message (its task name
    for ``TaskNotFound``), else the variant and its message."""
    from spider_core.tdl import TaskError, TdlErrorKind

    if isinstance(error, TaskError):
        tdl = error.error
        if tdl.kind is TdlErrorKind.TaskNotFound:
            return f"the package has no task named {tdl.message!r}"
        return f"{tdl.kind.name}: {tdl.message}"
    return f"{type(error).__name__}: {error}"


def _signal_name(number: int) -> str:
    """``SIGSEGV``; a number with no name (a real-time signal, say) as itself."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
