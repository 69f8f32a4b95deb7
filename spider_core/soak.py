"""``spider soak``: run many tasks with faults mixed in and check what the pool survives.

:func:`soak` drives a :class:`~spider_core.pool.ProcessPool` with ``tasks`` tasks from
``callers`` concurrent asyncio callers over ``slots`` slots. A ``fault_rate`` share of the
tasks are faults, drawn evenly from :data:`FAULTS`: a segfault, an abort, an ``_exit``, a hard
timeout, a call cancelled while its task runs, a task that writes garbage to its stdout, a
large output, a task failure, and an idle executor SIGKILLed from outside (then a task runs).
The others echo a token unique to the task (``sleep_and_echo`` of the bundled
``integration_test_tasks``), or run a task of the user's package whose values must equal
those of its first run.

It returns a :class:`SoakSummary`; ``summary.failures`` names every invariant that broke, one
sentence each (empty: all held):

- **outcomes**: every task ends in the outcome its kind must have;
- **lost**: every call returns an outcome (or, for a cancelled one, is cancelled);
- **misattributed**: no task receives values that are not its own;
- **descriptors** and **children**: the parent has as many open file descriptors and child
  processes after the pool closed as before it started (with ``shm_threshold``, this covers
  the shared-memory regions too: each region, and each mapping of one, holds a descriptor);
- **respawns** and **exits**: one replacement executor per fault that ends one, and the
  ``spider_executor_exited`` reasons match the faults;
- **recovery**: after every such fault, a task succeeds on an executor started after it.

Parent RSS growth, the slowest recovery and the longest queue wait are reported, not checked.

For the tests that prove the checks can fail, ``_inject`` (or ``$SPIDER_SOAK_INJECT`` for the
command) breaks one on purpose: ``"misattribute"`` hands a task another task's result,
``"leak-fd"`` opens a descriptor it does not close before measuring, ``"lose"`` drops one
outcome.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import math
import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from attrs import asdict, define, evolve, field, frozen

from spider_core.models import ExecuteRequest, ExecutorCrash, InTaskFailure, Outcome, PoolConfig, Success, Timeout
from spider_core.plugin import hookimpl
from spider_core.pool import ProcessPool
from spider_core.reporting import print_table
from spider_core.tdl import EncodingError, TaskError, TdlErrorKind
from spider_core.testing import describe_outcome

#: The bundled package that holds the fault tasks and the token echo.
NATIVE = "integration_test_tasks"

#: The fault kinds, drawn evenly.
FAULTS = ("segfault", "abort", "exit", "timeout", "cancel", "stdout", "large", "fail", "kill")
#: The kind of a fault-free task.
FREE = "echo"
#: The kind of a fault-free task of the user's package.
USER = "user"
#: The kind of the tasks run after all callers finished, one per slot at once.
FINAL = "final"

#: The hard timeout of a ``timeout`` fault, in seconds.
TIMEOUT_FAULT = 0.1
#: How long a ``timeout`` or ``cancel`` fault's task would sleep, in milliseconds.
LONG_SLEEP_MS = 120_000
#: Largest output of a ``large`` fault, in bytes (each is 1 MiB to this).
LARGE_MAX = 4 << 20
#: Longest wait, in seconds, for anything the soak itself waits on (a cancel fault's task to
#: start, the calls in flight to drain before a kill, a killed process to die).
WAIT = 60.0

_DESCRIPTIONS = {
    FREE: "Success echoing its token",
    USER: "Success with the values of its first run",
    FINAL: "Success echoing its token",
    "segfault": "ExecutorCrash (SIGSEGV)",
    "abort": "ExecutorCrash (SIGABRT)",
    "exit": "ExecutorCrash (its exit status)",
    "timeout": f"Timeout ({TIMEOUT_FAULT} s)",
    "cancel": "cancelled while running",
    "stdout": "Success (stdout only logged)",
    "large": "Success with its 1-4 MiB",
    "fail": "InTaskFailure (ExecutionError)",
    "kill": "idle executor SIGKILLed; next task Success",
}

#: Faults after which the pool must replace an executor, and the exit reason it reports.
_REPLACING: dict[str, str] = {
    "segfault": "crash", "abort": "crash", "exit": "crash", "kill": "crash", "timeout": "timeout", "cancel": "cancelled",
}

Inject = Literal["misattribute", "leak-fd", "lose"]
INJECTIONS: tuple[str, ...] = ("misattribute", "leak-fd", "lose")
ENV_INJECT = "SPIDER_SOAK_INJECT"


class SoakError(Exception):
    """The soak cannot run as asked (a bad setting, a package it cannot use); one sentence."""


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
    """What one soak run did and which invariants held (see the module docstring)."""

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


# -------------------------------------------------------------------------------------------
# what the parent holds
# -------------------------------------------------------------------------------------------


def open_descriptors() -> int:
    """How many file descriptors this process has open (``/proc/self/fd``)."""
    return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself holds


def child_processes() -> list[int]:
    """The pids of this process's children, zombies included (read from ``/proc``)."""
    me = os.getpid()
    children = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = process_stat(int(entry.name))
            if stat is not None and stat[1] == me:
                children.append(int(entry.name))
    return children


