"""spider_prometheus: Prometheus metrics of the pool, the default plugin behind
``PoolConfig.metrics``. It is registered only when ``prometheus_client`` is installed (the
``metrics`` extra), observes only the pools started with ``PoolConfig.metrics=True``
(``--metrics-port`` on ``spider batch`` and ``spider soak``), and serves their tasks,
durations, queue waits and executors in ``prometheus_client``'s default registry.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from spider_core.plugin import hookimpl

if TYPE_CHECKING:
    from spider_core.plugin import ExecuteRequest, Outcome, PoolView

#: The upper bounds (seconds) of the histograms' buckets: from 100 µs (a no-op's round trip)
#: to a minute.
BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    float("inf"),
)
#: Tasks queued at most before a caller takes them into the metrics itself.
BACKLOG = 4096

#: The pools observed now (a closed or collected pool leaves).
_pools: weakref.WeakSet[PoolView] = weakref.WeakSet()
#: Tasks finished and not yet taken into the tables: (pool, package, task, outcome class,
#: duration, queue wait).
_finished: deque[tuple[str, str, str, type[Outcome], float, float]] = deque()
_lock = threading.Lock()
#: (pool, package, task, outcome) -> calls.
_tasks: dict[tuple[str, ...], float] = {}
#: (pool, package, task) and (pool,) -> each bucket's count (not cumulative), then the sum.
_durations: dict[tuple[str, ...], list[float]] = {}
_queues: dict[tuple[str, ...], list[float]] = {}
_registered = False


def _row(table: dict[tuple[str, ...], list[float]], key: tuple[str, ...]) -> list[float]:
    row = table.get(key)
    if row is None:
        row = table[key] = [0.0] * (len(BUCKETS) + 1)
    return row


def _take() -> None:
    """Count the tasks queued so far (the loop is the plugin's one hot spot: kept flat)."""
    from spider_core.plugin import outcome_name  # (not at import: the executors import this module)

    names: dict[type, str] = {}
    where = bisect.bisect_left
    with _lock:
        take = _finished.popleft
        for _ in range(len(_finished)):
            pool, package, task, kind, duration, queue = take()
            name = names.get(kind) or names.setdefault(kind, outcome_name(kind))
            key = (pool, package, task, name)
            _tasks[key] = _tasks.get(key, 0) + 1
            row = _durations.get(key[:3]) or _row(_durations, key[:3])
            row[where(BUCKETS, duration)] += 1
            row[-1] += duration
            row = _queues.get(key[:1]) or _row(_queues, key[:1])
            row[where(BUCKETS, queue)] += 1
            row[-1] += queue


def _histogram(name: str, documentation: str, labels: list[str], table: dict[tuple[str, ...], list[float]]) -> Any:
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, documentation, labels=labels)
    for key, row in sorted(table.items()):
        cumulative, buckets = 0.0, []
        for bound, count in zip(BUCKETS, row, strict=False):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        family.add_metric(list(key), buckets, row[-1])
    return family


class _Collector:
    """Every metric of every pool observed, registered once per process in
    ``prometheus_client``'s default registry (so a program that already serves ``/metrics``
    serves these too): the tables of the tasks finished, and what ``pool.stats()`` says at each
    scrape. Every metric has a ``pool`` label (``em_id``):

    - ``spider_tasks_total{pool,package,task,outcome}``: calls finished, by outcome
      (``success``, ``failure``, ``timeout``, ``crash``; ``cancelled`` with empty ``package``
      and ``task``: a call cancelled while it ran reaches the hooks only as its executor's exit);
    - ``spider_task_duration_seconds{pool,package,task}``: histogram of the executor's
      ``elapsed_us`` (for a timeout or a crash, which have none: the time the call held its slot);
    - ``spider_task_queue_seconds{pool}``: histogram of the time from the call to its slot;
    - ``spider_executor_respawns_total{pool,reason}``, ``spider_executors{pool,state}`` and
      ``spider_executor_rss_bytes{pool}`` (summed over the pool's executors, standbys
      included): read from ``pool.stats()`` at each scrape.

    Package and task names label the series; they come from the packages a pool runs, never
    from a request's inputs, so the number of series stays bounded.
    """

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        _take()
        with _lock:
            tasks = CounterMetricFamily(
                "spider_tasks", "Calls finished, by outcome.", labels=["pool", "package", "task", "outcome"]
            )
            for labels, count in sorted(_tasks.items()):
                tasks.add_metric(list(labels), count)
            yield tasks
            yield _histogram("spider_task_duration_seconds", "Time the executor spent on a task.",
                             ["pool", "package", "task"], _durations)
            yield _histogram("spider_task_queue_seconds", "Time from a call to its slot.", ["pool"], _queues)
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
    """Observe ``pool`` if its config asks for metrics (``PoolConfig.metrics``); else answer
    False, so its calls never reach this plugin. ``prometheus_client`` is imported here, by the
    first pool observed, never by an executor."""
    global _registered
    if not pool.config.metrics:
        return False
    with _lock:
        if not _registered:
            from prometheus_client import REGISTRY

            REGISTRY.register(_Collector())
            _registered = True
    _pools.add(pool)
    return True


@hookimpl
def spider_pool_closed(pool: PoolView) -> None:
    _pools.discard(pool)


@hookimpl
def spider_executor_exited(reason: str, pool: PoolView) -> None:
    if reason == "cancelled" and pool in _pools:
        key = (pool.config.em_id, "", "", "cancelled")
        with _lock:
            _tasks[key] = _tasks.get(key, 0) + 1


@hookimpl
def spider_task_finished(
    request: ExecuteRequest, outcome: Outcome, queue_wait: float, execution_time: float, pool: PoolView
) -> None:
    """One append to a queue: the counter and the histograms take the queued tasks at the next
    scrape (or when the queue is longer than :data:`BACKLOG`), into plain tables (about a
    microsecond a task, where ``prometheus_client``'s labelled metrics cost several), so the
    metrics cost the hot path next to nothing and are exact at every scrape."""
    elapsed_us = getattr(outcome, "elapsed_us", None)
    duration = execution_time if elapsed_us is None else elapsed_us / 1e6
    _finished.append((pool.config.em_id, request.package, request.task, type(outcome), duration, queue_wait))
    if len(_finished) > BACKLOG:
        _take()
