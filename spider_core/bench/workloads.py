"""The workloads: what one call does, the same for every contender. :class:`Workload` names
the task of ``integration_test_tasks`` spider-core runs, its arguments, the module-level
function the peers run (:func:`peer_noop`, :func:`peer_echo`; their workers import it by this
module's path) and the work it does by design; ``WORKLOAD_SPECS`` holds the latency workloads
``noop`` (nothing in, nothing out) and ``echo`` (100 path-like strings in, a nominal 50 µs sleep,
the same out). ``THROUGHPUT`` names the throughput workload (batches of noop tasks queued at once
through N workers; :mod:`spider_core.bench.throughput`). ``WORKLOADS`` lists them all, and is
the default set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from attrs import frozen

#: The latency workloads (one worker, sequential calls), each a ``WORKLOAD_SPECS`` entry.
LATENCY_WORKLOADS = ("noop", "echo")
THROUGHPUT = "throughput"
#: Every workload, in report order; the default set.
WORKLOADS = (*LATENCY_WORKLOADS, THROUGHPUT)

ECHO_SLEEP_S = 50e-6
#: The echo payload: 100 path-like strings.
ECHO_STRINGS = [f"/var/data/job-{i % 23}/part-{i:05d}.log" for i in range(100)]


def peer_noop() -> None:
    """The noop workload for the peers."""


def peer_echo(strings: list[str]) -> list[str]:
    """The echo workload for the peers: sleep 50 µs, return the input."""
    time.sleep(ECHO_SLEEP_S)
    return strings


@frozen(kw_only=True)
class Workload:
    """One kind of call, as each contender makes it.

    :param name: Workload name; also the request the floor child understands.
    :param task: The task of ``integration_test_tasks`` spider-core runs.
    :param args: The task's arguments (for the peers and the floor too).
    :param peer_fn: The module-level function the peers run.
    :param nominal_us: The work the task does by design, subtracted from the executor time
        to give the executor internal time.
    """

    name: str
    task: str
    args: tuple[Any, ...]
    peer_fn: Callable[..., Any]
    nominal_us: float

    @property
    def expected(self) -> Any:
        """What the peers and the floor return."""
        return self.args[0] if self.args else None


WORKLOAD_SPECS = {
    "noop": Workload(name="noop", task="noop", args=(), peer_fn=peer_noop, nominal_us=0.0),
    "echo": Workload(
        name="echo", task="sleep_and_echo", args=(ECHO_STRINGS,), peer_fn=peer_echo, nominal_us=ECHO_SLEEP_S * 1e6
    ),
}