def process_stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, parent pid, start time)`` of process ``pid`` from ``/proc``; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1]), int(fields[19])


def resident_bytes() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -------------------------------------------------------------------------------------------
# the run
# -------------------------------------------------------------------------------------------


class _Lifecycle:
    """The pool's lifecycle hooks, as the soak sees them: registered on the pool's manager."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}  # executor id -> when
        self.exits: Counter[str] = Counter()
        self.exit_of: dict[int, tuple[str, int | None]] = {}  # pid -> (reason, signal)
        self.finished: dict[int, tuple[float, float]] = {}  # id(request) -> (queue wait, slot taken at)
        self.queue_waits = array.array("d")  # one per task: 8 bytes each, not a float object

    @hookimpl
    def spider_executor_started(self, executor_id: int, pid: int) -> None:
        self.started[executor_id] = time.perf_counter()

    @hookimpl
    def spider_executor_exited(self, executor_id: int, pid: int, reason: str, signal: int | None) -> None:
        self.exits[reason] += 1
        self.exit_of[pid] = (reason, signal)

    @hookimpl
    def spider_task_finished(self, request: ExecuteRequest, queue_wait: float, execution_time: float) -> None:
        self.queue_waits.append(queue_wait)
        self.finished[id(request)] = (queue_wait, time.perf_counter() - execution_time)


class _Gate:
    """Lets the callers through, or stops them while a kill waits for every call to end (so
    the executor it kills is idle)."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.opened.set()
        self.idle = asyncio.Event()
        self.idle.set()
        self.inflight = 0
        self.lock = asyncio.Lock()

    async def enter(self) -> None:
        await self.opened.wait()
        self.inflight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if not self.inflight:
            self.idle.set()


@define
class _Task:
    """One planned task."""

    index: int
    kind: str
    request: ExecuteRequest
    hard_timeout: float
    expected: Any = None  # the values of a Success, the exit status of an exit, ...


