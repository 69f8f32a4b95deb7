"""``ProcessPool``: supervised executor processes, one per slot, for asyncio callers.

Callers queue first come, first served for a slot (:mod:`spider_core.pool.slots`); while
every slot is busy, the requests of queued callers are sent ahead to an executor and each
caller holds the slot in turn, for its own answer (:mod:`spider_core.pool.pipeline`). The
hard-timeout clock starts when the executor starts the request. On a timeout, a crash, a protocol violation or a cancelled caller, that slot's executor is
SIGKILLed, reaped and replaced before the slot is given back, so the next caller finds a
healthy executor and no response is ever read by the wrong caller (every request carries a
sequence number the response must echo; a protocol without one answers the slot's single
request in flight). The other slots carry on undisturbed.

The protocol (``PoolConfig.protocol``: spider-core's own over the ``spider_framing`` hook's
framing, or a plugin's from the ``spider_protocol`` hook, :mod:`spider_core.pool.protocols`) is
resolved when the pool starts, the launcher and the respawn policy at each spawn
(:mod:`spider_core.pool.supervisor`); never per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import stat
import weakref
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from spider_core.errors import ExecutorCreationFailure, NotRunning
from spider_core.models import ExecuteRequest, Outcome, PoolConfig, PoolStats
from spider_core.plugin import Spawner
from spider_core.plugin.manager import PluginError, PluginSettings, SpiderPluginManager, get_plugin_manager
from spider_core.pool.channel import TIMED_OUT
from spider_core.pool.events import Events
from spider_core.pool.guard import Guard
from spider_core.pool.mapping import pipelined_map
from spider_core.pool.pipeline import Calls
from spider_core.pool.process import ExecutorProcess
from spider_core.pool.protocols import open_protocol, open_spawner
from spider_core.pool.slots import Slots
from spider_core.pool.stats import Tally
from spider_core.pool.supervisor import Supervisor

logger = logging.getLogger("spider_core.pool")

#: Every pool of this process, so that a forked child can let go of them (:func:`_after_fork`).
_pools: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


def _after_fork() -> None:
    """In a forked child: every pool belongs to the parent (:meth:`ProcessPool._forsake`)."""
    for pool in list(_pools):
        pool._forsake()


os.register_at_fork(after_in_child=_after_fork)


def _check_package_dir(path: Path | None) -> None:
    """:raises ExecutorCreationFailure: ``path`` is not a directory the pool can use (None,
    no package directory, is fine)."""
    if path is None:
        return
    try:
        if stat.S_ISDIR(os.stat(path).st_mode):
            return
        problem = "is not a directory"
    except FileNotFoundError:
        problem = "does not exist"
    except OSError as e:
        problem = f"cannot be read ({e.strerror})"
    raise ExecutorCreationFailure(f"cannot start the pool: its package_dir {path} {problem}")


class _Deadline:
    """The hard timeout of the call in flight, on one long-lived loop timer.

    A timer per call costs a handle, a heap push and a cancellation. Here the timer stays
    armed at some deadline; when it fires early (the call it was set for is over and a later
    call is running) it moves itself to that call's deadline. With a steady ``hard_timeout``
    that is one timer per ``hard_timeout`` seconds, not one per call.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[Any] | None = None
        self.deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, waiter: asyncio.Future[Any], deadline: float) -> None:
        self.waiter = waiter
        self.deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._fire)

    def disarm(self) -> None:
        self.waiter = None

    def _fire(self) -> None:
        self._timer = None
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.loop.time() >= self.deadline:
            waiter.set_result(TIMED_OUT)
        else:
            self._timer = self.loop.call_at(self.deadline, self._fire)


