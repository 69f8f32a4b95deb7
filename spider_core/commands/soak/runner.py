"""How a soak runs: the callers sharing one pool, the kill of an idle executor, the cancel of a
running call, the verdict on each outcome and the recovery after each fault, and the summary
built from what the pool's lifecycle hooks saw."""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import random
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attrs import define, evolve, field

from spider_core.bundled import NATIVE
from spider_core.commands.soak.inject import INJECTIONS, Inject, Injector
from spider_core.commands.soak.plan import (
    DESCRIPTIONS,
    FAULTS,
    FINAL,
    FREE,
    REPLACING,
    TIMEOUT_FAULT,
    USER,
    WAIT,
    SoakError,
    Task,
    check_settings,
    make_plan,
    plan_task,
)
from spider_core.commands.soak.probes import child_processes, open_descriptors, process_stat, resident_bytes
from spider_core.commands.soak.summary import KindResult, SoakSummary, failures, nearest_rank
from spider_core.models import ExecuteRequest, ExecutorCrash, InTaskFailure, Outcome, PoolConfig, Success, Timeout
from spider_core.plugin import hookimpl
from spider_core.pool import ProcessPool
from spider_core.tdl import EncodingError, TaskError, TdlErrorKind
from spider_core.testing import describe_outcome


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
class _Run:
    pool: ProcessPool
    plan: list[str]
    rng: random.Random
    timeout: float
    marks: Path
    user: ExecuteRequest | None
    inject: Injector
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

    def task(self, index: int, kind: str) -> Task:
        return plan_task(index, kind, rng=self.rng, timeout=self.timeout, marks=self.marks, user=self.user,
                         reference=self.reference)

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

    async def run(self, task: Task) -> None:
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
        if self.inject.drops(task.kind == FREE):
            self._lose(task, "the outcome was dropped on purpose (injected)")
            return
        self.record(task, outcome)

    def record(self, task: Task, outcome: Outcome) -> None:
        finished = self.lifecycle.finished.pop(id(task.request), None)
        now = time.perf_counter()
        outcome = self.inject.outcome(task.kind == FREE, outcome)
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
                          f"{DESCRIPTIONS[task.kind]}, got {_describe(outcome)}")
        if isinstance(outcome, Success):
            self._recovered(outcome, now)
        elif task.kind in REPLACING and finished is not None:
            taken = finished[1]
            self._fault(task.kind, taken + TIMEOUT_FAULT if task.kind == "timeout" else taken)

    def _verdict(self, task: Task, outcome: Outcome) -> str:
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

    async def _cancel_in_flight(self, task: Task) -> None:
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
        self.replacing[REPLACING[kind]] += 1
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

    def _lose(self, task: Task, why: str) -> None:
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
    """Run the soak (see :mod:`spider_core.commands.soak`) and return its summary.

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
        inject = Injector(_inject)
        run = _Run(pool=pool, plan=plan, rng=rng, timeout=timeout, marks=marks, user=user, inject=inject,
                   progress=progress, lifecycle=lifecycle)
        with inject.leak():
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
            kinds.append(KindResult(kind=kind, expected=DESCRIPTIONS[kind], count=run.counts[kind],
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
        queue_wait_p99=nearest_rank(lifecycle.queue_waits, 0.99),
        examples=tuple(run.examples), failures=(),
    )
    return evolve(summary, failures=tuple(failures(summary)))


def run_soak(package_dir: Path, **options: Any) -> SoakSummary:
    """:func:`soak` for callers without an event loop."""
    return asyncio.run(soak(package_dir, **options))
