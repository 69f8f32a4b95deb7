"""``SyncProcessPool``: the pool for callers without an event loop.

The pool runs its event loop in a thread of its own, which lives until ``close()``: it
notices an executor that dies between calls, logs what executors write, and spawns every
executor (``PR_SET_PDEATHSIG`` is tied to the thread that spawned the child). A call does not
cross to that thread when all goes well: the calling thread takes a free slot, writes the
request and waits for the answer on the executor's pipe itself, so a round trip costs no
thread wake-up. ``submit`` hands its calls to the pool's thread, which runs them in lanes as
``map`` does (:mod:`spider_core.pool.submissions`). Queueing for a busy slot, spawning, and
everything after a fault (kill, reap, respawn) happen on the pool's thread, and the caller
waits for them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from spider_core.errors import InternalError, NotRunning
from spider_core.models import ExecuteRequest, Outcome, PoolConfig, PoolStats
from spider_core.plugin.manager import SpiderPluginManager
from spider_core.pool.async_pool import ProcessPool
from spider_core.pool.submissions import Submissions, Submitted

_T = TypeVar("_T")


class SyncProcessPool:
    """The same pool for callers without an event loop: ``with SyncProcessPool(config) as
    pool: pool.execute(request, hard_timeout=5)``.

    The pool runs its event loop in a thread of its own, from ``start()`` until ``close()``:
    it notices an executor that dies between calls, and every executor is spawned from that
    one thread (``PR_SET_PDEATHSIG`` is tied to the thread that spawned the child). Any thread
    may call ``execute``, ``call`` or ``submit``; up to ``PoolConfig.slots`` calls run at once
    and the others wait their turn. A pool that is dropped without ``close()`` closes itself
    when it is garbage collected, with a ``ResourceWarning``, as ``subprocess.Popen`` does.
    """

    def __init__(self, config: PoolConfig, *, plugin_manager: SpiderPluginManager | None = None) -> None:
        self._pool = ProcessPool(config, plugin_manager=plugin_manager)
        self._pool.calls.direct = True
        self._loop: asyncio.AbstractEventLoop | None = None  # from start() until close()
        self._thread: threading.Thread | None = None
        self._submissions: Submissions | None = None  # from start() until close()
        self._closed = False

    @property
    def config(self) -> PoolConfig:
        return self._pool.config

    @property
    def executor_id(self) -> int | None:
        return self._pool.executor_id

    @property
    def executor_ids(self) -> tuple[int | None, ...]:
        return self._pool.executor_ids

    @property
    def pid(self) -> int | None:
        return self._pool.pid

    @property
    def pids(self) -> tuple[int | None, ...]:
        return self._pool.pids

    @property
    def log_path(self) -> Path | None:
        return self._pool.log_path

    def stats(self) -> PoolStats:
        """A snapshot of the pool now (see :meth:`ProcessPool.stats`)."""
        return self._pool.stats()

    def __enter__(self) -> SyncProcessPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the pool's thread, spawn an executor per slot and wait until they are ready
        (see :meth:`ProcessPool.start`). If that fails, the thread and everything else the
        pool holds are released before the error propagates. Idempotent.

        :raises ExecutorCreationFailure: as :meth:`ProcessPool.start`.
        :raises NotRunning: the pool is closed, or was made in another process.
        """
        self._check()
        if self._thread is not None:
            return
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="spider-core-pool", daemon=True)
        self._thread.start()
        self._submissions = Submissions(self._loop, self._pool.calls)
        try:
            self._run(self._pool.start())
        except BaseException:
            self._stop_thread()
            raise

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if self._thread is None or self._closed or self._pool.calls.foreign is not None:
            return
        _warn(f"unclosed pool {self!r}", ResourceWarning, source=self)
        if sys.is_finalizing():  # the pool's thread may be frozen; the guard reaps the executors
            return
        if threading.current_thread() is self._thread:  # collected on the pool's own thread
            self._closed = True
            loop = self._loop
            loop.create_task(self._pool.close()).add_done_callback(lambda _: loop.stop())  # type: ignore[union-attr]
            return
        self.close()

    def _check(self) -> None:
        """:raises NotRunning: the pool is closed, or belongs to another process."""
        if self._pool.calls.foreign is not None:
            raise NotRunning(self._pool.calls.foreign)
        if self._closed:
            raise NotRunning("the pool is closed")

    def execute(
        self, request: ExecuteRequest, hard_timeout: float | None = None, *, soft_timeout: float | None = None
    ) -> Outcome:
        """Run one task and wait for its outcome (see :meth:`ProcessPool.execute`).

        A ``KeyboardInterrupt`` (or any exception) raised in the caller while the task runs
        kills and replaces the task's executor before it propagates, as cancelling an async
        caller does.
        """
        calls = self._pool.calls
        prepared = calls.prepare(request, hard_timeout, soft_timeout)
        self._check()
        return calls.execute_in_thread(prepared)

    def call(
        self, package: str, task: str, *inputs: Any, hard_timeout: float | None = None, soft_timeout: float | None = None
    ) -> list[Any]:
        """Run ``task`` of ``package`` on ``inputs`` and return its output values, or raise
        the outcome's ``OutcomeError`` (see :meth:`ProcessPool.call`)."""
        request = ExecuteRequest(package=package, task=task, inputs=inputs)
        return self.execute(request, hard_timeout, soft_timeout=soft_timeout).unwrap()

    def submit(
        self, request: ExecuteRequest, hard_timeout: float | None = None, *, soft_timeout: float | None = None
    ) -> concurrent.futures.Future[Outcome]:
        """Start one task; its outcome comes in the returned future (``concurrent.futures.wait``
        and ``as_completed`` work on it). Cancelling the future cancels the task: if it is
        running, its executor is killed and replaced, as for a cancelled caller. An
        ``InternalError`` (a bad request, say) is the future's exception.

        :raises NotRunning: the pool is closed, not started, or another process's.
        """
        self._check()
        submissions = self._submissions
        if submissions is None:
            raise NotRunning("the pool is not started; use `with` or start()")
        try:
            prepared = self._pool.calls.prepare(request, hard_timeout, soft_timeout)
        except InternalError as e:
            failed = Submitted()
            failed.set_exception(e)
            return failed
        return submissions.submit(prepared)

    def map(
        self, requests: Iterable[ExecuteRequest], hard_timeout: float | None = None, *, soft_timeout: float | None = None
    ) -> Iterator[Outcome]:
        """The outcomes of ``requests``, in request order, running up to ``slots`` at once
        (see :meth:`ProcessPool.map`: it runs on the pool's thread and hands the outcomes
        over as they come).

        Requests are read as the iteration goes (on the pool's thread), so an endless iterable
        is fine; an ``InternalError`` of one request is raised at its place. Leaving the loop
        early cancels the requests still running.
        """
        self._check()
        if self._loop is None:
            raise NotRunning("the pool is not started; use `with` or start()")
        handoff = _Handoff(self._loop, limit=64 * self.config.slots)
        feed = self._pool.map(requests, hard_timeout, soft_timeout=soft_timeout)
        future = asyncio.run_coroutine_threadsafe(handoff.fill(feed), self._loop)
        try:
            while True:
                outcomes = handoff.take()
                if not outcomes:
                    return
                yield from outcomes
        finally:
            future.cancel()

    def close(self) -> None:
        """Stop the executors and the pool's thread. Idempotent. In a forked child it does
        nothing more: the child let go of the parent's pool when it was forked."""
        if self._closed:
            return
        if self._pool.calls.foreign is not None or self._thread is None:
            self._closed = True  # (the pool's thread is the parent's: it is not in the child)
            return
        try:
            self._run(self._pool.close())
        finally:
            self._closed = True
            self._stop_thread()

    def _stop_thread(self) -> None:
        """Stop the pool's thread. A call submitted that it never took, or submitted from now
        on by a thread that got past ``_check()`` before the pool closed, gets ``NotRunning``
        (refused once the loop has stopped, before it is closed)."""
        loop, thread, submissions = self._loop, self._thread, self._submissions
        assert loop is not None and thread is not None and submissions is not None  # started
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        submissions.refuse(NotRunning("the pool is closed"))
        loop.close()
        self._loop = self._thread = None

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed or self._loop is None:
            coro.close()
            raise NotRunning("the pool is closed" if self._closed else "the pool is not started; use `with` or start()")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:  # KeyboardInterrupt: cancel the call, as a cancelled coroutine would
            future.cancel()
            raise


