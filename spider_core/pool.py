"""``ProcessPool``: one supervised executor process behind a lock.

Callers queue on one ``asyncio.Lock`` held for the whole call. The hard-timeout clock starts
when the caller holds the lock. On a timeout, a crash, a protocol violation or a cancelled
caller, the executor is SIGKILLed, reaped and replaced inside the same critical section, so
the next caller finds a healthy executor and no response is ever read by the wrong caller
(every request carries a sequence number the response must echo).

The hot path is one frame written, one reader callback, one future: the pool registers the
executor's pipes and a pidfd with the event loop once per spawn. The framing is resolved
through its hook when the pool starts, the launcher and the respawn policy at each spawn;
never per task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from spider_core.converter import execute_primitive, message_from_primitive, message_to_primitive, result_fields
from spider_core.errors import (
    BuildTaskContext,
    EncodeTaskContext,
    EncodeTaskInputs,
    ExecutorCreationFailure,
    InternalError,
    InvalidRequest,
    NotRunning,
)
from spider_core.executor import (
    ENV_LOG_LEVEL,
    ENV_MAX_FRAME_SIZE,
    ENV_PACKAGE_DIR,
    ENV_PARENT_PID,
    ENV_SPIN_US,
)
from spider_core.framing import FramingError
from spider_core.models import (
    ExecuteRequest,
    ExecutorCrash,
    InTaskFailure,
    Outcome,
    PoolConfig,
    Ready,
    RespawnDecision,
    RespawnState,
    Result,
    Shutdown,
    Success,
    Timeout,
)
from spider_core.plugins import PluginError, PluginSettings, SpiderPluginManager, get_plugin_manager
from spider_core.tdl import (
    EMPTY_FRAME,
    EncodingError,
    ExecutorError,
    InvalidPackageName,
    TaskContext,
    TaskId,
    WireFormatError,
    encode_values,
    is_utf8,
    validate_package_name,
)

logger = logging.getLogger("spider_core.pool")
#: Executor log lines when ``PoolConfig.log_dir`` is None; each record has ``executor_id``.
executor_logger = logging.getLogger("spider_core.executor.log")

_READ_SIZE = 64 * 1024
_EXIT_GRACE = 1.0  # seconds a dying executor gets to exit by itself before SIGKILL
_TIMED_OUT = object()


class _Lost:
    """The executor's protocol channel became unusable."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


_FIRST_TASK = TaskId.of(0)
_SEQ = 1  # where an Execute primitive holds its sequence number
_SECONDS = (int, float)
_MAX_VALID_NAMES = 4096


def _check_names(package: Any, task: Any) -> None:
    """:raises InvalidRequest: not a valid package name, or not a non-empty UTF-8 task name."""
    try:
        validate_package_name(package)
    except InvalidPackageName as e:
        raise InvalidRequest(str(e)) from None
    if not isinstance(task, str) or not task or not is_utf8(task):
        raise InvalidRequest(f"task name must be a non-empty UTF-8 string, got {task!r}")


# typed: 0, False and 0.0 are one key to an untyped cache, but only 0 is a valid id.
@functools.lru_cache(maxsize=1024, typed=True)
def _cached_context(job_id: int, task_id: TaskId | None, task_instance_id: int, resource_group_id: int) -> bytes:
    return TaskContext(
        job_id=job_id,
        task_id=_FIRST_TASK if task_id is None else task_id,
        task_instance_id=task_instance_id,
        resource_group_id=resource_group_id,
    ).encode()


def _encode_context(
    job_id: int, task_id: TaskId | None, task_instance_id: int, resource_group_id: int, outputs: bytes | None
) -> bytes:
    """The msgpack TaskContext of a request (``task_id`` None is the first task; contexts
    without outputs are cached)."""
    if task_id is not None and not isinstance(task_id, TaskId):
        raise BuildTaskContext(
            f"task_id must be a TaskId (TaskId.of(i), TaskId.COMMIT or TaskId.CLEANUP), got {task_id!r:.40}"
        )
    try:
        if outputs is None and (task_id is None or not task_id.is_commit):
            with contextlib.suppress(TypeError):  # an unhashable id: built below, for its message
                return _cached_context(job_id, task_id, task_instance_id, resource_group_id)
        context = TaskContext(
            job_id=job_id,
            task_id=_FIRST_TASK if task_id is None else task_id,
            task_instance_id=task_instance_id,
            resource_group_id=resource_group_id,
            serialized_task_graph_outputs=outputs,
        )
    except (AttributeError, TypeError, ValueError) as e:
        raise BuildTaskContext(f"cannot build the task context: {e}") from None
    try:
        return context.encode()
    except Exception as e:
        raise EncodeTaskContext(f"cannot encode the task context: {e}") from None


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(_TIMED_OUT)


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
            waiter.set_result(_TIMED_OUT)
        else:
            self._timer = self.loop.call_at(self.deadline, self._fire)


