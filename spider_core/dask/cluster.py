"""``spider batch --dask``'s cluster: :class:`DaskCluster` runs a batch's requests on the pools
of a Dask cluster's workers (a ``LocalCluster`` it starts, or a running scheduler), as a local
``ProcessPool`` would, and cancels those still running when the batch is interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

import attrs
from distributed import Client, LocalCluster
from distributed.utils import CancelledError  # type: ignore[attr-defined]  # distributed re-exports it untyped

from spider_core.dask.worker import PLUGIN_NAME, SpiderWorkerPlugin, WorkerPoolError, _LocalWorker, submit
from spider_core.errors import InternalError
from spider_core.models import ExecuteRequest, Outcome, PoolConfig

#: Seconds to reach a Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT = 10.0
_WORKER_LOGGERS = ("spider_core", "spider_core.pool", "spider_core.dask")
_WORKER_LOG_FORMAT = "spider: %(levelname)s: %(name)s: %(message)s"


class ClusterUnavailable(Exception):
    """The cluster cannot run the batch: it cannot be reached, used or started, or it cancelled
    the requests; the message says why in one sentence. ``internal``: the cluster failed (a
    worker process that does not start, a lost scheduler), not the address or setup given."""

    def __init__(self, message: str, internal: bool = False) -> None:
        super().__init__(message)
        self.internal = internal


class ClusterError(InternalError):
    """The Dask cluster did not run the request: the workers running it were lost too many
    times (``KilledWorker``), say."""


class DaskCluster:
    """Where ``spider batch --dask`` runs its requests: a Dask cluster with a
    :class:`~spider_core.dask.SpiderWorkerPlugin` of ``config`` on every worker (``--slots``
    per worker), through an asynchronous client on the batch's event loop.

    ``local:N`` starts a ``LocalCluster`` of N worker processes (each with ``config.slots``
    threads) and closes it at the end; an address connects to a running scheduler, registers
    the plugin and unregisters it at the end (the workers' pools close, every executor is
    reaped). Either way an interrupted run cancels its requests still running on the workers:
    their executors are killed.

    :param config: The pool of every worker (``slots`` per worker).
    :param address: A running scheduler's address; None to start a ``LocalCluster``.
    :param workers: How many worker processes the ``LocalCluster`` has (``local:N``).
    :raises ClusterUnavailable: from ``async with``: the cluster cannot be reached, used or
        started; from :meth:`execute`: the cluster cancelled the requests.
    """

    def __init__(self, config: PoolConfig, address: str | None, workers: int | None = None) -> None:
        self.address, self.workers = address, workers
        if self.workers is not None and config.package_dir is not None:
            # The same machine: the workers see the package directory at the same path.
            config = attrs.evolve(config, package_dir=Path(config.package_dir).absolute())
        self.config = config
        self.client: Any = None
        self.cluster: Any = None
        self._registering: asyncio.Future[Any] | None = None

    @property
    def where(self) -> str:
        if self.address is None:
            return f"a local Dask cluster of {self.workers} worker processes"
        return f"the Dask scheduler at {self.address}"

    @property
    def slots(self) -> int:
        """How many requests the cluster runs at once: a slot per worker thread, at most
        ``config.slots`` per worker (at least 1, for a cluster that has no worker yet)."""
        info = self.client.scheduler_info() if self.client is not None else {}
        workers = info.get("n_workers") or 0
        threads = info.get("total_threads") or 0
        if not workers and self.workers is not None:
            workers, threads = self.workers, self.workers * self.config.slots
        return max(1, min(threads, workers * self.config.slots))

    async def __aenter__(self) -> DaskCluster:
        try:
            if self.address is None:
                _start_resource_tracker()
                self.cluster = await LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
                    n_workers=self.workers,
                    threads_per_worker=self.config.slots,
                    processes=True,
                    dashboard_address=None,
                    # Its HTTP server (health, metrics) on any free port: not 8787, which
                    # another cluster (another batch) may hold.
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    # The workers log as this process does: at least warnings, unless the
                    # CLI quieted Dask (without -v).
                    silence_logs=max(logging.WARNING, logging.getLogger("distributed").getEffectiveLevel()),
                    asynchronous=True,
                )
                self.client = Client(self.cluster, asynchronous=True, set_as_default=False)  # type: ignore[no-untyped-call]  # distributed is untyped
                await self.client
                # The workers share this terminal: their pools report as this process's would.
                levels = {name: logging.getLogger(name).getEffectiveLevel() for name in _WORKER_LOGGERS}
                await self.client.register_plugin(_LocalWorker(levels, _WORKER_LOG_FORMAT))
            else:
                # Kept before it connects, so that a failure closes it.
                self.client = Client(self.address, asynchronous=True, timeout=DASK_CONNECT_TIMEOUT,  # type: ignore[no-untyped-call]  # distributed is untyped
                                     set_as_default=False)
                await self.client
            # Shielded, and awaited at the end if the run is interrupted meanwhile: the plugin
            # is unregistered only once every worker has it (Dask could otherwise deliver the
            # removal to a worker before the plugin, whose pool would then stay).
            self._registering = asyncio.ensure_future(self.client.register_plugin(SpiderWorkerPlugin(self.config)))
            await asyncio.shield(self._registering)
        except BaseException as e:
            await self._close()
            if isinstance(e, WorkerPoolError):  # a worker without the package directory, say
                raise ClusterUnavailable(str(e)) from None
            if isinstance(e, OSError) and str(e).startswith("Timed out"):
                raise ClusterUnavailable(
                    f"cannot reach {self.where}: no answer within {DASK_CONNECT_TIMEOUT:g} s"
                ) from None
            if isinstance(e, OSError | ValueError | TypeError):  # a refused handshake, a bad address
                raise ClusterUnavailable(f"cannot use {self.where}: {_one_line(e)}") from None
            if isinstance(e, Exception):  # a worker process that does not start, say
                raise ClusterUnavailable(
                    f"cannot start {self.where}: {type(e).__name__}: {_one_line(e)}", internal=True
                ) from None
            raise  # interrupted
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def execute(self, request: ExecuteRequest, hard_timeout: float) -> Outcome:
        future = submit(self.client, request, hard_timeout)
        try:
            outcome: Outcome = await future
            return outcome
        except asyncio.CancelledError:
            future.release()  # type: ignore[no-untyped-call]  # distributed is untyped; the worker running it kills its executor
            raise
        except InternalError:
            raise
        except CancelledError as e:  # not by this run: the scheduler is lost, say; the run ends
            reason = getattr(e, "reason", None) or _one_line(e)
            raise ClusterUnavailable(
                f"the requests on {self.where} were cancelled ({reason}); --resume runs those without a result",
                internal=True,
            ) from None
        except Exception as e:  # KilledWorker: lost with its workers too many times
            raise ClusterError(f"{type(e).__name__}: {_one_line(e)}") from None

    async def _close(self) -> None:
        """Unregister the plugin (a running scheduler) or close the cluster (``local:N``)."""
        client, cluster, registering = self.client, self.cluster, self._registering
        try:
            if registering is not None and cluster is None and client.status == "running":
                # Even if its setup failed on a worker: the scheduler keeps a plugin it was given.
                await asyncio.wait({registering}, timeout=DASK_CONNECT_TIMEOUT)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.unregister_worker_plugin(PLUGIN_NAME), DASK_CONNECT_TIMEOUT)
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        finally:
            self.client = self.cluster = self._registering = None
            if registering is not None:
                if not registering.done():
                    registering.cancel()
                elif not registering.cancelled():
                    registering.exception()  # retrieved (raised in __aenter__ if it was awaited)
            if cluster is not None:
                with contextlib.suppress(Exception):  # its workers exit with this process anyway
                    await cluster.close()


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (which the cluster's worker processes use)
    with SIGHUP blocked, as it blocks SIGINT and SIGTERM itself: a hangup of the terminal is
    for ``spider``, which closes the cluster, not for the tracker, which would die of it and
    leave the cluster's semaphores behind. A SIGHUP meanwhile waits for the unblock."""
    from multiprocessing import resource_tracker

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
