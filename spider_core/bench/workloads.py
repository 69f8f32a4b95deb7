"""The workloads: what one call does, the same for every contender. :class:`Workload` names
the task of ``integration_test_tasks`` spider-core runs, its arguments, the module-level
function the peers run (:func:`peer_noop`, :func:`peer_echo`; their workers import it by this
module's path) and the work it does by design; ``WORKLOAD_SPECS`` holds the latency workloads
``noop`` (nothing in, nothing out) and ``echo`` (100 path-like strings in, a nominal 50 µs sleep,
the same out). ``THROUGHPUT`` names the throughput workload (batches of noop tasks queued at once
through N workers; :mod:`spider_core.bench.throughput`), ``SYNC`` the no-op through
``SyncProcessPool`` beside ``ProcessPool`` and ProcessPoolExecutor (``SYNC_WORKLOAD``), and
``RECOVERY`` the time from a crash or a hard timeout to the next success
(:mod:`spider_core.bench.recovery`; the peers run :func:`peer_crash` and :func:`peer_sleep`).
``WORKLOADS`` lists them all; ``DEFAULT_WORKLOADS`` is the default set (all but ``recovery``,
which takes minutes).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from attrs import frozen

#: The latency workloads (one worker, sequential calls), each a ``WORKLOAD_SPECS`` entry.
LATENCY_WORKLOADS = ("noop", "echo")
THROUGHPUT = "throughput"
#: No-op round trips through ``SyncProcessPool``, ``ProcessPool`` and ProcessPoolExecutor (fork).
SYNC = "sync"
#: Crash and hard timeout, then the next no-op: how long until a pool serves again.
RECOVERY = "recovery"
#: One bytes object echoed, 1 KiB to 256 MiB (:mod:`spider_core.bench.payload`).
PAYLOAD = "payload"
#: The no-op back to back with the observer plugins on and off (:mod:`spider_core.bench.observe`).
OBSERVE = "observe"
#: Every workload, in report order.
WORKLOADS = (*LATENCY_WORKLOADS, THROUGHPUT, SYNC, RECOVERY, PAYLOAD, OBSERVE)
#: What ``spider bench`` runs unless told otherwise: ``recovery`` takes minutes (billiard
#: notices a crashed worker only after 10 s), ``payload`` minutes and gigabytes, and
#: ``observe`` sets the process's tracer provider and needs the observers' libraries, so they
#: run when asked for.
DEFAULT_WORKLOADS = (*LATENCY_WORKLOADS, THROUGHPUT, SYNC)

ECHO_SLEEP_S = 50e-6
#: The echo payload: 100 path-like strings.
ECHO_STRINGS = [f"/var/data/job-{i % 23}/part-{i:05d}.log" for i in range(100)]


def peer_noop() -> None:
    """The noop workload for the peers."""


def peer_echo(strings: list[str]) -> list[str]:
    """The echo workload for the peers: sleep 50 µs, return the input."""
    time.sleep(ECHO_SLEEP_S)
    return strings


def peer_crash() -> None:
    """The recovery workload's crash for the peers: the worker kills itself with SIGSEGV, as
    the C package's ``segfault`` task does (quietly: without the traceback dump a forked worker
    inherits from a parent that enabled faulthandler, as pytest does)."""
    faulthandler.disable()
    os.kill(os.getpid(), signal.SIGSEGV)


def peer_sleep(seconds: float) -> None:
    """The recovery workload's task that outlives its hard timeout, for the peers."""
    time.sleep(seconds)


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

#: The sync workload: a no-op, as ``noop`` (its own name, so the report keeps them apart).
SYNC_WORKLOAD = Workload(name=SYNC, task="noop", args=(), peer_fn=peer_noop, nominal_us=0.0)