# -------------------------------------------------------------------------------------------
# the executor's log
# -------------------------------------------------------------------------------------------


class _LogSink:
    """Splits an executor's stderr into lines, drops over-long ones, writes the rest to a
    per-spawn file or to ``logging``."""

    def __init__(self, executor_id: int, max_line: int, path: Path | None) -> None:
        self.executor_id = executor_id
        self.max_line = max_line
        self.path = path
        self.last_line = b""
        self._file = None
        self._partial = b""
        self._dropping = False
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
            except OSError as e:
                logger.warning(
                    "cannot write executor log %s (%s); forwarding executor %d's log to logging",
                    path,
                    e.strerror,
                    executor_id,
                )
                self.path = None

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        kept = []
        for line in lines:
            if self._dropping:  # the rest of a line already reported as dropped
                self._dropping = False
            elif len(line) > self.max_line:
                kept.append(self._dropped(len(line)))
            else:
                kept.append(line)
        if len(self._partial) > self.max_line:
            if not self._dropping:
                kept.append(self._dropped(len(self._partial), partial=True))
            self._dropping = True
            self._partial = b""
        if kept:
            self._emit(kept)

    def _dropped(self, size: int, partial: bool = False) -> bytes:
        """Warn about a dropped line; return the notice that takes its place in the log."""
        size_text = f"at least {size}" if partial else str(size)
        message = (
            f"spider-core: dropped a log line of {size_text} bytes from executor {self.executor_id} "
            f"(max_log_line_bytes is {self.max_line})"
        )
        logger.warning(message)
        return message.encode()

    def _emit(self, lines: list[bytes]) -> None:
        self.last_line = lines[-1]
        if self._file is not None:
            lines.append(b"")
            self._file.write(b"\n".join(lines))  # unbuffered: one write per chunk read
        else:
            for line in lines:
                executor_logger.info(line.decode("utf-8", "replace"), extra={"executor_id": self.executor_id})

    def close(self) -> None:
        if self._partial and not self._dropping:
            self._emit([self._partial])
        self._partial = b""
        if self._file is not None:
            self._file.close()
            self._file = None


# -------------------------------------------------------------------------------------------
# one executor process
# -------------------------------------------------------------------------------------------


