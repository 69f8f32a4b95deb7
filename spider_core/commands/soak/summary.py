"""What a soak reports: the outcomes per kind of task, every invariant held or broken (one
sentence each), and the table ``spider soak`` prints."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from attrs import asdict, frozen

from spider_core.commands.reporting import print_table
from spider_core.commands.soak.plan import FINAL


@frozen(kw_only=True)
class KindResult:
    """The tasks of one kind: how many ran, how many ended as expected, what the others got."""

    kind: str
    expected: str
    count: int
    as_expected: int
    others: dict[str, int]


@frozen(kw_only=True)
class SoakSummary:
    """What one soak run did and which invariants held (see :mod:`spider_core.commands.soak`)."""

    tasks: int
    callers: int
    slots: int
    fault_rate: float
    seed: int
    seconds: float
    kinds: tuple[KindResult, ...]
    unexpected: int
    lost: int
    misattributed: int
    fds_before: int
    fds_after: int
    children_before: int
    children_after: int
    rss_before: int
    rss_after: int
    executors_started: int
    respawns: int
    expected_respawns: int
    exits: dict[str, int]
    expected_exits: dict[str, int]
    recoveries: int
    unrecovered: int
    slowest_recovery: float | None
    longest_queue_wait: float
    queue_wait_p99: float
    examples: tuple[str, ...]
    failures: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether every invariant held."""
        return not self.failures

    def to_primitive(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``--json`` writes), with ``ok``."""
        return {**asdict(self), "ok": self.ok}

    def rows(self) -> list[list[str]]:
        """The summary as one table: a row per kind of task, then per invariant."""
        rows = [["CHECK", "EXPECTED", "OBSERVED", "OK"]]
        for k in self.kinds:
            observed = f"{k.as_expected} of {k.count}"
            if k.others:
                observed += "; got " + ", ".join(f"{n} {name}" for name, n in sorted(k.others.items()))
            rows.append([f"{k.kind} tasks", k.expected, observed, _ok(k.as_expected == k.count)])
        n = sum(k.count for k in self.kinds if k.kind != FINAL)
        rows.append(["tasks run", str(self.tasks), str(n), _ok(n == self.tasks)])
        rows.append(["results lost", "0", str(self.lost), _ok(self.lost == 0)])
        rows.append(["misattributed", "0", str(self.misattributed), _ok(self.misattributed == 0)])
        rows.append(["open descriptors", f"{self.fds_before} (before)", f"{self.fds_after} (after)",
                     _ok(self.fds_before == self.fds_after)])
        rows.append(["child processes", f"{self.children_before} (before)", f"{self.children_after} (after)",
                     _ok(self.children_before == self.children_after)])
        rows.append(["executor respawns", str(self.expected_respawns), str(self.respawns),
                     _ok(self.respawns == self.expected_respawns)])
        rows.append(["executor exits", _reasons(self.expected_exits), _reasons(self.exits),
                     _ok(self.exits == self.expected_exits)])
        slowest = "-" if self.slowest_recovery is None else f"slowest {self.slowest_recovery:.3f} s"
        rows.append(["recovery", f"a Success after each of {self.recoveries + self.unrecovered}",
                     f"{self.recoveries} recovered, {slowest}", _ok(self.unrecovered == 0)])
        growth = (self.rss_after - self.rss_before) / (1 << 20)
        rows.append(["parent RSS", f"{self.rss_before / (1 << 20):.1f} MiB", f"{growth:+.1f} MiB", "-"])
        rows.append(["queue wait", "-", f"longest {self.longest_queue_wait:.3f} s, p99 {self.queue_wait_p99:.3f} s",
                     "-"])
        rate = self.tasks / self.seconds if self.seconds else 0.0
        rows.append(["time", "-", f"{self.seconds:.1f} s ({rate:.0f} tasks/s)", "-"])
        return rows

    def print(self) -> None:
        print_table(self.rows())


def _ok(held: bool) -> str:
    return "ok" if held else "FAILED"


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) or "-"


def nearest_rank(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def failures(s: SoakSummary) -> Iterator[str]:
    """One sentence per broken invariant, each starting with the invariant's name."""
    first = f" (first: {s.examples[0]})" if s.examples else ""
    if s.unexpected:
        yield f"outcomes: {s.unexpected} tasks did not end as their kind must{first}"
    if s.lost:
        yield f"lost: {s.lost} results were lost{first}"
    if s.misattributed:
        yield f"misattributed: {s.misattributed} tasks received values that are not theirs{first}"
    if s.fds_before != s.fds_after:
        yield f"descriptors: the parent had {s.fds_before} open file descriptors before and {s.fds_after} after"
    if s.children_before != s.children_after:
        yield f"children: the parent had {s.children_before} child processes before and {s.children_after} after"
    if s.respawns != s.expected_respawns:
        yield f"respawns: the pool started {s.respawns} replacement executors for {s.expected_respawns} faults"
    if s.exits != s.expected_exits:
        yield (f"exits: the executors exited for {_reasons(s.exits)}, "
               f"where the faults called for {_reasons(s.expected_exits)}")
    if s.unrecovered:
        yield f"recovery: {s.unrecovered} faults were not followed by a Success on a fresh executor"