@define
class _Run:
    pool: ProcessPool
    plan: list[str]
    rng: random.Random
    timeout: float
    marks: Path
    user: ExecuteRequest | None
    inject: str | None
    progress: Callable[[int, int], None] | None
    lifecycle: _Lifecycle
    gate: _Gate = field(factory=_Gate)
    next_index: int = 0
    done: int = 0
    counts: Counter[str] = field(factory=Counter)
    as_expected: Counter[str] = field(factory=Counter)
    others: dict[str, Counter[str]] = field(factory=dict)
    unexpected: int = 0
    lost: int = 0
    misattributed: int = 0
    examples: list[str] = field(factory=list)
    pending: list[float] = field(factory=list)  # when each fault not yet recovered from happened
    recoveries: list[float] = field(factory=list)
    replacing: Counter[str] = field(factory=Counter)  # expected exits by reason
    killed: list[int] = field(factory=list)
    reference: list[Any] | None = None  # the values of the user's task
    last_echo: Success | None = None
    injected: bool = False

    # -- planning

    def task(self, index: int, kind: str) -> _Task:
        token = f"{index}:{self.rng.getrandbits(64):016x}"
        if kind in (FREE, FINAL, "kill"):
            return self._call(index, kind, "sleep_and_echo", [token], expected=[[token]])
        if kind == USER:
            assert self.user is not None
            return _Task(index=index, kind=kind, request=self.user, hard_timeout=self.timeout, expected=self.reference)
        if kind == "segfault":
            return self._call(index, kind, "segfault", expected=signal.SIGSEGV)
        if kind == "abort":
            return self._call(index, kind, "always_panic", expected=signal.SIGABRT)
        if kind == "exit":
            code = 1 + index % 120
            return self._call(index, kind, "exit_with", code, expected=code)
        if kind == "timeout":
            return self._call(index, kind, "sleep_ms", LONG_SLEEP_MS, hard_timeout=TIMEOUT_FAULT)
        if kind == "cancel":
            return self._call(index, kind, "mark_and_sleep", str(self.marks / str(index)), LONG_SLEEP_MS,
                              hard_timeout=2 * WAIT)
        if kind == "stdout":
            return self._call(index, kind, "print_to_stdout", expected=[])
        if kind == "large":
            size = self.rng.randint(1 << 20, LARGE_MAX)
            return self._call(index, kind, "big", size, expected=size)
        if kind == "fail":
            return self._call(index, kind, "always_fail")
        raise ValueError(f"unknown task kind {kind!r}")

    def _call(self, index: int, kind: str, task: str, *inputs: Any, expected: Any = None,
              hard_timeout: float | None = None) -> _Task:
        request = ExecuteRequest(package=NATIVE, task=task, inputs=inputs)
        return _Task(index=index, kind=kind, request=request, hard_timeout=hard_timeout or self.timeout,
                     expected=expected)

    # -- running

    async def caller(self) -> None:
        while self.next_index < len(self.plan):
            index = self.next_index
            self.next_index += 1
            kind = self.plan[index]
            if kind == "kill":
                await self.kill()
            await self.run(self.task(index, kind))
            self.done += 1
            if self.progress is not None and self.done % 1000 == 0:
                self.progress(self.done, len(self.plan))

    async def run(self, task: _Task) -> None:
        self.counts[task.kind] += 1
        await self.gate.enter()
        try:
            if task.kind == "cancel":
                await self._cancel_in_flight(task)
                return
            try:
                outcome = await self.pool.execute(task.request, task.hard_timeout)
            except Exception as e:  # InternalError, or a bug that escaped execute
                self._lose(task, f"execute raised {type(e).__name__}: {e}")
                return
        finally:
            self.gate.leave()
        if self.inject == "lose" and not self.injected and task.kind == FREE:
            self.injected = True
            self._lose(task, "the outcome was dropped on purpose (injected)")
            return
        self.record(task, outcome)

    def record(self, task: _Task, outcome: Outcome) -> None:
        finished = self.lifecycle.finished.pop(id(task.request), None)
        now = time.perf_counter()
        if self.inject == "misattribute" and not self.injected and task.kind == FREE and self.last_echo is not None:
            self.injected = True
            outcome = self.last_echo  # another task's result
        verdict = self._verdict(task, outcome)
        if verdict == "ok":
            self.as_expected[task.kind] += 1
        else:
            self.others.setdefault(task.kind, Counter())[type(outcome).__name__] += 1
            if verdict == "misattributed":
                self.misattributed += 1
            else:
                self.unexpected += 1
            self._example(f"task {task.index} ({task.kind}, {task.request.task}) expected "
                          f"{_DESCRIPTIONS[task.kind]}, got {_describe(outcome)}")
        if isinstance(outcome, Success):
            if task.kind == FREE:
                self.last_echo = outcome
            self._recovered(outcome, now)
        elif task.kind in _REPLACING and finished is not None:
            taken = finished[1]
            self._fault(task.kind, taken + TIMEOUT_FAULT if task.kind == "timeout" else taken)

    def _verdict(self, task: _Task, outcome: Outcome) -> str:
        kind, expected = task.kind, task.expected
        if isinstance(outcome, Success):
            if kind in (FREE, FINAL, "kill", USER, "stdout"):
                good = _values(outcome) == expected
            elif kind == "large":
                values = _values(outcome)
                good = isinstance(values, list) and values == ["x" * expected]
            else:
                good = False
            return "ok" if good else "misattributed"
        if kind in ("segfault", "abort"):
            good = isinstance(outcome, ExecutorCrash) and outcome.signal == expected
        elif kind == "exit":
            good = isinstance(outcome, ExecutorCrash) and outcome.exit_status == expected
        elif kind == "timeout":
            good = isinstance(outcome, Timeout)
        elif kind == "fail":
            error = outcome.error if isinstance(outcome, InTaskFailure) else None
            good = isinstance(error, TaskError) and error.error.kind is TdlErrorKind.ExecutionError
        else:
            good = False
        return "ok" if good else "unexpected"

    async def _cancel_in_flight(self, task: _Task) -> None:
        """Start the task, wait until it runs (it writes its mark file), cancel the call."""
        mark = self.marks / str(task.index)
        call = asyncio.ensure_future(self.pool.execute(task.request, task.hard_timeout))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        try:
            while not mark.exists() and not call.done() and loop.time() < deadline:
                await asyncio.sleep(0.002)
            started = mark.exists()
            cancelled_at = time.perf_counter()
            call.cancel()
            await asyncio.wait({call}, timeout=WAIT)
        finally:
            if not call.done():
                call.cancel()
            with contextlib.suppress(OSError):
                mark.unlink()
        if call.cancelled() and started:
            self.as_expected[task.kind] += 1
            self._fault(task.kind, cancelled_at)
            return
        if not call.done():
            self._lose(task, f"the cancelled call did not end within {WAIT:g} s")
            return
        got = "cancelled before its task started" if call.cancelled() else (
            f"exception {call.exception()!r}" if call.exception() else _describe(call.result())
        )
        self.unexpected += 1
        self.others.setdefault(task.kind, Counter())[got.split(":")[0]] += 1
        self._example(f"task {task.index} (cancel) expected to be cancelled while running, got {got}")

    async def kill(self) -> None:
        """SIGKILL an idle executor: stop the callers, wait for the calls in flight to end,
        kill one executor, wait until it is dead and the pool can see it, let them go on."""
        async with self.gate.lock:
            self.gate.opened.clear()
            try:
                try:
                    await asyncio.wait_for(self.gate.idle.wait(), WAIT)
                except TimeoutError:
                    self.unexpected += 1
                    self._example(f"the calls in flight did not end within {WAIT:g} s to kill an idle executor")
                    return
                pids = [pid for pid in self.pool.pids if pid is not None]
                if not pids:
                    return
                pid = self.rng.choice(pids)
                self._fault("kill", time.perf_counter())
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + WAIT
                while loop.time() < deadline:
                    stat = process_stat(pid)
                    if stat is None or stat[0] in "ZX":
                        break
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.005)  # the pool's loop sees the exit (its pidfd) first
            finally:
                self.gate.opened.set()

    # -- bookkeeping

    def _fault(self, kind: str, when: float) -> None:
        self.replacing[_REPLACING[kind]] += 1
        self.pending.append(when)

    def _recovered(self, outcome: Success, now: float) -> None:
        """A Success on an executor started after a fault ends that fault's recovery."""
        if not self.pending or outcome.executor_id is None:
            return
        started = self.lifecycle.started.get(outcome.executor_id)
        if started is None:
            return
        still = []
        for when in self.pending:
            if started >= when:
                self.recoveries.append(now - when)
            else:
                still.append(when)
        self.pending = still

    def _lose(self, task: _Task, why: str) -> None:
        self.lost += 1
        self.others.setdefault(task.kind, Counter())["lost"] += 1
        self._example(f"task {task.index} ({task.kind}, {task.request.task}): {why}")

    def _example(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text)