class _ExecutorProcess:
    """A spawned executor: its pipes and pidfd registered with the loop, its log sink."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        executor_id: int,
        proc: subprocess.Popen,
        framing: Any,
        sink: _LogSink,
    ) -> None:
        self.loop = loop
        self.id = executor_id
        self.proc = proc
        self.pid = proc.pid
        self.sink = sink
        self.encode = framing.encode
        self.decoder = framing.decoder()
        self.tasks_run = 0
        self.recycle_after: int | None = None
        self.waiter: asyncio.Future | None = None
        self.lost: str | None = None
        self.exited = loop.create_future()
        self._out = proc.stdin.fileno()
        self._in = proc.stdout.fileno()
        self._err = proc.stderr.fileno()
        self._pending: memoryview | None = None
        self._closed = False
        for fd in (self._out, self._in, self._err):
            os.set_blocking(fd, False)
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._in, self._on_readable)
        loop.add_reader(self._err, self._on_stderr)
        loop.add_reader(self._pidfd, self._on_exit)

    @property
    def alive(self) -> bool:
        return self.lost is None and not self.exited.done()

    def expect(self) -> asyncio.Future:
        """A future for the next message (or ``_Lost``)."""
        waiter = self.waiter = self.loop.create_future()
        if self.lost is not None:
            waiter.set_result(_Lost(self.lost))
        return waiter

    # -- protocol channel

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            self.loop.remove_reader(self._in)
            self._stop_writing()
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(_Lost(self.lost))

    def _on_readable(self) -> bool:
        """Read what the executor sent and deliver complete messages; False if nothing was read."""
        try:
            data = os.read(self._in, max(_READ_SIZE, self.decoder.wanted()))
        except BlockingIOError:
            return False
        except OSError as e:
            self._lose(f"reading from the executor failed: {e.strerror}")
            return False
        if not data:
            self._lose("the executor closed its protocol channel")
            return False
        decoder = self.decoder
        decoder.feed(data)
        while self.lost is None:
            try:
                message = decoder.next_message()
            except FramingError as e:
                self._lose(f"the executor sent an undecodable frame: {e}")
                break
            if message is None:
                break
            waiter = self.waiter
            if waiter is None or waiter.done():
                self._lose("the executor sent a message nobody asked for")
                break
            if self._pending is not None:
                self._lose("the executor answered before it had read the whole request")
                break
            self.waiter = None
            waiter.set_result(message)
        return True

    def poll(self, budget_ns: int) -> bool:
        """Read the answer without the event loop for up to ``budget_ns``; whether it came."""
        waiter = self.waiter
        deadline = time.perf_counter_ns() + budget_ns
        while not waiter.done() and self._pending is None and time.perf_counter_ns() < deadline:
            if not self._on_readable():
                os.sched_yield()  # the executor may be waiting for this very CPU
        return waiter.done()

    def send(self, frame: bytes) -> None:
        if self.lost is not None:
            return
        try:
            written = os.write(self._out, frame)
        except BlockingIOError:
            written = 0
        except OSError as e:
            self._lose(f"writing to the executor failed: {e.strerror}")
            return
        if written < len(frame):
            self._pending = memoryview(frame)[written:]
            self.loop.add_writer(self._out, self._on_writable)

    def _on_writable(self) -> None:
        try:
            written = os.write(self._out, self._pending)
        except BlockingIOError:
            return
        except OSError as e:
            self._lose(f"writing to the executor failed: {e.strerror}")
            return
        self._pending = self._pending[written:]
        if not self._pending:
            self._stop_writing()

    def _stop_writing(self) -> None:
        if self._pending is not None:
            self.loop.remove_writer(self._out)
            self._pending = None

    # -- log and exit

    def _on_stderr(self) -> None:
        try:
            data = os.read(self._err, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.sink.feed(data)
        else:
            self.loop.remove_reader(self._err)

    def _on_exit(self) -> None:
        self.loop.remove_reader(self._pidfd)
        while self.lost is None and self._on_readable():
            pass  # a response written just before exiting still counts
        self._lose("the executor exited")
        if not self.exited.done():
            self.exited.set_result(None)

    def signal(self, signum: int) -> None:
        if not self.exited.done():
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, signum)

    def kill_group(self) -> None:
        """SIGKILL whatever the executor's tasks left running in its process group (it leads
        its own session). Only before the executor is reaped, while its group id is still
        reserved."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def wait_exit(self, timeout: float) -> bool:
        """Whether the process exited within ``timeout`` seconds."""
        if not self.exited.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.exited), timeout)
        return self.exited.done()

    async def reap(self, grace: float = 0.0) -> tuple[int | None, int | None]:
        """Give the process ``grace`` seconds to exit, SIGKILL it, reap it and release
        everything; return (exit status, signal)."""
        try:
            if grace > 0:
                await self.wait_exit(grace)
            self.signal(signal.SIGKILL)
            await asyncio.shield(self.exited)
        except asyncio.CancelledError:
            # The caller gave up, the cleanup may not: SIGKILLed, the process exits at once.
            self.signal(signal.SIGKILL)
            self.kill_group()
            self.proc.wait()
            self._close()
            raise
        self.kill_group()
        status = self.proc.wait()
        self._close()
        return (status, None) if status >= 0 else (None, -status)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._lose("the executor was stopped")
        self._drain_stderr()
        self.loop.remove_reader(self._err)
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()
        self.sink.close()

    def _drain_stderr(self) -> None:
        """Log what is left in the stderr pipe; bounded, since a process that escaped the
        executor's group may still hold the pipe and write to it forever."""
        for _ in range(64):
            try:
                data = os.read(self._err, _READ_SIZE)
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self.sink.feed(data)


