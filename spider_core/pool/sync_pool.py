"""``SyncProcessPool``: the pool for callers without an event loop.

The pool runs its event loop in a thread of its own, which lives until ``close()``: it
notices an executor that dies between calls, and every executor is spawned from that one
thread (``PR_SET_PDEATHSIG`` is tied to the thread that spawned the child).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from spider_core.errors import NotRunning
from spider_core.models import ExecuteRequest, Outcome, PoolConfig
from spider_core.plugin import SpiderPluginManager
from spider_core.pool.async_pool import ProcessPool

_T = TypeVar("_T")


class SyncProcessPool:
    """The same pool for callers without an event loop: ``with SyncProcessPool(config) as
    pool: pool.execute(request, hard_timeout=5)``.

    The pool runs its event loop in a thread of its own, which lives until ``close()``: it
    notices an executor that dies between calls, and every executor is spawned from that one
    thread (``PR_SET_PDEATHSIG`` is tied to the thread that spawned the child). Any thread may
    call ``execute``, ``call`` or ``submit``; up to ``PoolConfig.slots`` calls run at once and
    the others wait their turn.
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

    def __enter__(self) -> SyncProcessPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        self._run(self._pool.start())

    def execute(
        self, request: ExecuteRequest, hard_timeout: float | None = None, *, soft_timeout: float | None = None
    ) -> Outcome:
        """Run one task and wait for its outcome (see :meth:`ProcessPool.execute`)."""
        return self._run(self._pool.execute(request, hard_timeout, soft_timeout=soft_timeout))

    def call(
        self, package: str, task: str, *inputs: Any, hard_timeout: float | None = None, soft_timeout: float | None = None
    ) -> list[Any]:
        """Run ``task`` of ``package`` on ``inputs`` and return its output values, or raise
        the outcome's ``OutcomeError`` (see :meth:`ProcessPool.call`)."""
        return self._run(self._pool.call(package, task, *inputs, hard_timeout=hard_timeout, soft_timeout=soft_timeout))

    def submit(
        self, request: ExecuteRequest, hard_timeout: float | None = None, *, soft_timeout: float | None = None
    ) -> concurrent.futures.Future[Outcome]:
        """Start one task; its outcome comes in the returned future (``concurrent.futures.wait``
        and ``as_completed`` work on it). Cancelling the future cancels the task: if it is
        running, its executor is killed and replaced, as for a cancelled caller. An
        ``InternalError`` (a bad request, say) is the future's exception.

        :raises NotRunning: the pool is closed.
        """
        if self._closed:
            raise NotRunning("the pool is closed")
        coro = self._pool.execute(request, hard_timeout, soft_timeout=soft_timeout)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def map(
        self, requests: Iterable[ExecuteRequest], hard_timeout: float | None = None, *, soft_timeout: float | None = None
    ) -> Iterator[Outcome]:
        """The outcomes of ``requests``, in request order, running up to ``slots`` at once.

        Requests are read as the iteration goes, so an endless iterable is fine; an
        ``InternalError`` of one request is raised at its place. Leaving the loop early cancels
        the requests still running.
        """
        window: deque[concurrent.futures.Future[Outcome]] = deque()
        limit = 2 * self.config.slots  # a call queued behind each running one keeps slots busy
        try:
            for request in requests:
                window.append(self.submit(request, hard_timeout, soft_timeout=soft_timeout))
                if len(window) >= limit:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()
        finally:
            for future in window:
                future.cancel()

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

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise NotRunning("the pool is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:  # KeyboardInterrupt: cancel the call, as a cancelled coroutine would
            future.cancel()
            raise