class ProcessPool:
    """Supervised executor processes, ``PoolConfig.slots`` of them, serving calls in order.

    Use ``async with ProcessPool(config) as pool`` (spawns the executors and waits for them to
    be ready; closes them on exit), then ``await pool.execute(request, hard_timeout=...)``,
    ``await pool.call(package, task, *inputs)`` or ``async for outcome in pool.map(requests)``.
    """

    def __init__(self, config: PoolConfig, *, plugin_manager: SpiderPluginManager | None = None) -> None:
        if not isinstance(config, PoolConfig):
            raise TypeError(f"config must be a PoolConfig, got {type(config).__name__}")
        self.config = config
        self.pm = plugin_manager or get_plugin_manager(
            PluginSettings.from_env(blocked=config.disabled_plugins), autoload=config.plugin_autoload
        )
        self._slots: Slots | None = None  # made by start(), on the running loop
        #: The call path every entry point takes (:mod:`spider_core.pool.pipeline`).
        self.calls = Calls(config)
        self._close_task: asyncio.Future[None] | None = None
        self._starting: asyncio.Future[None] | None = None  # while start() spawns the executors
        self._guard: Guard | None = None
        self._supervisors: list[Supervisor] = []  # made by start()
        self._spawner: Spawner | None = None
        self._events: Events | None = None  # made by start()
        self._started = False
        self._closed = False
        self._owner = os.getpid()
        _pools.add(self)

    # -- introspection

    @property
    def _current(self) -> ExecutorProcess | None:
        return self._slots.all[0].current if self._slots else None

    @property
    def executor_id(self) -> int | None:
        """The id of the first slot's executor, or None if it has none."""
        executor = self._current
        return executor.id if executor else None

    @property
    def executor_ids(self) -> tuple[int | None, ...]:
        """Each slot's executor id (None for a slot without one)."""
        if self._slots is None:
            return ()
        return tuple(slot.current.id if slot.current else None for slot in self._slots.all)

    @property
    def pid(self) -> int | None:
        """The process id of the first slot's executor."""
        executor = self._current
        return executor.pid if executor else None

    @property
    def pids(self) -> tuple[int | None, ...]:
        """Each slot's executor process id (None for a slot without one)."""
        if self._slots is None:
            return ()
        return tuple(slot.current.pid if slot.current else None for slot in self._slots.all)

    @property
    def log_path(self) -> Path | None:
        """The first slot's executor's log file (None when logs go to ``logging``)."""
        executor = self._current
        return executor.sink.path if executor else None

    def log_path_for(self, executor_id: int) -> Path | None:
        """Where executor ``executor_id`` logs: ``<log_dir>/<em_id>-<executor_id>.log``."""
        if self.config.log_dir is None:
            return None
        return self.config.log_dir / f"{self.config.em_id}-{executor_id}.log"

    def stats(self) -> PoolStats:
        """A snapshot of the pool now: slots busy and calls queued, outcomes and respawns so
        far, and each executor's state, tasks run and resident memory (read from
        ``/proc/PID/statm``; nothing is asked of the executors). Cheap, from any thread; before
        ``start()``, every count is 0 and there are no executors."""
        events, slots = self._events, self._slots
        tally = events.tally if events is not None else Tally()
        if slots is None:
            return tally.snapshot(self.config.slots, 0, 0, ())
        return tally.snapshot(self.config.slots, slots.busy, slots.queued, slots.executors())

    # -- lifecycle

    async def __aenter__(self) -> ProcessPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Spawn an executor per slot and wait until they are ready. A slot that cannot
        start is logged and retried as the respawn policy allows, while the others serve.

        :raises ExecutorCreationFailure: ``PoolConfig.package_dir`` is not a directory (no
            executor is spawned), or no slot could start an executor.
        """
        if self.calls.foreign is not None:
            raise NotRunning(self.calls.foreign)
        if self._closed:
            raise NotRunning("the pool is closed")
        if self._started:
            return
        _check_package_dir(self.config.package_dir)
        loop = asyncio.get_running_loop()
        protocols = [open_protocol(self.pm, self.config) for _ in range(self.config.slots)]
        try:
            for hook in ("spider_launcher", "spider_spawner", "spider_respawn_decision"):
                self.pm.require(hook)
        except PluginError as e:
            raise ExecutorCreationFailure(str(e)) from None
        spawner = open_spawner(self.pm, self.config)
        events = self._events = Events(self.pm, self)
        try:
            guard = Guard()
        except OSError as e:
            spawner.close()
            raise ExecutorCreationFailure(f"cannot start the pool's guard process: {e.strerror or e}") from None
        self._guard = guard
        ids = itertools.count(1)  # executor ids are unique across the pool's slots
        supervisors = self._supervisors = [
            Supervisor(
                self.config, self.pm, loop, protocol, events, ids, index, self.calls.direct, guard, spawner=spawner
            )
            for index, protocol in enumerate(protocols)
        ]
        for supervisor in supervisors:
            supervisor.deadline = _Deadline(loop)
        self._starting = loop.create_future()
        try:
            try:
                results = await asyncio.gather(*(s.spawn("start") for s in supervisors), return_exceptions=True)
                if self._closed:  # close() came while the executors started: it waits for this
                    await asyncio.gather(*(s.cancel_standby() for s in supervisors))
                    await asyncio.gather(*(s.stop_all() for s in supervisors))
                    raise NotRunning("the pool was closed while it started")
            finally:
                self._starting.set_result(None)
            failures = []
            for supervisor, result in zip(supervisors, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, Exception):
                        raise result
                    failures.append((supervisor, result))
            if len(failures) == len(supervisors):
                raise failures[0][1]
        except BaseException:
            spawner.close()  # no executor is left (a failed spawn reaps what it started)
            guard.close()
            self._guard = None
            self._supervisors = []
            raise
        self._spawner = spawner
        for supervisor, error in failures:
            logger.warning("slot %d could not start an executor (it will retry): %s", supervisor.index, error)
        slots = Slots(loop, supervisors)
        slots.recover_failed()
        self._slots = slots
        self.calls.open(loop, slots, events)
        self._started = True
        events.pool_started()

    async def close(self) -> None:
        """Let the calls in progress finish, refuse new and queued ones, and stop every
        executor: ``Shutdown``, then SIGTERM, then SIGKILL, each after ``shutdown_grace``
        seconds. Idempotent. In a forked child it does nothing: the child let go of the
        parent's pool when it was forked."""
        if self.calls.foreign is not None:
            self._closed = True
            return
        if self._close_task is None:
            self._closed = self.calls.closed = True
            if self._slots is not None:
                self._slots.close()
                for supervisor in self._slots.all:
                    supervisor.closed = True  # the calls in progress start no standby
            self._close_task = asyncio.ensure_future(self._shutdown())
        # Shielded: a caller that stops waiting does not stop the shutdown.
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        if self._starting is not None:
            await asyncio.shield(self._starting)  # start() stops what it spawned
        slots = self._slots
        if slots is None:
            return
        await asyncio.gather(*(s.cancel_standby() for s in slots.all))
        await slots.wait_all_free()
        await asyncio.gather(*(s.stop_all() for s in slots.all))
        if self._spawner is not None:
            self._spawner.close()
        if self._guard is not None:
            self._guard.close()
        self._events.pool_closed()  # type: ignore[union-attr]  # set with self._slots

    def _forsake(self) -> None:
        """In a forked child: the pool belongs to the parent, which goes on using it. Close the
        child's copies of its descriptors (the executors' pipes and pidfds, the guard's pipe)
        without a word to any process and without touching the event loop, whose epoll
        instance the child shares with the parent; every call then raises ``NotRunning``."""
        self.calls.foreign = f"this pool belongs to process {self._owner}; create a pool in the child"
        for supervisor in self._supervisors:
            supervisor.forsake()
        if self._guard is not None:
            self._guard.forsake()

    # -- execute

    async def execute(
        self, request: ExecuteRequest, hard_timeout: float | None = None, *, soft_timeout: float | None = None
    ) -> Outcome:
        """Run one task; return its outcome.

        :param hard_timeout: Seconds the task may run once its executor starts it; then the
            executor is killed and the outcome is a ``Timeout``. None: ``PoolConfig.default_timeout``.
        :param soft_timeout: Seconds after which a Python task gets ``SoftTimeout`` raised
            inside it (it may catch it, clean up and return); native tasks are not
            interrupted. None: no soft timeout.
        :raises InternalError: the pool could not serve the call (``NotRunning``,
            ``ExecutorCreationFailure``, ``InvalidRequest``, ``EncodeTaskInputs``,
            ``EncodeTaskContext``, ``BuildTaskContext``).
        """
        calls = self.calls
        return await calls.execute(calls.prepare(request, hard_timeout, soft_timeout))

    async def call(
        self, package: str, task: str, *inputs: Any, hard_timeout: float | None = None, soft_timeout: float | None = None
    ) -> list[Any]:
        """Run ``task`` of ``package`` on ``inputs`` and return its output values.

        :raises OutcomeError: the task failed (``TaskFailed``), timed out (``TaskTimedOut``)
            or crashed its executor (``ExecutorCrashed``); ``.outcome`` has the details.
        :raises InternalError: as :meth:`execute`.
        :raises spider_core.tdl.WireFormatError: the task succeeded but returned bytes that
            are not the wire format (see ``Success.values``).
        """
        request = ExecuteRequest(package=package, task=task, inputs=inputs)
        return (await self.execute(request, hard_timeout, soft_timeout=soft_timeout)).unwrap()

    async def map(
        self, requests: Iterable[ExecuteRequest], hard_timeout: float | None = None, *, soft_timeout: float | None = None
    ) -> AsyncIterator[Outcome]:
        """The outcomes of ``requests``, in request order, running up to ``slots`` at once.

        Requests are read as the iteration goes; an ``InternalError`` of one request is
        raised at its place. Each slot's executor gets several requests in one write and runs
        them in order; a request's hard timeout counts from when the executor starts it, and
        the requests an executor had not started when it timed out or crashed run on its
        successor (:mod:`spider_core.pool.mapping`). Leaving the loop early cancels the
        requests still running.
        """
        calls = self.calls
        hard_timeout = calls.hard_timeout(hard_timeout)
        depth = calls.depth()
        async with contextlib.aclosing(pipelined_map(calls, requests, hard_timeout, soft_timeout, depth)) as outcomes:
            async for outcome in outcomes:
                yield outcome
