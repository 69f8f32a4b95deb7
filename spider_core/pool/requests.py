"""Request preparation: validate an :class:`~spider_core.ExecuteRequest` and encode its context
and inputs (a :class:`Prepared` request) outside the pool's lock, so a bad request fails before
it waits for a slot."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import attrs

from spider_core.errors import BuildTaskContext, EncodeTaskContext, EncodeTaskInputs, InvalidRequest
from spider_core.models import ExecuteRequest
from spider_core.protocol import Frame, execute_primitive
from spider_core.tdl import (
    EMPTY_FRAME,
    InvalidPackageName,
    TaskContext,
    TaskId,
    WireFormatError,
    encode_values,
    is_utf8,
    validate_package_name,
)

_FIRST_TASK = TaskId.of(0)
_SECONDS = (int, float)
_MAX_VALID_NAMES = 4096
#: The longest soft timeout the executor's interval timer is armed for, in seconds (about 31
#: years): a longer one is the same in practice, and would not fit the timer or the wire.
MAX_SOFT_TIMEOUT = 1e9
_UNCHECKED = object()


def check_names(package: Any, task: Any) -> None:
    """:raises InvalidRequest: not a valid package name, or not a non-empty UTF-8 task name."""
    try:
        validate_package_name(package)
    except InvalidPackageName as e:
        raise InvalidRequest(str(e)) from None
    if not isinstance(task, str) or not task or not is_utf8(task):
        raise InvalidRequest(f"task name must be a non-empty UTF-8 string, got {task!r}")


# typed: 0, False and 0.0 are one key to an untyped cache, but only 0 is a valid id.
@functools.lru_cache(maxsize=1024, typed=True)
def _cached_context(job_id: int, task_id: TaskId | None, task_instance_id: int, resource_group_id: int) -> bytes:
    return TaskContext(
        job_id=job_id,
        task_id=_FIRST_TASK if task_id is None else task_id,
        task_instance_id=task_instance_id,
        resource_group_id=resource_group_id,
    ).encode()


def encode_context(
    job_id: int, task_id: TaskId | None, task_instance_id: int, resource_group_id: int, outputs: bytes | None
) -> bytes:
    """The msgpack TaskContext of a request (``task_id`` None is the first task; contexts
    without outputs are cached)."""
    if task_id is not None and not isinstance(task_id, TaskId):
        raise BuildTaskContext(
            f"task_id must be a TaskId (TaskId.of(i), TaskId.COMMIT or TaskId.CLEANUP), got {task_id!r:.40}"
        )
    try:
        if outputs is None and (task_id is None or not task_id.is_commit):
            try:  # (not contextlib.suppress, which costs more than the cached lookup)
                return _cached_context(job_id, task_id, task_instance_id, resource_group_id)
            except TypeError:  # an unhashable id: built below, for its message
                pass
        context = TaskContext(
            job_id=job_id,
            task_id=_FIRST_TASK if task_id is None else task_id,
            task_instance_id=task_instance_id,
            resource_group_id=resource_group_id,
            serialized_task_graph_outputs=outputs,
        )
    except (AttributeError, TypeError, ValueError) as e:
        raise BuildTaskContext(f"cannot build the task context: {e}") from None
    try:
        return context.encode()
    except Exception as e:
        raise EncodeTaskContext(f"cannot encode the task context: {e}") from None


def check_timeout(seconds: Any, name: str = "hard_timeout") -> None:
    """:raises InvalidRequest: not a positive, finite number of seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, _SECONDS) or not (seconds > 0 and math.isfinite(seconds)):
        raise InvalidRequest(f"{name} must be a positive number of seconds, got {seconds!r}")


