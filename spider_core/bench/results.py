"""What a benchmark run measured: :class:`ContenderResult`, :class:`WorkloadResult` (the
latency workloads and the sync workload), :class:`BatchResult`, :class:`ThroughputResult` (the
throughput workload), :class:`RecoverySamples`, :class:`RecoveryResult` (the recovery workload),
:class:`StartMethodResult` and :class:`BenchReport`, which holds them all (every sample, in call
or round order) and where the report was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from attrs import frozen

from spider_core.bench.payload import PayloadResult
from spider_core.bench.stats import Stats


@frozen(kw_only=True)
class ContenderResult:
    """One contender's samples for one workload: metric name -> samples (µs), in call order."""

    name: str
    samples: dict[str, tuple[float, ...]]

    def stats(self, metric: str = "e2e") -> Stats:
        return Stats.of(self.samples[metric])


@frozen(kw_only=True)
class WorkloadResult:
    workload: str
    #: spider-core first, then the peers in ``PEERS`` order.
    contenders: tuple[ContenderResult, ...]

    @property
    def ours(self) -> ContenderResult:
        return self.contenders[0]

    def ratio(self, peer: ContenderResult, field: str) -> float:
        """Ours / peer for an E2E statistic (``"p50"``, ...): below 1 means spider-core is faster."""
        ratio: float = getattr(self.ours.stats(), field) / getattr(peer.stats(), field)
        return ratio


@frozen(kw_only=True)
class BatchResult:
    """One contender's throughput batches: seconds per batch of ``batch`` tasks, in round order."""

    name: str
    #: Worker processes (executors, for spider-core).
    workers: int
    batch: int
    batch_s: tuple[float, ...]

    @property
    def rates(self) -> tuple[float, ...]:
        """Tasks per second of each batch."""
        return tuple(self.batch / s for s in self.batch_s)

    def stats(self) -> Stats:
        """The tasks per second over the rounds (p50 is the median: nearest rank)."""
        return Stats.of(self.rates)


@frozen(kw_only=True)
class ThroughputResult:
    """The throughput workload: batches of no-op tasks queued at once through ``slots`` workers."""

    slots: int
    #: Tasks per batch.
    batch: int
    #: Measured batches per contender (after one warm-up batch each).
    rounds: int
    #: spider-core first, then its variants, then the peers in ``PEERS`` order.
    contenders: tuple[BatchResult, ...]

    @property
    def ours(self) -> BatchResult:
        return self.contenders[0]

    def ratio(self, peer: BatchResult) -> float:
        """Ours / peer of the median tasks per second: above 1 means spider-core does more."""
        return self.ours.stats().p50 / peer.stats().p50


@frozen(kw_only=True)
class RecoverySamples:
    """One contender's recovery rounds, in µs from submitting the faulting task, per fault
    (``"crash"``, ``"timeout"``), in round order."""

    name: str
    #: Until the pool reported the fault (crash, or timeout).
    fault_us: dict[str, tuple[float, ...]]
    #: Until the no-op submitted after it returned: the time to recover.
    recovered_us: dict[str, tuple[float, ...]]

    def stats(self, fault: str) -> Stats:
        """The time to recover from ``fault``."""
        return Stats.of(self.recovered_us[fault])


@frozen(kw_only=True)
class RecoveryResult:
    """The recovery workload: crash or hard timeout, then the next no-op."""

    rounds: int
    #: spider-core with a standby, without, then the peers.
    contenders: tuple[RecoverySamples, ...]
    #: The peers that cannot take part: name -> why.
    unable: dict[str, str]

    def contender(self, name: str) -> RecoverySamples | None:
        return next((c for c in self.contenders if c.name == name), None)


@frozen(kw_only=True)
class StartMethodResult:
    """Pools started with one ``PoolConfig.start_method``: ``ProcessPool.start()`` with one slot
    and with ``slots`` (µs, spawn until every executor is ready), and what the larger pool's
    processes hold once started and idle (the executors, and a fork server), in KiB."""

    name: str
    slots: int
    start_one_us: tuple[float, ...]
    start_all_us: tuple[float, ...]
    rss_kib: int | None
    pss_kib: int | None


@frozen(kw_only=True)
class BenchReport:
    """Everything one run measured, and where it was written."""

    #: The latency workloads (noop, echo), in the order asked for.
    workloads: tuple[WorkloadResult, ...]
    #: ``ProcessPool.start()`` durations (µs): spawn until the executor's Ready.
    start_us: tuple[float, ...]
    #: VmRSS of the idle executor after the run, in KiB (None where /proc is missing).
    idle_rss_kib: int | None
    calls: int
    warmup: int
    notes: tuple[str, ...]
    environment: dict[str, Any]
    markdown_path: Path
    json_path: Path
    #: The throughput workload, if it was run.
    throughput: ThroughputResult | None = None
    #: The floor of an executor start, µs: a fresh ``python -c "import msgpack"``, spawn to exit.
    start_floor_us: tuple[float, ...] = ()
    #: The sync workload, if it was run: spider-core (the async pool) first.
    sync: WorkloadResult | None = None
    #: The recovery workload, if it was run.
    recovery: RecoveryResult | None = None
    #: Starts and idle memory per start method (exec, then forkserver).
    start_methods: tuple[StartMethodResult, ...] = ()
    #: The payload workload, if it was run, and its plot (with matplotlib).
    payload: PayloadResult | None = None
    payload_plot: Path | None = None
    #: The latency plot, if one was drawn.
    plot: Path | None = None
    #: Why there is no plot, when there could have been one.
    plot_note: str | None = None

    def workload(self, name: str) -> WorkloadResult:
        return next(w for w in self.workloads if w.workload == name)