# -------------------------------------------------------------------------------------------
# the pool
# -------------------------------------------------------------------------------------------


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
        self._executor: _ExecutorProcess | None = None
        self._spare: _ExecutorProcess | None = None  # a ready standby (PoolConfig.standby)
        self._spare_task: asyncio.Task | None = None
        self._close_task: asyncio.Future | None = None
        self._framing: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_id = 0
        self._seq = 0
        self._failures = 0
        self._last_failure: float | None = None
        self._started = False
        self._closed = False
        self._notify_task_finished = False
        self._spin_ns = config.spin_us * 1000
        self._valid_names: set[tuple[str, str]] = set()  # (package, task) pairs already checked
        self._failed_hooks: set[str] = set()  # lifecycle hooks whose failure was logged in full

    # -- introspection

    @property
    def executor_id(self) -> int | None:
        """The current executor's id, or None if there is none."""
        return self._executor.id if self._executor else None

    @property
    def pid(self) -> int | None:
        return self._executor.pid if self._executor else None

    @property
    def log_path(self) -> Path | None:
        """The current executor's log file (None when logs go to ``logging``)."""
        return self._executor.sink.path if self._executor else None

    def log_path_for(self, executor_id: int) -> Path | None:
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
            self._framing = self.pm.call_required("spider_framing", max_frame_size=self.config.max_frame_size)
            for hook in ("spider_launcher", "spider_respawn_decision"):
                self.pm.require(hook)
        except PluginError as e:
            raise ExecutorCreationFailure(str(e)) from None
        self._notify_task_finished = bool(self.pm.hook.spider_task_finished.get_hookimpls())
        async with self._lock:
            await self._spawn("start")
        self._started = True

    async def close(self) -> None:
        """Wait for the call in progress, refuse new ones, and stop the executor: ``Shutdown``,
        then SIGTERM, then SIGKILL, each after ``shutdown_grace`` seconds. Idempotent."""
        if self._close_task is None:
            self._closed = True
            self._close_task = asyncio.ensure_future(self._shutdown())
        # Shielded: a caller that stops waiting does not stop the shutdown.
        await asyncio.shield(self._close_task)

    async def _shutdown(self) -> None:
        if self._spare_task is not None and not self._spare_task.done():
            self._spare_task.cancel()
            await asyncio.gather(self._spare_task, return_exceptions=True)
        async with self._lock:
            for executor in (self._executor, self._spare):
                if executor is not None:
                    await self._stop(executor)
            self._spare = None

    async def _stop(self, executor: _ExecutorProcess) -> None:
        grace = self.config.shutdown_grace
        if executor.alive:
            executor.send(executor.encode(message_to_primitive(Shutdown())))
            if not await executor.wait_exit(grace):
                executor.signal(signal.SIGTERM)
                await executor.wait_exit(grace)
        await self._retire(executor, "shutdown")

    # -- execute

    async def execute(self, request: ExecuteRequest, hard_timeout: float) -> Outcome:
        """Run one task; return its outcome.

        :raises InternalError: the pool could not serve the call (``NotRunning``,
            ``ExecutorCreationFailure``, ``InvalidRequest``, ``EncodeTaskInputs``,
            ``EncodeTaskContext``, ``BuildTaskContext``).
        """
        queued = time.perf_counter()
        message = self._prepare(request, hard_timeout)
        async with self._lock:
            locked = time.perf_counter()
            if self._closed or not self._started:
                raise NotRunning("the pool is closed" if self._closed else "the pool is not started; use `async with` or start()")
            executor = self._executor
            if executor is None or not executor.alive:
                executor = await self._replace_dead()
            self._seq += 1
            message[_SEQ] = seq = self._seq
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
                    await self._replace(executor, "cancelled")
                    raise
                self._deadline.disarm()
            fields = result_fields(reply)
            if fields is not None and fields[0] == seq and fields[1] and executor.recycle_after is None:
                executor.tasks_run += 1  # the usual answer, a Success, inline
                outcome: Outcome = Success(outputs=fields[2], elapsed_us=fields[3], executor_id=executor.id)
            else:
                outcome = await self._outcome(executor, seq, reply, hard_timeout)
        if self._notify_task_finished:
            self._notify_task(request, outcome, executor.id, locked - queued, time.perf_counter() - locked)
        return outcome

    def _prepare(self, request: ExecuteRequest, hard_timeout: float) -> list[Any]:
        """Validate and encode a request outside the lock; bad requests fail here."""
        if not isinstance(request, ExecuteRequest):
            raise InvalidRequest(f"request must be an ExecuteRequest, got {type(request).__name__}")
        if isinstance(hard_timeout, bool) or not isinstance(hard_timeout, _SECONDS) or not (
            hard_timeout > 0 and math.isfinite(hard_timeout)
        ):
            raise InvalidRequest(f"hard_timeout must be a positive number of seconds, got {hard_timeout!r}")
        package, task = request.package, request.task
        if not (type(package) is str and type(task) is str and (package, task) in self._valid_names):
            _check_names(package, task)
            if len(self._valid_names) >= _MAX_VALID_NAMES:  # names come from callers: bound the set
                self._valid_names.clear()
            self._valid_names.add((package, task))
        task_id = request.task_id
        raw_ctx = _encode_context(
            request.job_id, task_id, request.task_instance_id, request.resource_group_id, request.task_graph_outputs
        )
        if task_id is not None and task_id.is_commit:
            if request.inputs or request.raw_inputs not in (None, EMPTY_FRAME):
                raise BuildTaskContext("a commit task takes no inputs: it reads the task-graph outputs")
            raw_inputs = EMPTY_FRAME
        elif request.raw_inputs is not None:
            if not isinstance(request.raw_inputs, bytes):
                raise EncodeTaskInputs(f"raw_inputs must be bytes, got {type(request.raw_inputs).__name__}")
            raw_inputs = request.raw_inputs
        else:
            try:
                raw_inputs = encode_values(request.inputs)
            except WireFormatError as e:
                raise EncodeTaskInputs(f"cannot encode the inputs of {request.package}/{request.task}: {e}") from None
        return execute_primitive(0, package, task, raw_ctx, raw_inputs)  # seq set under the lock

    async def _outcome(self, executor: _ExecutorProcess, seq: int, reply: Any, hard_timeout: float) -> Outcome:
        if reply is _TIMED_OUT:
            executor.signal(signal.SIGKILL)
            await self._replace(executor, "timeout")
            return Timeout(hard_timeout=hard_timeout, executor_id=executor.id)
        if isinstance(reply, _Lost):
            return await self._crash(executor, reply.reason, grace=_EXIT_GRACE)
        try:
            result = message_from_primitive(reply)
        except ValueError as e:
            return await self._crash(executor, f"the executor sent an invalid message: {e}")
        if not isinstance(result, Result) or result.seq != seq:
            got = f"seq {result.seq}" if isinstance(result, Result) else type(result).__name__
            return await self._crash(executor, f"expected the result of request {seq}, got {got}")
        executor.tasks_run += 1
        if result.ok:
            outcome: Outcome = Success(outputs=result.payload, elapsed_us=result.elapsed_us, executor_id=executor.id)
        else:
            try:
                error = ExecutorError.decode(result.payload)
            except EncodingError as e:
                return await self._crash(executor, f"the executor sent an undecodable error: {e}")
            outcome = InTaskFailure(error=error, elapsed_us=result.elapsed_us, executor_id=executor.id)
        if executor.recycle_after is not None and executor.tasks_run >= executor.recycle_after:
            await self._stop_for_recycle(executor)
        return outcome

    async def _retire(self, executor: _ExecutorProcess, reason: str, grace: float = 0.0) -> tuple[int | None, int | None]:
        """Forget ``executor``; give it ``grace`` seconds to exit, SIGKILL and reap it."""
        if self._executor is executor:
            self._executor = None
        status, signum = await executor.reap(grace)
        self._notify_exited(executor, reason, status, signum)
        return status, signum

    async def _crash(self, executor: _ExecutorProcess, reason: str, grace: float = 0.0) -> ExecutorCrash:
        status, signum = await self._retire(executor, "crash", grace)
        logger.warning(
            "executor %d (pid %d) crashed: %s (exit status %s, signal %s)",
            executor.id, executor.pid, reason, status, signum,
        )
        await self._respawn("crash")
        return ExecutorCrash(exit_status=status, signal=signum, executor_id=executor.id)

    async def _stop_for_recycle(self, executor: _ExecutorProcess) -> None:
        executor.send(executor.encode(message_to_primitive(Shutdown())))
        await self._retire(executor, "recycle", self.config.shutdown_grace)
        await self._respawn("recycle")

    # -- spawning

    async def _replace(self, executor: _ExecutorProcess, reason: str) -> None:
        """Kill and reap ``executor``, then spawn its successor (per policy)."""
        await self._retire(executor, reason)
        await self._respawn(reason)

    async def _replace_dead(self) -> _ExecutorProcess:
        """A call found no live executor (it died while idle, or spawning failed before)."""
        executor = self._executor
        if executor is not None:
            logger.warning("executor %d (pid %d) died while idle: %s", executor.id, executor.pid, executor.lost)
            await self._retire(executor, "crash", _EXIT_GRACE)
        return await self._spawn("retry" if executor is None else "crash")

    async def _respawn(self, reason: str) -> None:
        """Spawn a successor now if the policy allows; a failure is left for the next call."""
        try:
            await self._spawn(reason)
        except InternalError as e:
            logger.warning("could not replace the executor after %s: %s", reason, e)

    def _decide(self, reason: str) -> RespawnDecision:
        state = RespawnState(
            reason=reason,
            consecutive_failures=self._failures,
            last_failure=self._last_failure,
            now=time.monotonic(),
        )
        try:
            return self.pm.call_required("spider_respawn_decision", config=self.config, state=state)
        except PluginError as e:
            raise NotRunning(str(e)) from None

    async def _spawn(self, reason: str) -> _ExecutorProcess:
        """Make a ready executor the current one: the standby if there is a live one, else a
        new process; then start preparing the next standby."""
        executor, self._spare = self._spare, None
        if executor is not None and not executor.alive:
            await self._retire(executor, "crash", _EXIT_GRACE)
            executor = None
        if executor is None:
            executor = await self._start_executor(reason)
        self._executor = executor
        self._want_spare()
        return executor

    def _want_spare(self) -> None:
        if self.config.standby and not self._closed and self._spare is None and (
            self._spare_task is None or self._spare_task.done()
        ):
            self._spare_task = self._loop.create_task(self._prepare_spare())

    async def _prepare_spare(self) -> None:
        try:
            spare = await self._start_executor("standby")
        except Exception as e:  # a standby is an optimisation: never let it break the pool
            logger.warning("could not start a standby executor: %s", e)
            return
        if self._closed:
            await self._stop(spare)
        else:
            self._spare = spare

    async def _start_executor(self, reason: str) -> _ExecutorProcess:
        """Spawn an executor (as the respawn policy allows) and wait until it is ready.

        A standby's failures do not count toward the back-off of the executor in use.
        """
        counted = reason != "standby"
        decision = self._decide(reason)
        if not decision.spawn:
            raise NotRunning(f"no executor is running: {decision.message}")
        self._last_id += 1
        executor_id = self._last_id
        try:
            spec = self.pm.call_required(
                "spider_launcher", config=self.config, executor_id=executor_id, env=self._environment()
            )
        except PluginError as e:
            raise self._spawn_failed(str(e), counted) from None
        sink = _LogSink(executor_id, self.config.max_log_line_bytes, self.log_path_for(executor_id))
        try:
            proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=spec.env,
                cwd=spec.cwd,
                close_fds=True,
                # Its own session: terminal signals go to the pool alone, and what tasks leave
                # running can be killed with the executor's process group.
                start_new_session=True,
            )
        except OSError as e:
            sink.close()
            raise self._spawn_failed(
                f"cannot start executor command {spec.argv[0]!r}: {e.strerror or e}", counted
            ) from None
        try:
            executor = _ExecutorProcess(self._loop, executor_id, proc, self._framing, sink)
        except OSError as e:  # e.g. no descriptor left for its pidfd
            proc.kill()
            proc.wait()
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                stream.close()
            sink.close()
            raise self._spawn_failed(f"cannot supervise executor {executor_id}: {e}", counted) from None
        waiter = executor.expect()
        timer = self._loop.call_later(self.config.spawn_timeout, _expire, waiter)
        try:
            hello = await waiter
        except asyncio.CancelledError:
            await executor.reap()
            raise
        finally:
            timer.cancel()
        problem = self._check_ready(hello)
        if problem is not None:
            status, signum = await executor.reap(_EXIT_GRACE if isinstance(hello, _Lost) else 0.0)
            ended = f"exit status {status}" if status is not None else f"signal {signum}"
            detail = f"; its last log line: {sink.last_line.decode('utf-8', 'replace')}" if sink.last_line else ""
            where = f"; its log is {sink.path}" if sink.path else ""
            raise self._spawn_failed(f"executor {executor_id} {problem} ({ended}){detail}{where}", counted)
        if counted:
            self._failures = 0
            self._last_failure = None
        executor.recycle_after = decision.recycle_after
        self._notify_started(executor)
        return executor

    def _check_ready(self, hello: Any) -> str | None:
        if hello is _TIMED_OUT:
            return f"did not become ready within {self.config.spawn_timeout}s"
        if isinstance(hello, _Lost):
            return f"failed before it was ready: {hello.reason}"
        try:
            ready = message_from_primitive(hello)
        except ValueError as e:
            return f"sent an invalid first message: {e}"
        if not isinstance(ready, Ready):
            return f"sent {type(ready).__name__} instead of Ready"
        return None

    def _spawn_failed(self, message: str, counted: bool = True) -> ExecutorCreationFailure:
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
        env[ENV_PACKAGE_DIR] = os.path.abspath(self.config.package_dir)
        env[ENV_PARENT_PID] = str(os.getpid())
        env[ENV_MAX_FRAME_SIZE] = str(self.config.max_frame_size)
        env[ENV_SPIN_US] = str(self.config.executor_spin_us)
        env[ENV_LOG_LEVEL] = self.config.executor_log_level
        return env

    # -- lifecycle hooks (a failing plugin is logged, never fatal)

    def _notify_started(self, executor: _ExecutorProcess) -> None:
        try:
            self.pm.hook.spider_executor_started(executor_id=executor.id, pid=executor.pid, log_path=executor.sink.path)
        except Exception as e:
            self._hook_failed("spider_executor_started", e)

    def _notify_exited(self, executor: _ExecutorProcess, reason: str, status: int | None, signum: int | None) -> None:
        try:
            self.pm.hook.spider_executor_exited(
                executor_id=executor.id, pid=executor.pid, reason=reason, exit_status=status, signal=signum
            )
        except Exception as e:
            self._hook_failed("spider_executor_exited", e)

    def _notify_task(self, request: ExecuteRequest, outcome: Outcome, executor_id: int, wait: float, run: float) -> None:
        try:
            self.pm.hook.spider_task_finished(
                request=request, outcome=outcome, executor_id=executor_id, queue_wait=wait, execution_time=run
            )
        except Exception as e:
            self._hook_failed("spider_task_finished", e)

    def _hook_failed(self, hook: str, error: Exception) -> None:
        """Log a failing lifecycle hook: with its traceback the first time, then at debug level
        (a metrics plugin that fails on every task must not flood the log)."""
        if hook in self._failed_hooks:
            logger.debug("a %s hook failed again: %s: %s", hook, type(error).__name__, error)
            return
        self._failed_hooks.add(hook)
        logger.error(
            "a %s hook failed (logged once per pool): %s: %s", hook, type(error).__name__, error, exc_info=error
        )


