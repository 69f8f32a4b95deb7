"""``ProcessPool``: one supervised executor process behind a lock, for asyncio callers.

Callers queue on one ``asyncio.Lock`` held for the whole call. The hard-timeout clock starts
when the caller holds the lock. On a timeout, a crash, a protocol violation or a cancelled
caller, the executor is SIGKILLed, reaped and replaced inside the same critical section, so
the next caller finds a healthy executor and no response is ever read by the wrong caller
(every request carries a sequence number the response must echo).

The framing is resolved through its hook when the pool starts, the launcher and the respawn
policy at each spawn (:mod:`spider_core.pool.supervisor`); never per task.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

from spider_core.errors import EncodeTaskInputs, ExecutorCreationFailure, NotRunning
from spider_core.models import ExecuteRequest, ExecutorCrash, InTaskFailure, Outcome, PoolConfig, Success, Timeout
from spider_core.plugin import PluginError, PluginSettings, SpiderPluginManager, get_plugin_manager
from spider_core.pool.events import Events
from spider_core.pool.process import EXIT_GRACE, ExecutorProcess, Lost
from spider_core.pool.requests import RequestEncoder
from spider_core.pool.supervisor import TIMED_OUT, Supervisor
from spider_core.protocol import EXECUTE_SEQ, FramingError, ProtocolError, decode_result, result_fields
from spider_core.tdl import EncodingError, ExecutorError

logger = logging.getLogger("spider_core.pool")


class _Deadline:
    """The hard timeout of the call in flight, on one long-lived loop timer.

    A timer per call costs a handle, a heap push and a cancellation. Here the timer stays
    armed at some deadline; when it fires early (the call it was set for is over and a later
    call is running) it moves itself to that call's deadline. With a steady ``hard_timeout``
    that is one timer per ``hard_timeout`` seconds, not one per call.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiter: asyncio.Future | None = None
        self.deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, waiter: asyncio.Future, deadline: float) -> None:
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
    """A single-slot pool: one executor process, calls served one at a time.

    Use ``async with ProcessPool(config) as pool`` (spawns the first executor and waits for
    it to be ready; closes it on exit), then ``await pool.execute(request, hard_timeout=...)``.
    """

    def __init__(self, config: PoolConfig, *, plugin_manager: SpiderPluginManager | None = None) -> None:
        if not isinstance(config, PoolConfig):
            raise TypeError(f"config must be a PoolConfig, got {type(config).__name__}")
        self.config = config
        self.pm = plugin_manager or get_plugin_manager(
            PluginSettings.from_env(blocked=config.disabled_plugins), autoload=config.plugin_autoload
        )
        self._lock = asyncio.Lock()
        self._supervisor: Supervisor | None = None  # made by start(), on the running loop
        self._events: Events | None = None
        self._requests = RequestEncoder()
        self._close_task: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = 0
        self._started = False
        self._closed = False
        self._spin_ns = config.spin_us * 1000

    # -- introspection

    @property
    def _current(self) -> ExecutorProcess | None:
        return self._supervisor.current if self._supervisor else None

    @property
    def executor_id(self) -> int | None:
        """The current executor's id, or None if there is none."""
        executor = self._current
        return executor.id if executor else None

    @property
    def pid(self) -> int | None:
        executor = self._current
        return executor.pid if executor else None

    @property
    def log_path(self) -> Path | None:
        """The current executor's log file (None when logs go to ``logging``)."""
        executor = self._current
        return executor.sink.path if executor else None

    def log_path_for(self, executor_id: int) -> Path | None:
        """Where executor ``executor_id`` logs: ``<log_dir>/<em_id>-<executor_id>.log``."""
        if self.config.log_dir is None:
            return None
        return self.config.log_dir / f"{self.config.em_id}-{executor_id}.log"

    # -- lifecycle

    async def __aenter__(self) -> ProcessPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Spawn the first executor and wait for its ``Ready``.

        :raises ExecutorCreationFailure: it could not be started.
        """
        if self._closed:
            raise NotRunning("the pool is closed")
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._deadline = _Deadline(self._loop)
        try:
            framing = self.pm.call_required("spider_framing", max_frame_size=self.config.max_frame_size)
            for hook in ("spider_launcher", "spider_respawn_decision"):
                self.pm.require(hook)
        except PluginError as e:
            raise ExecutorCreationFailure(str(e)) from None
        except Exception as e:  # a plugin's bug
            raise ExecutorCreationFailure(f"the spider_framing hook failed: {type(e).__name__}: {e}") from None
        self._events = Events(self.pm)
        self._supervisor = Supervisor(self.config, self.pm, self._loop, framing, self._events)
        async with self._lock:
            await self._supervisor.spawn("start")
        self._started = True

    async def close(self) -> None:
        """Wait for the call in progress, refuse new ones, and stop the executor: ``Shutdown``,
        then SIGTERM, then SIGKILL, each after ``shutdown_grace`` seconds. Idempotent."""
        if self._close_task is None:
            self._closed = True
            if self._supervisor is not None:
                self._supervisor.closed = True  # the call in progress starts no standby
            self._close_task = asyncio.ensure_future(self._shutdown())
        # Shielded: a caller that stops waiting does not stop the shutdown.
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        supervisor = self._supervisor
        if supervisor is None:
            return
        await supervisor.cancel_standby()
        async with self._lock:
            await supervisor.stop_all()

    # -- execute

    async def execute(self, request: ExecuteRequest, hard_timeout: float) -> Outcome:
        """Run one task; return its outcome.

        :raises InternalError: the pool could not serve the call (``NotRunning``,
            ``ExecutorCreationFailure``, ``InvalidRequest``, ``EncodeTaskInputs``,
            ``EncodeTaskContext``, ``BuildTaskContext``).
        """
        queued = time.perf_counter()
        message = self._requests.prepare(request, hard_timeout)
        async with self._lock:
            locked = time.perf_counter()
            if self._closed or not self._started:
                raise NotRunning("the pool is closed" if self._closed else "the pool is not started; use `async with` or start()")
            supervisor = self._supervisor
            executor = supervisor.current
            if executor is None or not executor.alive:
                executor = await supervisor.replace_dead()
            self._seq += 1
            message[EXECUTE_SEQ] = seq = self._seq
            try:
                frame = executor.encode(message)
            except FramingError as e:
                raise EncodeTaskInputs(f"cannot send the request: {e}") from None
            waiter = executor.expect()
            deadline = self._loop.time() + hard_timeout
            executor.send(frame)
            if self._spin_ns and executor.poll(min(self._spin_ns, int(min(hard_timeout, 1.0) * 1e9))):
                reply = waiter.result()  # answered while we spun: no timer, no loop iteration
            else:
                self._deadline.arm(waiter, deadline)
                try:
                    reply = await waiter
                except asyncio.CancelledError:
                    self._deadline.disarm()
                    executor.signal(signal.SIGKILL)  # before anything else: its answer is void
                    await supervisor.replace(executor, "cancelled")
                    raise
                self._deadline.disarm()
            fields = result_fields(reply)
            if fields is not None and fields[0] == seq and fields[1] and executor.recycle_after is None:
                executor.tasks_run += 1  # the usual answer, a Success, inline
                outcome: Outcome = Success(outputs=fields[2], elapsed_us=fields[3], executor_id=executor.id)
            else:
                outcome = await self._outcome(executor, seq, reply, hard_timeout)
        events = self._events
        if events.wants_task_finished:
            events.task_finished(request, outcome, executor.id, locked - queued, time.perf_counter() - locked)
        return outcome

    async def _outcome(self, executor: ExecutorProcess, seq: int, reply: Any, hard_timeout: float) -> Outcome:
        """Every answer but a plain Success: a timeout, a lost channel, a failure, a protocol
        violation, or a Success that ends the executor's share of tasks."""
        supervisor = self._supervisor
        if reply is TIMED_OUT:
            executor.signal(signal.SIGKILL)
            await supervisor.replace(executor, "timeout")
            return Timeout(hard_timeout=hard_timeout, executor_id=executor.id)
        if isinstance(reply, Lost):
            return await self._crash(executor, reply.reason, grace=EXIT_GRACE)
        try:
            _, ok, payload, elapsed_us = decode_result(reply, seq)
        except ProtocolError as e:
            return await self._crash(executor, str(e))
        executor.tasks_run += 1
        if ok:
            outcome: Outcome = Success(outputs=payload, elapsed_us=elapsed_us, executor_id=executor.id)
        else:
            try:
                error = ExecutorError.decode(payload)
            except EncodingError as e:
                return await self._crash(executor, f"the executor sent an undecodable error: {e}")
            outcome = InTaskFailure(error=error, elapsed_us=elapsed_us, executor_id=executor.id)
        if executor.recycle_after is not None and executor.tasks_run >= executor.recycle_after:
            await supervisor.recycle(executor)
        return outcome

    async def _crash(self, executor: ExecutorProcess, reason: str, grace: float = 0.0) -> ExecutorCrash:
        supervisor = self._supervisor
        status, signum = await supervisor.retire(executor, "crash", grace)
        logger.warning(
            "executor %d (pid %d) crashed: %s (exit status %s, signal %s)",
            executor.id, executor.pid, reason, status, signum,
        )
        await supervisor.respawn("crash")
        return ExecutorCrash(exit_status=status, signal=signum, executor_id=executor.id)
