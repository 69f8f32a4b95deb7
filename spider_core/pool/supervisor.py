"""Spawn, standby and respawn: the executor processes behind one slot of the pool.

A :class:`Supervisor` is one slot. It owns the executor in use and, with ``PoolConfig.standby``, a second,
idle one ready to take over. It asks the ``spider_respawn_decision`` hook before every spawn
and the ``spider_launcher`` hook what to start, has the pool's spawner (the ``spider_spawner``
hook's) start it, waits for its greeting (``Ready``;
none for a protocol without a handshake), counts spawn failures for the back-off, and reaps
every process it retires. It never decides what a call's
outcome is; the pool does, and tells it which executor to retire and why. The pool hands a
slot to one caller at a time (``busy``), and only that caller drives it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from spider_core.errors import ExecutorCreationFailure, InternalError, NotRunning
from spider_core.models import PoolConfig
from spider_core.plugin import ExitReason, RespawnDecision, RespawnState, Spawner, SpawnReason
from spider_core.plugin.manager import PluginError, SpiderPluginManager
from spider_core.pool.channel import TIMED_OUT, Lost
from spider_core.pool.events import Events
from spider_core.pool.guard import Guard
from spider_core.pool.logsink import LogSink
from spider_core.pool.process import EXIT_GRACE, ExecutorProcess
from spider_core.protocol import ExecutorProtocol, ProtocolError, executor_environment
from spider_core.spin import AdaptiveSpin

logger = logging.getLogger("spider_core.pool")

#: Seconds a standby that took over waits before its own successor is spawned: the call after
#: a fault then runs without a process start competing for the loop and the CPU.
STANDBY_DELAY = 0.05


def expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(TIMED_OUT)


class Supervisor:
    """One slot: the executor in use, its standby, and how both are started and retired."""

    def __init__(
        self,
        config: PoolConfig,
        pm: SpiderPluginManager,
        loop: asyncio.AbstractEventLoop,
        protocol: ExecutorProtocol,
        events: Events,
        ids: Iterator[int] | None = None,
        index: int = 0,
        direct: bool = False,
        guard: Guard | None = None,
        *,
        spawner: Spawner,
    ) -> None:
        self.config = config
        self.pm = pm
        self.loop = loop
        #: What the pool speaks with this slot's executors (one object per slot).
        self.protocol = protocol
        self.events = events
        #: The executor that serves calls, or None (none started yet, or a spawn failed).
        self.current: ExecutorProcess | None = None
        #: A ready, idle executor that takes over at the next spawn (``PoolConfig.standby``).
        self.standby: ExecutorProcess | None = None
        #: Set when the pool closes: no standby is started any more.
        self.closed = False
        #: The hard-timeout clock of this slot's calls (set by the pool).
        self.deadline: Any = None
        #: This slot's number in the pool, from 0.
        self.index = index
        #: Whether callers drive the executors' protocol channel from their own threads (the
        #: sync pool): each is detached from the loop once ready.
        self.direct = direct
        #: Kills what tasks leave running if the pool dies without closing.
        self.guard = guard
        #: Starts the processes: the pool's, from the ``spider_spawner`` hook.
        self.spawner = spawner
        #: How long callers poll for an answer before they block (``PoolConfig.spin_us``).
        self.spin = AdaptiveSpin(config.spin_us)
        #: Whether a caller holds this slot.
        self.busy = False
        #: Whether the last attempt to start an executor here failed or was refused by the
        #: respawn policy (then callers prefer other slots).
        self.failed = False
        self._standby_task: asyncio.Task[None] | None = None
        self._ids = ids if ids is not None else itertools.count(1)
        self._failures = 0
        self._last_failure: float | None = None

    @property
    def healthy(self) -> bool:
        """Whether this slot has a live executor."""
        executor = self.current
        return executor is not None and executor.alive

    def retry_at(self) -> float | None:
        """When this failed slot may try again in the background (``time.monotonic()``): the
        policy's ``retry_at`` if it refuses now, ``backoff_initial`` from now if it allows it
        now (so that a policy that always allows cannot make a busy loop of failing spawns);
        None if it refuses without saying when."""
        try:
            decision = self._decide("retry")
        except NotRunning:
            return None
        if decision.spawn:
            return time.monotonic() + self.config.backoff_initial
        return decision.retry_at

    def log_path_for(self, executor_id: int) -> Path | None:
        if self.config.log_dir is None:
            return None
        return self.config.log_dir / f"{self.config.em_id}-{executor_id}.log"

    async def answer(self, executor: ExecutorProcess, waiter: asyncio.Future[Any], deadline: float) -> Any:
        """Wait for ``executor``'s answer (``waiter``, from ``expect()``) until ``deadline``
        (the loop's clock): the message, :class:`Lost` or :data:`TIMED_OUT`. A caller cancelled
        meanwhile kills and replaces the executor before the cancellation goes on: its answer
        would be read by nobody."""
        if waiter.done():
            return waiter.result()
        clock = self.deadline
        clock.arm(waiter, deadline)
        try:
            reply = await waiter
        except asyncio.CancelledError:
            clock.disarm()
            executor.signal(signal.SIGKILL)  # before anything else: its answer is void
            await self.replace(executor, "cancelled")
            raise
        clock.disarm()
        return reply

    # -- retiring

    async def retire(self, executor: ExecutorProcess, reason: ExitReason, grace: float = 0.0) -> tuple[int | None, int | None]:
        """Forget ``executor``; give it ``grace`` seconds to exit, SIGKILL and reap it."""
        if self.current is executor:
            self.current = None
        status, signum = await executor.reap(grace)
        self.events.executor_exited(executor.id, executor.pid, reason, status, signum)
        return status, signum

    async def replace(self, executor: ExecutorProcess, reason: Literal["timeout", "crash", "cancelled"]) -> None:
        """Kill and reap ``executor``, then spawn its successor (per policy)."""
        await self.retire(executor, reason)
        await self.respawn(reason)

    async def recycle(self, executor: ExecutorProcess, reason: Literal["recycle", "memory"] = "recycle") -> None:
        """Ask ``executor`` to exit (it ran its share of tasks, or holds too much memory) and
        spawn its successor."""
        executor.send(self.protocol.encode_shutdown(), replies=0)
        await self.retire(executor, reason, self.config.shutdown_grace)
        await self.respawn(reason)

    async def stop(self, executor: ExecutorProcess) -> None:
        """Stop ``executor`` gracefully: ``Shutdown``, then SIGTERM, then SIGKILL, each after
        ``shutdown_grace`` seconds."""
        grace = self.config.shutdown_grace
        if executor.alive:
            executor.send(self.protocol.encode_shutdown(), replies=0)
            if not await executor.wait_exit(grace):
                executor.signal(signal.SIGTERM)
                await executor.wait_exit(grace)
        await self.retire(executor, "shutdown")

    async def cancel_standby(self) -> None:
        """Start no more standbys; stop the one being prepared, if any."""
        self.closed = True
        task = self._standby_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop_all(self) -> None:
        """Stop the executor in use and the standby (after :meth:`cancel_standby`)."""
        for executor in (self.current, self.standby):
            if executor is not None:
                await self.stop(executor)
        self.standby = None
        close = getattr(self.protocol, "close", None)
        if close is not None:  # no executor of this slot reads what the protocol holds any more
            close()

    def forsake(self) -> None:
        """In a forked child: close the child's copies of this slot's executors' descriptors
        (see ``ProcessPool._forsake``)."""
        for executor in (self.current, self.standby):
            if executor is not None:
                executor.forsake()

    # -- spawning

    async def replace_dead(self) -> ExecutorProcess:
        """A call found no live executor (it died while idle, or spawning failed before)."""
        executor = self.current
        if executor is not None:
            logger.warning("executor %d (pid %d) died while idle: %s", executor.id, executor.pid, executor.lost)
            await self.retire(executor, "crash", EXIT_GRACE)
        return await self.spawn("retry" if executor is None else "crash")

    async def respawn(self, reason: SpawnReason) -> None:
        """Spawn a successor now if the policy allows; a failure is left for the next call."""
        try:
            await self.spawn(reason)
        except InternalError as e:
            logger.warning("could not replace the executor after %s: %s", reason, e)

    async def spawn(self, reason: SpawnReason) -> ExecutorProcess:
        """Make a ready executor the current one: the standby if there is a live one, else a
        new process; then start preparing the next standby."""
        executor, self.standby = self.standby, None
        if executor is not None and not executor.alive:
            await self.retire(executor, "crash", EXIT_GRACE)
            executor = None
        delay = STANDBY_DELAY if executor is not None else 0.0
        if executor is None:
            try:
                executor = await self._start_executor(reason)
            except InternalError:
                self.failed = True
                raise
        self.failed = False
        self.current = executor
        self._want_standby(delay)
        return executor

    def _want_standby(self, delay: float = 0.0) -> None:
        if self.config.standby and not self.closed and self.standby is None and (
            self._standby_task is None or self._standby_task.done()
        ):
            self._standby_task = self.loop.create_task(self._prepare_standby(delay))

    async def _prepare_standby(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        try:
            standby = await self._start_executor("standby")
        except Exception as e:  # a standby is an optimisation: never let it break the pool
            logger.warning("could not start a standby executor: %s", e)
            return
        if self.closed:
            await self.stop(standby)
        else:
            self.standby = standby

    def _decide(self, reason: SpawnReason) -> RespawnDecision:
        state = RespawnState(
            reason=reason,
            consecutive_failures=self._failures,
            last_failure=self._last_failure,
            now=time.monotonic(),
        )
        try:
            decision: RespawnDecision = self.pm.call_required("spider_respawn_decision", config=self.config, state=state)
            return decision
        except PluginError as e:
            raise NotRunning(str(e)) from None
        except Exception as e:  # a plugin's bug
            raise NotRunning(f"the spider_respawn_decision hook failed: {type(e).__name__}: {e}") from None

    async def _start_executor(self, reason: SpawnReason) -> ExecutorProcess:
        """Spawn an executor (as the respawn policy allows) and wait until it is ready.

        A standby's failures do not count toward the back-off of the executor in use.
        """
        counted = reason != "standby"
        decision = self._decide(reason)
        if not decision.spawn:
            raise NotRunning(f"no executor is running: {decision.message}")
        executor_id = next(self._ids)
        try:
            spec = self.pm.call_required(
                "spider_launcher", config=self.config, executor_id=executor_id, env=self._environment()
            )
        except PluginError as e:
            raise self._spawn_failed(str(e), counted) from None
        except Exception as e:  # a plugin's bug
            raise self._spawn_failed(f"the spider_launcher hook failed: {type(e).__name__}: {e}", counted) from None
        sink = LogSink(executor_id, self.config.max_log_line_bytes, self.log_path_for(executor_id))
        try:
            handle = self.spawner.spawn(executor_id, spec)
        except PluginError as e:
            sink.close()
            raise self._spawn_failed(str(e), counted) from None
        except OSError as e:
            sink.close()
            raise self._spawn_failed(f"cannot start executor command {spec.argv[0]!r}: {e.strerror or e}", counted) from None
        except Exception as e:  # a plugin's bug
            sink.close()
            raise self._spawn_failed(f"the spider_spawner's spawner failed: {type(e).__name__}: {e}", counted) from None
        try:
            executor = ExecutorProcess(self.loop, executor_id, handle, self.protocol, sink, self.guard)
        except OSError as e:  # e.g. no descriptor left for its pidfd
            os.kill(handle.pid, signal.SIGKILL)
            handle.wait()
            handle.close()
            sink.close()
            raise self._spawn_failed(f"cannot supervise executor {executor_id}: {e}", counted) from None
        if self.protocol.handshake:
            waiter = executor.expect()
            timer = self.loop.call_later(self.config.spawn_timeout, expire, waiter)
            try:
                hello = await waiter
            except asyncio.CancelledError:
                await executor.reap()
                raise
            finally:
                timer.cancel()
            problem = self._check_ready(hello)
        else:  # no greeting: it serves as soon as it runs
            hello, problem = None, None
        if problem is not None:
            status, signum = await executor.reap(EXIT_GRACE if isinstance(hello, Lost) else 0.0)
            ended = f"exit status {status}" if status is not None else f"signal {signum}"
            detail = f"; its last log line: {sink.last_line.decode('utf-8', 'replace')}" if sink.last_line else ""
            where = f"; its log is {sink.path}" if sink.path else ""
            raise self._spawn_failed(f"executor {executor_id} {problem} ({ended}){detail}{where}", counted)
        if counted:
            self._failures = 0
            self._last_failure = None
        executor.recycle_after = decision.recycle_after
        if self.direct:
            executor.detach()
        self.events.executor_started(executor.id, executor.pid, executor.sink.path)
        return executor

    def _check_ready(self, hello: Any) -> str | None:
        if hello is TIMED_OUT:
            return f"did not become ready within {self.config.spawn_timeout}s"
        if isinstance(hello, Lost):
            return f"failed before it was ready: {hello.reason}"
        try:
            self.protocol.check_ready(hello)
        except ProtocolError as e:
            return str(e)
        return None

    def _spawn_failed(self, message: str, counted: bool = True) -> ExecutorCreationFailure:
        self.events.tally.spawn_failed()
        if counted:
            self._failures += 1
            self._last_failure = time.monotonic()
        return ExecutorCreationFailure(message)

    def _environment(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", os.defpath)}
        for name in self.config.inherited_env:
            value = os.environ.get(name)
            if value is None:
                logger.warning("inherited_env: %s is not set in the parent; the executor will not have it", name)
            else:
                env[name] = value
        env.update(self.pm.settings.to_env())
        env.update(
            executor_environment(
                package_dir=None if self.config.package_dir is None else os.path.abspath(self.config.package_dir),
                installed_packages=self.config.installed_packages,
                max_frame_size=self.config.max_frame_size,
                spin_us=self.config.executor_spin_us if self.config.executor_spin_us is not None else self.config.spin_us,
                log_level=self.config.executor_log_level,
            )
        )
        env.update(self.protocol.environment)
        return env
