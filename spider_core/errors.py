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
