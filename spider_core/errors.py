"""``InternalError``: the pool could not serve a call. Nothing else escapes ``execute``
(except ``asyncio.CancelledError``)."""

from __future__ import annotations


class InternalError(Exception):
    """The pool could not serve the call; the task did not run (or its result is unknown)."""


class NotRunning(InternalError):
    """The pool has no executor and may not spawn one now (closed, or backing off after
    repeated spawn failures)."""


class ExecutorCreationFailure(InternalError):
    """An executor process could not be started or never became ready."""


class InvalidRequest(InternalError):
    """The request itself is unusable (bad package name, bad task name, bad timeout)."""


class EncodeTaskContext(InternalError):
    """The task context could not be encoded."""


class EncodeTaskInputs(InternalError):
    """The task inputs could not be encoded (a value msgpack cannot represent)."""


class BuildTaskContext(InternalError):
    """The request's ids and task-graph outputs do not form a valid task context."""


class SoftTimeout(Exception):
    """Raised inside a Python task that runs past the call's ``soft_timeout``.

    The task may catch it to clean up and return; if it escapes, the call's outcome is an
    ``InTaskFailure`` saying so. The hard timeout still kills the executor. Native tasks are
    never interrupted: a soft timeout does nothing to them.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.seconds = seconds

    def __str__(self) -> str:
        return f"the task ran past its soft timeout of {self.seconds:g}s"