class SyncProcessPool:
    """The same pool for callers without an event loop: ``with SyncProcessPool(config) as
    pool: pool.execute(request, hard_timeout=5)``.

    The pool runs its event loop in a thread of its own, which lives until ``close()``: it
    notices an executor that dies between calls, and every executor is spawned from that one
    thread (``PR_SET_PDEATHSIG`` is tied to the thread that spawned the child). Any thread may
    call ``execute``; calls are served one at a time.
    """

    def __init__(self, config: PoolConfig, *, plugin_manager: SpiderPluginManager | None = None) -> None:
        self._pool = ProcessPool(config, plugin_manager=plugin_manager)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="spider-core-pool", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def config(self) -> PoolConfig:
        return self._pool.config

    @property
    def executor_id(self) -> int | None:
        return self._pool.executor_id

    @property
    def pid(self) -> int | None:
        return self._pool.pid

    @property
    def log_path(self) -> Path | None:
        return self._pool.log_path

    def __enter__(self) -> SyncProcessPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        self._run(self._pool.start())

    def execute(self, request: ExecuteRequest, hard_timeout: float) -> Outcome:
        return self._run(self._pool.execute(request, hard_timeout))

    def close(self) -> None:
        """Stop the executor and the pool's thread. Idempotent."""
        if self._closed:
            return
        try:
            self._run(self._pool.close())
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _run(self, coro: Any) -> Any:
        if self._closed:
            coro.close()
            raise NotRunning("the pool is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:  # KeyboardInterrupt: cancel the call, as a cancelled coroutine would
            future.cancel()
            raise
