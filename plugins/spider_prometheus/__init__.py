"""Prometheus metrics of the pool: the default plugin behind ``PoolConfig.metrics``.

Registered only when ``prometheus_client`` is installed (the ``metrics`` extra), and active
only for the pools started with ``PoolConfig.metrics=True`` (``--metrics-port`` on ``spider
batch`` and ``spider soak``): for the others ``spider_pool_started`` answers False, so their
calls never reach this plugin. ``prometheus_client`` is imported by the first pool observed,
never by an executor. The metrics go to ``prometheus_client``'s default registry, so a program
that already serves ``/metrics`` serves these too; every one has a ``pool`` label (``em_id``):

- ``spider_tasks_total{pool,package,task,outcome}``: calls finished, by outcome (``success``,
  ``failure``, ``timeout``, ``crash``; ``cancelled`` with empty ``package`` and ``task``: a
  call cancelled while it ran reaches the hooks only as its executor's exit);
- ``spider_task_duration_seconds{pool,package,task}``: histogram of the executor's
  ``elapsed_us`` (for a timeout or a crash, which have none: the time the call held its slot);
- ``spider_task_queue_seconds{pool}``: histogram of the time from the call to its slot;
- ``spider_executor_respawns_total{pool,reason}``, ``spider_executors{pool,state}`` and
  ``spider_executor_rss_bytes{pool}`` (summed over the pool's executors, standbys included):
  read from ``pool.stats()`` at each scrape.

Package and task names label the series; they come from the packages a pool runs, never
from a request's inputs, so the number of series stays bounded.

A task finished costs the caller one append to a queue: the counter and the histograms take
the queued tasks at the next scrape (or when the queue is long), so the metrics cost the hot
path next to nothing and are exact at every scrape.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from spider_core.plugin import hookimpl

if TYPE_CHECKING:
    from spider_core.plugin import ExecuteRequest, Outcome, PoolView

#: The pools observed now (a closed or collected pool leaves).
_pools: weakref.WeakSet[PoolView] = weakref.WeakSet()
#: Tasks finished and not yet taken into the metrics: (pool, package, task, outcome class,
#: duration, queue wait).
_finished: deque[tuple[str, str, str, type[Outcome], float, float]] = deque()
#: Tasks queued at most before a caller takes them into the metrics itself.
BACKLOG = 4096
_lock = threading.Lock()
_collector: _Collector | None = None


class _Collector:
    """Every metric of every pool observed, registered once per process: the queued tasks go
    into the counter and histograms at each scrape; the rest is read from ``pool.stats()``."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        labels = ["pool", "package", "task"]
        self.tasks = Counter("spider_tasks", "Calls finished, by outcome.", [*labels, "outcome"], registry=None)
        self.duration = Histogram("spider_task_duration_seconds", "Time the executor spent on a task.", labels,
                                  registry=None)
        self.queue = Histogram("spider_task_queue_seconds", "Time from a call to its slot.", ["pool"], registry=None)

    def take(self) -> None:
        """Count the tasks queued so far."""
        from spider_core.plugin import outcome_name  # (not at import: the executors import this module)

        with _lock:
            take = _finished.popleft
            for _ in range(len(_finished)):
                pool, package, task, kind, duration, queue = take()
                self.tasks.labels(pool, package, task, outcome_name(kind)).inc()
                self.duration.labels(pool, package, task).observe(duration)
                self.queue.labels(pool).observe(queue)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        self.take()
        yield from self.tasks.collect()
        yield from self.duration.collect()
        yield from self.queue.collect()
        respawns = CounterMetricFamily(
            "spider_executor_respawns", "Executors replaced, by reason.", labels=["pool", "reason"]
        )
        states = GaugeMetricFamily("spider_executors", "Executors, by state.", labels=["pool", "state"])
        rss = GaugeMetricFamily(
            "spider_executor_rss_bytes", "Resident memory of the pool's executors, summed.", labels=["pool"]
        )
        totals: dict[tuple[str, str, str], float] = {}  # pools that share an em_id add up
        for pool in list(_pools):
            stats = pool.stats()
            name = pool.config.em_id
            for reason, count in stats.respawns.items():
                totals[("respawns", name, reason)] = totals.get(("respawns", name, reason), 0) + count
            for state in ("idle", "busy", "starting", "standby"):
                totals.setdefault(("states", name, state), 0)
            totals.setdefault(("rss", name, ""), 0)
            for executor in stats.executors:
                totals[("states", name, executor.state)] += 1
                totals[("rss", name, "")] += executor.rss_bytes
        for (family, name, key), value in sorted(totals.items()):
            if family == "respawns":
                respawns.add_metric([name, key], value)
            elif family == "states":
                states.add_metric([name, key], value)
            else:
                rss.add_metric([name], value)
        yield from (respawns, states, rss)

    def describe(self) -> list[Any]:
        return []  # collected at each scrape: no fixed samples to check at registration


@hookimpl
def spider_pool_started(pool: PoolView) -> bool:
    """Observe ``pool`` if its config asks for metrics."""
    global _collector
    if not pool.config.metrics:
        return False
    with _lock:
        if _collector is None:
            from prometheus_client import REGISTRY

            _collector = _Collector()
            REGISTRY.register(_collector)
    _pools.add(pool)
    return True


@hookimpl
def spider_pool_closed(pool: PoolView) -> None:
    _pools.discard(pool)


@hookimpl
def spider_executor_exited(reason: str, pool: PoolView) -> None:
    if reason == "cancelled" and _collector is not None and pool in _pools:
        _collector.tasks.labels(pool.config.em_id, "", "", "cancelled").inc()


@hookimpl
def spider_task_finished(
    request: ExecuteRequest, outcome: Outcome, queue_wait: float, execution_time: float, pool: PoolView
) -> None:
    elapsed_us = getattr(outcome, "elapsed_us", None)
    duration = execution_time if elapsed_us is None else elapsed_us / 1e6
    _finished.append((pool.config.em_id, request.package, request.task, type(outcome), duration, queue_wait))
    if len(_finished) > BACKLOG:
        _collector.take()  # type: ignore[union-attr]  # made before the pool's first call