@attrs.define(slots=True, eq=False)
class Prepared:
    """A request checked and encoded, waiting for an executor: everything of its Execute
    message but the sequence number, which it gets each time it is sent (:meth:`frame`)."""

    #: What the caller asked for (the ``spider_task_finished`` event reports it).
    request: ExecuteRequest
    package: str
    task: str
    #: The msgpack TaskContext.
    raw_ctx: bytes
    #: The wire-format inputs.
    raw_inputs: bytes
    soft_timeout_us: int
    #: Seconds the task may run once its executor starts it.
    hard_timeout: float
    #: When the caller asked (``time.perf_counter()``): its queue wait counts from here.
    queued: float = attrs.field(factory=time.perf_counter)

    @property
    def size(self) -> int:
        """Bytes of context and inputs (what a batch of requests is bounded by)."""
        return len(self.raw_ctx) + len(self.raw_inputs)

    def frame(self, encode: Callable[[list[Any]], Frame], seq: int) -> Frame:
        """The Execute frame numbered ``seq``, by the protocol's ``encode`` (``encode_request``).

        :raises FramingError: the protocol cannot encode it (over the size limit, say).
        """
        return encode(
            execute_primitive(seq, self.package, self.task, self.raw_ctx, self.raw_inputs, self.soft_timeout_us)
        )


class RequestEncoder:
    """Turns requests into :class:`Prepared` requests.

    It remembers the (package, task) pairs it has already checked, so a steady stream of
    requests pays for name validation once.
    """

    def __init__(self) -> None:
        self._valid_names: set[tuple[str, str]] = set()
        # The last timeouts checked, and the soft one in microseconds: ``map`` and a steady
        # caller pass the same objects again (numbers are immutable, so the same object is the
        # same value, and was checked).
        self._timeouts: tuple[Any, Any, int] = (_UNCHECKED, _UNCHECKED, 0)

    def prepare(self, request: ExecuteRequest, hard_timeout: float, soft_timeout: float | None = None) -> Prepared:
        """Validate and encode ``request``.

        :raises InvalidRequest: not an ExecuteRequest, a bad name or a bad timeout.
        :raises BuildTaskContext: ids that do not form a task context, or inputs for a commit task.
        :raises EncodeTaskContext: the context cannot be encoded.
        :raises EncodeTaskInputs: the inputs cannot be encoded.
        """
        if not isinstance(request, ExecuteRequest):
            raise InvalidRequest(f"request must be an ExecuteRequest, got {type(request).__name__}")
        last_hard, last_soft, soft_timeout_us = self._timeouts
        if hard_timeout is not last_hard or soft_timeout is not last_soft:
            check_timeout(hard_timeout)
            soft_timeout_us = 0
            if soft_timeout is not None:
                check_timeout(soft_timeout, "soft_timeout")
                soft_timeout_us = max(1, round(min(soft_timeout, MAX_SOFT_TIMEOUT) * 1e6))
            self._timeouts = (hard_timeout, soft_timeout, soft_timeout_us)
        package, task = request.package, request.task
        if not (type(package) is str and type(task) is str and (package, task) in self._valid_names):
            check_names(package, task)
            if len(self._valid_names) >= _MAX_VALID_NAMES:  # names come from callers: bound the set
                self._valid_names.clear()
            self._valid_names.add((package, task))
        task_id = request.task_id
        raw_ctx = encode_context(
            request.job_id, task_id, request.task_instance_id, request.resource_group_id, request.task_graph_outputs
        )
        if task_id is not None and task_id.is_commit:
            if request.inputs or request.raw_inputs not in (None, EMPTY_FRAME):
                raise BuildTaskContext("a commit task takes no inputs: it reads the task-graph outputs")
            raw_inputs = EMPTY_FRAME
        elif request.raw_inputs is not None:
            if not isinstance(request.raw_inputs, bytes):
                raise EncodeTaskInputs(f"raw_inputs must be bytes, got {type(request.raw_inputs).__name__}")
            raw_inputs = request.raw_inputs
        else:
            try:
                raw_inputs = encode_values(request.inputs)
            except WireFormatError as e:
                raise EncodeTaskInputs(f"cannot encode the inputs of {request.package}/{request.task}: {e}") from None
        return Prepared(request, package, task, raw_ctx, raw_inputs, soft_timeout_us, hard_timeout)
