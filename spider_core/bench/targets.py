"""The project's own performance targets (the issue's), checked against one run:
:func:`targets` gives one :class:`Target` per target the run measured, met or unmet, for the
report's optional section and for ``report.json``."""

from __future__ import annotations

from attrs import frozen

from spider_core.bench.contenders import OURS, OURS_SYNC
from spider_core.bench.recovery import OURS_STANDBY, RECOVERY_TIMEOUT_S
from spider_core.bench.results import BenchReport, ThroughputResult
from spider_core.bench.stats import Stats
from spider_core.bench.throughput import OURS_MAP, OURS_SUBMIT


@frozen(kw_only=True)
class Target:
    """One of the issue's targets, checked against one run."""

    target: str
    measured: str
    met: bool

    def line(self) -> str:
        return f"target: {self.target}; measured: {self.measured}; {'met' if self.met else 'unmet'}"


def _ms(us: float) -> str:
    return f"{us / 1000:.1f} ms"


def _ratio_target(
    name: str, ours: str, ours_p50: float, peer: str, peer_p50: float, limit: float, in_ms: bool = False
) -> Target:
    ratio = ours_p50 / peer_p50
    unit = _ms if in_ms else lambda us: f"{us:.1f} µs"
    return Target(
        target=f"{name} p50 ≤ {limit:g}x {peer}",
        measured=f"{ratio:.2f}x ({ours} {unit(ours_p50)}, {peer} {unit(peer_p50)})",
        met=ratio <= limit,
    )


#: Tasks per second against ``multiprocessing.Pool`` with as many workers: at least these.
_THROUGHPUT_TARGETS = {
    OURS: ("`asyncio.gather` over `ProcessPool.execute`", 1.0),
    OURS_SUBMIT: ("`SyncProcessPool.submit` from 8 threads", 0.8),
    OURS_MAP: ("`ProcessPool.map`", 2.5),
}


def _throughput_targets(throughput: ThroughputResult) -> list[Target]:
    rates = {c.name: c.stats().p50 for c in throughput.contenders}
    peer = rates.get("multiprocessing")
    if not peer:
        return []
    found = []
    for name, (label, limit) in _THROUGHPUT_TARGETS.items():
        if name in rates:
            ratio = rates[name] / peer
            found.append(
                Target(
                    target=f"{label}, tasks/s ≥ {limit:g}x multiprocessing.Pool",
                    measured=f"{ratio:.2f}x ({name} {rates[name]:.0f}/s, multiprocessing {peer:.0f}/s)",
                    met=ratio >= limit,
                )
            )
    return found


def targets(report: BenchReport) -> list[Target]:
    """The issue's targets that this run measured, each checked against its p50s."""
    found = []
    start, floor = report.start_us, report.start_floor_us
    if start and floor:
        found.append(
            _ratio_target(
                "executor start (`ProcessPool.start()`)",
                "start",
                Stats.of(start).p50,
                "the floor (a fresh `python -c \"import msgpack\"`)",
                Stats.of(floor).p50,
                1.5,
                in_ms=True,
            )
        )
    if report.sync is not None:
        p50 = {c.name: c.stats().p50 for c in report.sync.contenders}
        if OURS_SYNC in p50 and "futures" in p50:
            pool, sync, futures = p50[OURS], p50[OURS_SYNC], p50["futures"]
            sync_label, futures_label = "SyncProcessPool no-op", "ProcessPoolExecutor (fork)"
            found += [
                _ratio_target(sync_label, OURS_SYNC, sync, futures_label, futures, 0.35),
                _ratio_target(sync_label, OURS_SYNC, sync, "ProcessPool", pool, 1.2),
                _ratio_target("ProcessPool no-op", OURS, pool, futures_label, futures, 0.15),
                _ratio_target(sync_label, OURS_SYNC, sync, futures_label, futures, 0.15),
            ]
        if OURS_SYNC in p50 and "pipe-sync" in p50:  # the cold call against the raw pipe
            found.append(_ratio_target("cold SyncProcessPool no-op", OURS_SYNC, p50[OURS_SYNC], "pipe-sync", p50["pipe-sync"], 1.5))
        if OURS in p50 and "pipe-asyncio" in p50:
            found.append(_ratio_target("cold ProcessPool no-op", OURS, p50[OURS], "pipe-asyncio", p50["pipe-asyncio"], 1.3))
    if report.throughput is not None:
        found += _throughput_targets(report.throughput)
    recovery = report.recovery
    if recovery is not None:
        standby, plain = recovery.contender(OURS_STANDBY), recovery.contender(OURS)
        timeout_ms = f"{RECOVERY_TIMEOUT_S * 1000:.0f} ms"
        if standby is not None:
            crash, timeout = standby.stats("crash").p50, standby.stats("timeout").p50
            found += [
                Target(target="with standby, crash → next success p50 ≤ 5 ms", measured=_ms(crash), met=crash <= 5000),
                Target(
                    target=f"with standby, {timeout_ms} timeout → next success p50 ≤ 205 ms",
                    measured=_ms(timeout),
                    met=timeout <= 205_000,
                ),
            ]
        if plain is not None and start:
            crash, start_p50 = plain.stats("crash").p50, Stats.of(start).p50
            found.append(
                Target(
                    target="without standby, crash → next success p50 ≤ executor start p50 + 10 ms",
                    measured=f"{_ms(crash)} (start {_ms(start_p50)}, so the limit is {_ms(start_p50 + 10_000)})",
                    met=crash <= start_p50 + 10_000,
                )
            )
    return found
