"""OpenTelemetry spans of the pool's tasks: a default plugin.

Registered only when ``opentelemetry-api`` is installed (the ``otel`` extra), and active for
the pools started while a tracer provider is configured (``trace.set_tracer_provider``, or the
SDK's auto-instrumentation): for the others ``spider_pool_started`` answers False, so their
calls never reach this plugin. ``opentelemetry`` is imported by the first pool started, never
by an executor.

Each task finished becomes one span, ``spider.task``, made when its outcome is known with the
call's start and end times, as a child of the span current in the caller's context (see
``spider_task_finished`` for which context that is), so that a Dask task's or a web request's
trace continues into the pool. Its attributes: ``spider.package``, ``spider.task``,
``spider.outcome``, ``spider.executor_id``, ``spider.elapsed_us`` (the executor's own time,
when it reported one), ``spider.queue_us`` (from the call to its slot). Its status is ERROR
for every outcome but a success. When the task's executor was replaced because of it (a
timeout, a crash, a recycle), the span has an event ``spider.respawn`` with ``spider.reason``.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from spider_core.plugin import hookimpl, outcome_name

if TYPE_CHECKING:
    from spider_core.plugin import ExecuteRequest, Outcome, PoolView

#: Each observed pool's tracer.
_tracers: weakref.WeakKeyDictionary[PoolView, Any] = weakref.WeakKeyDictionary()
#: Executors replaced and not yet reported on a span: pool -> executor id -> (reason, when in ns).
_exits: weakref.WeakKeyDictionary[PoolView, dict[int, tuple[str, int]]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()
#: The exit reasons whose task finishes after them (a cancelled call reports no outcome).
_REPLACED_BY_A_TASK = frozenset({"timeout", "crash", "recycle", "memory"})


@hookimpl
def spider_pool_started(pool: PoolView) -> bool:
    """Observe ``pool`` if a tracer provider is configured."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    with _lock:
        _tracers[pool] = provider.get_tracer("spider_core")
        _exits[pool] = {}
    return True


@hookimpl
def spider_pool_closed(pool: PoolView) -> None:
    with _lock:
        _tracers.pop(pool, None)
        _exits.pop(pool, None)


@hookimpl
def spider_executor_exited(executor_id: int, reason: str, pool: PoolView) -> None:
    exits = _exits.get(pool)
    if exits is not None and reason in _REPLACED_BY_A_TASK:
        with _lock:
            exits[executor_id] = (reason, time.time_ns())


@hookimpl
def spider_task_finished(
    request: ExecuteRequest,
    outcome: Outcome,
    executor_id: int,
    queue_wait: float,
    execution_time: float,
    pool: PoolView,
) -> None:
    from opentelemetry.trace import Status, StatusCode

    tracer = _tracers[pool]
    end = time.time_ns()
    name = outcome_name(outcome)
    attributes: dict[str, Any] = {
        "spider.package": request.package,
        "spider.task": request.task,
        "spider.outcome": name,
        "spider.executor_id": executor_id,
        "spider.queue_us": round(queue_wait * 1e6),
    }
    elapsed_us = getattr(outcome, "elapsed_us", None)
    if elapsed_us is not None:
        attributes["spider.elapsed_us"] = elapsed_us
    span = tracer.start_span(
        "spider.task", start_time=end - round((queue_wait + execution_time) * 1e9), attributes=attributes
    )
    with _lock:
        exit = _exits[pool].pop(executor_id, None)
    if exit is not None:
        span.add_event("spider.respawn", {"spider.reason": exit[0]}, timestamp=exit[1])
    if name != "success":
        span.set_status(Status(StatusCode.ERROR, name))
    span.end(end_time=end)
