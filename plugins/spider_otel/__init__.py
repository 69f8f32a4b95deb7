"""spider_otel: OpenTelemetry spans of the pool's tasks, a default plugin. It is registered only
when ``opentelemetry-api`` is installed (the ``otel`` extra), observes the pools started while
a tracer provider is configured, and turns each task finished into one ``spider.task`` span,
a child of the caller's current span, made off the caller's path.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from spider_core.plugin import hookimpl

if TYPE_CHECKING:
    from spider_core.plugin import ExecuteRequest, Outcome, PoolView

#: Seconds between two rounds of span making.
INTERVAL = 0.05
#: Each observed pool's tracer, and its executors replaced whose task has not finished yet
#: (executor id -> reason, when in ns).
_pools: weakref.WeakKeyDictionary[PoolView, tuple[Any, dict[int, tuple[str, int]]]] = weakref.WeakKeyDictionary()
#: Spans to make: (tracer, context, request, outcome class, executor id, elapsed_us or None,
#: queue wait, start, end, respawn or None).
_spans: deque[
    tuple[Any, Any, ExecuteRequest, type[Outcome], int, int | None, float, int, int, tuple[str, int] | None]
] = deque()
_lock = threading.Lock()
_worker: threading.Thread | None = None
#: The exit reasons whose task finishes after them (a cancelled call reports no outcome).
_REPLACED_BY_A_TASK = frozenset({"timeout", "crash", "recycle", "memory"})
_current_context: Any = None  # opentelemetry.context.get_current, once imported


def _make_spans() -> None:
    """Make the spans queued so far, in order."""
    from opentelemetry.trace import Status, StatusCode

    from spider_core.plugin import outcome_name  # (not at import: the executors import this module)

    with _lock:
        take = _spans.popleft
        for _ in range(len(_spans)):
            tracer, context, request, kind, executor_id, elapsed_us, queue_wait, start, end, respawn = take()
            name = outcome_name(kind)
            attributes: dict[str, Any] = {
                "spider.package": request.package,
                "spider.task": request.task,
                "spider.outcome": name,
                "spider.executor_id": executor_id,
                "spider.queue_us": round(queue_wait * 1e6),
            }
            if elapsed_us is not None:
                attributes["spider.elapsed_us"] = elapsed_us
            span = tracer.start_span("spider.task", context=context, start_time=start, attributes=attributes)
            if respawn is not None:
                span.add_event("spider.respawn", {"spider.reason": respawn[0]}, timestamp=respawn[1])
            if name != "success":
                span.set_status(Status(StatusCode.ERROR, name))
            span.end(end_time=end)


def _work() -> None:
    while True:
        time.sleep(INTERVAL)
        _make_spans()


@hookimpl
def spider_pool_started(pool: PoolView) -> bool:
    """Observe ``pool`` if a tracer provider is configured (``trace.set_tracer_provider``, or
    the SDK's auto-instrumentation); else answer False, so its calls never reach this plugin.
    ``opentelemetry`` is imported here, by the first pool started, never by an executor."""
    global _current_context, _worker
    from opentelemetry import context, trace

    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return False
    with _lock:
        _pools[pool] = (provider.get_tracer("spider_core"), {})
        _current_context = context.get_current
        if _worker is None or not _worker.is_alive():  # (none yet, or a forked child's copy)
            _worker = threading.Thread(target=_work, name="spider-otel", daemon=True)
            _worker.start()
            atexit.register(_make_spans)
    return True


@hookimpl
def spider_pool_closed(pool: PoolView) -> None:
    _make_spans()
    with _lock:
        _pools.pop(pool, None)


@hookimpl
def spider_executor_exited(executor_id: int, reason: str, pool: PoolView) -> None:
    observed = _pools.get(pool)
    if observed is not None and reason in _REPLACED_BY_A_TASK:
        observed[1][executor_id] = (reason, time.time_ns())


@hookimpl
def spider_task_finished(
    request: ExecuteRequest,
    outcome: Outcome,
    executor_id: int,
    queue_wait: float,
    execution_time: float,
    pool: PoolView,
) -> None:
    """One span, ``spider.task``, made later with the call's start and end times, as a child
    of the span current in the caller's context (see the spec for which context that is), so
    that a Dask task's or a web request's trace continues into the pool. Its attributes:
    ``spider.package``, ``spider.task``, ``spider.outcome``, ``spider.executor_id``,
    ``spider.elapsed_us`` (the executor's own time, when it reported one), ``spider.queue_us``
    (from the call to its slot). Its status is ERROR for every outcome but a success. When the
    task's executor was replaced because of it (a timeout, a crash, a recycle), the span has
    an event ``spider.respawn`` with ``spider.reason``.

    Making an SDK span costs tens of microseconds, as much as a no-op task's round trip, so
    the caller only takes what the span needs (its context, the times, the attributes) and
    queues it; a thread of this plugin makes the spans every :data:`INTERVAL` seconds, and
    ``spider_pool_closed`` (or the interpreter's exit, before the SDK's own shutdown) makes the
    rest at once.
    """
    end = time.time_ns()
    tracer, replaced = _pools[pool]
    _spans.append((
        tracer, _current_context(), request, type(outcome), executor_id, getattr(outcome, "elapsed_us", None),
        queue_wait, end - round((queue_wait + execution_time) * 1e9), end,
        replaced.pop(executor_id, None) if replaced else None,
    ))