class _Handoff:
    """Outcomes going from the pool's thread to the thread iterating ``map``: a buffer of up
    to ``limit`` outcomes, so that an endless map reads no further ahead than its caller."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self._ready = threading.Condition(threading.Lock())
        self._outcomes: list[Outcome] = []
        self._error: BaseException | None = None
        self._ended = False
        self._room: asyncio.Event | None = None  # the pool's thread waits on it when full

    async def fill(self, outcomes: AsyncIterator[Outcome]) -> None:
        """On the pool's thread: pass every outcome on, then the end or the error."""
        room = self._room = asyncio.Event()
        try:
            async for outcome in outcomes:
                with self._ready:
                    self._outcomes.append(outcome)
                    full = len(self._outcomes) >= self.limit
                    if full:
                        room.clear()
                    self._ready.notify()
                if full:
                    await room.wait()
        except BaseException as e:
            with self._ready:
                self._error = e if not isinstance(e, asyncio.CancelledError) else None
                self._ended = True
                self._ready.notify()
            raise
        finally:
            await outcomes.aclose()  # type: ignore[attr-defined]  # an async generator
        with self._ready:
            self._ended = True
            self._ready.notify()

    def take(self) -> list[Outcome]:
        """In the caller's thread: the outcomes so far (waiting for one); [] at the end.

        :raises: what the map raised."""
        with self._ready:
            while not self._outcomes and not self._ended:
                self._ready.wait()
            outcomes, self._outcomes = self._outcomes, []
            error, self._error = (self._error, None) if not outcomes else (None, self._error)
        if outcomes:
            if self._room is not None and not self._room.is_set():
                self.loop.call_soon_threadsafe(self._room.set)
            return outcomes
        if error is not None:
            raise error
        return []