def _values(outcome: Success) -> Any:
    try:
        return outcome.values
    except EncodingError as e:
        return e


def _describe(outcome: Outcome) -> str:
    text = describe_outcome(outcome)
    return text if len(text) <= 120 else text[:117] + "..."


def _nearest_rank(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def make_plan(tasks: int, fault_rate: float, rng: random.Random, free: Sequence[str] = (FREE,)) -> list[str]:
    """The kind of each task: a fault (drawn evenly from :data:`FAULTS`) with probability
    ``fault_rate``, else the fault-free kinds in turn."""
    plan = []
    for index in range(tasks):
        plan.append(rng.choice(FAULTS) if rng.random() < fault_rate else free[index % len(free)])
    return plan


def check_settings(tasks: int, callers: int, slots: int, fault_rate: float, timeout: float) -> None:
    """:raises SoakError: a setting out of range, in one sentence."""
    for name, value in (("tasks", tasks), ("callers", callers), ("slots", slots)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SoakError(f"{name} must be a whole number of at least 1, got {value!r}")
    if isinstance(fault_rate, bool) or not isinstance(fault_rate, int | float) or not 0 <= fault_rate <= 1:
        raise SoakError(f"the fault rate must be a number from 0 to 1, got {fault_rate!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout < math.inf:
        raise SoakError(f"the timeout must be a positive number of seconds, got {timeout!r}")


async def soak(
    package_dir: Path,
    *,
    tasks: int = 100_000,
    callers: int = 16,
    slots: int = 2,
    fault_rate: float = 0.01,
    seed: int | None = None,
    package: str | None = None,
    task: str | None = None,
    inputs: Sequence[Any] = (),
    timeout: float = 60.0,
    start_method: str = "exec",
    progress: Callable[[int, int], None] | None = None,
    metrics: bool = False,
    shm_threshold: int | None = None,
    _inject: Inject | None = None,
) -> SoakSummary:
    """Run the soak (see the module docstring) and return its summary.

    :param package_dir: Holds the bundled ``integration_test_tasks`` (built from this version's
        sources) and, with ``package``, the user's package.
    :param tasks: How many tasks to run.
    :param callers: How many asyncio callers share them.
    :param slots: ``PoolConfig.slots``.
    :param fault_rate: The share of tasks that are faults, from 0 to 1.
    :param seed: Seeds the plan and the tokens (None: a random seed, reported).
    :param package: With ``task`` and ``inputs``: a fault-free task of the user's; half the
        fault-free tasks run it (its values must equal those of its first run), the other half
        echo their token.
    :param timeout: The hard timeout of every task but a ``timeout`` fault, in seconds.
    :param start_method: ``PoolConfig.start_method``.
    :param progress: Called with (tasks done, tasks) every 1,000 tasks.
    :param metrics: ``PoolConfig.metrics``: report the pool to Prometheus (``--metrics-port``).
    :param shm_threshold: ``PoolConfig.shm_threshold``: large inputs and outputs (the ``large``
        faults' 1-4 MiB with a threshold below that) through shared memory.
    :raises SoakError: a bad setting, or a package the soak cannot use (one sentence).
    """
    check_settings(tasks, callers, slots, fault_rate, timeout)
    if (package is None) != (task is None):
        raise SoakError("a task of your own needs both its package and its task name")
    if _inject is not None and _inject not in INJECTIONS:
        raise SoakError(f"unknown injection {_inject!r}; use one of {', '.join(INJECTIONS)}")
    if not (Path(package_dir) / NATIVE / f"lib{NATIVE}.so").is_file():
        raise SoakError(f"{package_dir} has no {NATIVE} package; build it with "
                        f"`spider build-package task_packages/{NATIVE} --out {package_dir}` or omit --package-dir")
    seed = random.SystemRandom().randrange(1 << 32) if seed is None else seed
    rng = random.Random(seed)
    user = None if package is None else ExecuteRequest(package=package, task=task or "", inputs=tuple(inputs))
    plan = make_plan(tasks, fault_rate, rng, (FREE, USER) if user is not None else (FREE,))
    marks = Path(tempfile.mkdtemp(prefix="spider-soak-"))
    lifecycle = _Lifecycle()
    config = PoolConfig(package_dir=package_dir, slots=slots, em_id="soak", start_method=start_method,
                        metrics=metrics, shm_threshold=shm_threshold)
    try:
        pool = ProcessPool(config)
        pool.pm.register(lifecycle, name="spider-soak")
        fds_before, children_before = open_descriptors(), len(child_processes())
        rss_before = resident_bytes()
        started = time.perf_counter()
        run = _Run(pool=pool, plan=plan, rng=rng, timeout=timeout, marks=marks, user=user, inject=_inject,
                   progress=progress, lifecycle=lifecycle)
        leaked = os.open(os.devnull, os.O_RDONLY) if _inject == "leak-fd" else None
        try:
            async with pool:
                await _preflight(run)
                del lifecycle.queue_waits[:]
                lifecycle.finished.clear()
                await asyncio.gather(*(run.caller() for _ in range(callers)))
                for _ in range(3):  # one task per slot at once: a slot that lost its executor serves again
                    await asyncio.gather(*(run.run(run.task(-1, FINAL)) for _ in range(2 * slots)))
                    if not run.pending:
                        break
            seconds = time.perf_counter() - started
            fds_after, children_after = open_descriptors(), len(child_processes())
            rss_after = resident_bytes()
        finally:
            if leaked is not None:
                os.close(leaked)
    finally:
        shutil.rmtree(marks, ignore_errors=True)
    return _summary(run, seed, callers, slots, fault_rate, seconds, fds_before, fds_after, children_before,
                    children_after, rss_before, rss_after)


async def _preflight(run: _Run) -> None:
    """Check, before anything is measured, that the package has the soak's tasks and that the
    user's task succeeds; record its values."""
    mark = run.marks / "preflight"
    outcome = await run.pool.execute(
        ExecuteRequest(package=NATIVE, task="mark_and_sleep", inputs=[str(mark), 0]), run.timeout
    )
    if not isinstance(outcome, Success):
        raise SoakError(f"{run.pool.config.package_dir}/{NATIVE} cannot run the soak's tasks "
                        f"({_describe(outcome)}); rebuild it from this version of spider-core or omit --package-dir")
    if run.user is not None:
        outcome = await run.pool.execute(run.user, run.timeout)
        name = f"{run.user.package}/{run.user.task}"
        if not isinstance(outcome, Success):
            raise SoakError(f"{name} must succeed to serve as the fault-free task, but it ended in {_describe(outcome)}")
        values = _values(outcome)
        if isinstance(values, EncodingError):
            raise SoakError(f"{name} returned outputs that cannot be decoded: {values}")
        run.reference = values


def _summary(run: _Run, seed: int, callers: int, slots: int, fault_rate: float, seconds: float,
             fds_before: int, fds_after: int, children_before: int, children_after: int,
             rss_before: int, rss_after: int) -> SoakSummary:
    lifecycle = run.lifecycle
    kinds = []
    for kind in (FREE, USER, *FAULTS, FINAL):
        if run.counts[kind]:
            kinds.append(KindResult(kind=kind, expected=_DESCRIPTIONS[kind], count=run.counts[kind],
                                    as_expected=run.as_expected[kind], others=dict(run.others.get(kind, {}))))
    # Every killed executor must have been reaped with SIGKILL as its end.
    for pid in run.killed:
        reason, signum = lifecycle.exit_of.get(pid, (None, None))
        if reason != "crash" or signum != signal.SIGKILL:
            run.as_expected["kill"] -= 1
            run.unexpected += 1
            run._example(f"killed executor {pid} was reported as {reason or 'never exiting'} (signal {signum})")
    kinds = [
        KindResult(kind=k.kind, expected=k.expected, count=k.count, as_expected=run.as_expected[k.kind], others=k.others)
        for k in kinds
    ]
    expected_exits = dict(run.replacing)
    expected_exits["shutdown"] = slots
    summary = SoakSummary(
        tasks=len(run.plan), callers=callers, slots=slots, fault_rate=fault_rate, seed=seed, seconds=seconds,
        kinds=tuple(kinds), unexpected=run.unexpected, lost=run.lost, misattributed=run.misattributed,
        fds_before=fds_before, fds_after=fds_after, children_before=children_before, children_after=children_after,
        rss_before=rss_before, rss_after=rss_after, executors_started=len(lifecycle.started),
        respawns=len(lifecycle.started) - slots, expected_respawns=sum(run.replacing.values()),
        exits=dict(lifecycle.exits), expected_exits=expected_exits,
        recoveries=len(run.recoveries), unrecovered=len(run.pending),
        slowest_recovery=max(run.recoveries) if run.recoveries else None,
        longest_queue_wait=max(lifecycle.queue_waits, default=0.0),
        queue_wait_p99=_nearest_rank(lifecycle.queue_waits, 0.99),
        examples=tuple(run.examples), failures=(),
    )
    return evolve(summary, failures=tuple(_failures(summary)))


def _failures(s: SoakSummary) -> Iterator[str]:
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


def run_soak(package_dir: Path, **options: Any) -> SoakSummary:
    """:func:`soak` for callers without an event loop."""
    return asyncio.run(soak(package_dir, **options))


@contextlib.contextmanager
def soak_package_dir(user_dir: Path | None, cache_dir: Path | None = None) -> Iterator[Path]:
    """A package directory with the bundled ``integration_test_tasks``: ``user_dir`` itself
    if it has one, else a temporary directory of links to ``user_dir``'s packages and to the
    bundled package built into the cache (as ``spider demo`` builds it).

    :raises SoakError: the cache cannot be used, or ``user_dir`` cannot be read.
    """
    if user_dir is not None and (user_dir / NATIVE).is_dir():
        yield user_dir
        return
    from spider_core.demo import cache_root, prepare_packages

    try:
        built = prepare_packages(cache_root(cache_dir))
    except (OSError, RuntimeError) as e:
        raise SoakError(f"cannot build the bundled {NATIVE} into the package cache: {_reason(e)}") from None
    if user_dir is None:
        yield built
        return
    combined = Path(tempfile.mkdtemp(prefix="spider-soak-packages-"))
    try:
        try:
            for entry in user_dir.iterdir():
                (combined / entry.name).symlink_to(entry.resolve())
        except OSError as e:
            raise SoakError(f"cannot read package directory {user_dir}: {_reason(e)}") from None
        (combined / NATIVE).symlink_to(built / NATIVE)
        yield combined
    finally:
        shutil.rmtree(combined, ignore_errors=True)


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e)


__all__ = [
    "FAULTS",
    "INJECTIONS",
    "KindResult",
    "SoakError",
    "SoakSummary",
    "run_soak",
    "soak",
    "soak_package_dir",
]
