"""The worker side of spider-core on Dask: :class:`SpiderWorkerPlugin` opens a pool in every
Dask worker process, :func:`submit` and :func:`map` send requests to them (see the package
docstring for how the two layers share the work)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import io
import logging
import os
import re
import shutil
import signal
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs
from distributed import Client, Future, WorkerPlugin, get_worker

from spider_core.errors import InternalError
from spider_core.models import ExecuteRequest, Outcome, PoolConfig
from spider_core.pool import SyncProcessPool
from spider_core.pool.requests import check_timeout

logger = logging.getLogger("spider_core.dask")

#: The name the plugin registers under: one spider-core pool per worker. Registering another
#: ``SpiderWorkerPlugin`` replaces the pool of every worker (Dask tears the old one down first).
PLUGIN_NAME = "spider-core"

#: Worker address -> its pool, or the one sentence saying why its setup failed (a module dict,
#: not plugin state: in-process workers may share one plugin object). ``_OWNERS``: worker
#: address -> ``id`` of the plugin whose setup made that entry; only its teardown removes it.
_POOLS: dict[str, SyncProcessPool | str] = {}
_OWNERS: dict[str, int] = {}
#: Worker address -> a future done when the setup running there ends.
_STARTING: dict[str, asyncio.Future[None]] = {}

_SUBMIT_KEYWORDS = frozenset(
    {"key", "workers", "resources", "retries", "priority", "fifo_timeout", "allow_other_workers"}
)
_MAP_KEYWORDS = _SUBMIT_KEYWORDS | {"batch_size"}
#: Seconds between a running task's looks at whether Dask cancelled it.
_CANCEL_POLL = 0.1


class WorkerPoolError(InternalError):
    """A Dask worker has no spider-core pool to serve the call: its ``SpiderWorkerPlugin``
    setup failed (the message says on which worker, and why) or no plugin is registered."""


class SpiderWorkerPlugin(WorkerPlugin):
    """Open a :class:`~spider_core.SyncProcessPool` on every Dask worker; close it at teardown.

    ``client.register_plugin(SpiderWorkerPlugin(config))`` sets the pool up on every worker
    (and on each worker that joins later) and raises the first worker's setup error, if any:
    a ``package_dir`` missing on a worker is a :class:`WorkerPoolError` naming the worker and
    the path. ``client.unregister_worker_plugin(PLUGIN_NAME)`` or closing the worker closes the
    pool: the calls in progress finish, every executor is stopped and reaped.

    :param config: The pool's configuration on every worker; ``package_dir`` must exist on
        every worker (the same path everywhere), unless ``upload`` is given.
    :param upload: A package directory on the client's machine to ship to the workers, for
        clusters without a shared filesystem. It is archived when the plugin is made (sent to
        the scheduler and to every worker with the plugin, so keep it small: built packages,
        not sources), unpacked on each worker under its Dask ``local_directory`` (removed with
        it) and used there instead of ``config.package_dir``.
    """

    name = PLUGIN_NAME
    idempotent = False

    def __init__(self, config: PoolConfig, *, upload: str | os.PathLike[str] | None = None) -> None:
        if not isinstance(config, PoolConfig):
            raise TypeError(f"config must be a PoolConfig, got {type(config).__name__}")
        self.config = config
        self.upload = None if upload is None else Path(upload)
        self._archive = None if self.upload is None else _pack(self.upload)

    async def setup(self, worker: Any) -> None:
        address = worker.address
        if worker.plugins.get(PLUGIN_NAME) is not self:
            raise WorkerPoolError(
                f"register SpiderWorkerPlugin under its own name {PLUGIN_NAME!r} (one pool per Dask worker), "
                "not under another"
            )
        _OWNERS[address] = id(self)
        starting = _STARTING[address] = asyncio.get_running_loop().create_future()
        try:
            pool = await asyncio.to_thread(self._open, worker)
        except WorkerPoolError as e:
            _POOLS[address] = str(e)
            raise
        except Exception as e:
            message = f"the spider-core pool on Dask worker {address} could not start: {type(e).__name__}: {e}"
            _POOLS[address] = message
            raise WorkerPoolError(message) from e
        else:
            _POOLS[address] = pool
        finally:
            if _STARTING.get(address) is starting:
                del _STARTING[address]
            starting.set_result(None)

    async def teardown(self, worker: Any) -> None:
        starting = _STARTING.get(worker.address)
        if starting is not None:  # Dask may remove a plugin while its setup runs: let it finish
            await asyncio.shield(starting)
        if _OWNERS.get(worker.address) != id(self):
            return  # its setup was refused: the pool there, if any, is another plugin's
        del _OWNERS[worker.address]
        pool = _POOLS.pop(worker.address, None)
        if isinstance(pool, SyncProcessPool):
            await asyncio.to_thread(pool.close)

    def _open(self, worker: Any) -> SyncProcessPool:
        """On the worker: check or unpack the packages, then start the pool (blocking)."""
        config = self.config
        if self._archive is not None:
            config = attrs.evolve(config, package_dir=_unpack(self._archive, Path(worker.local_directory)))
        elif config.package_dir is not None and not config.package_dir.is_dir():
            raise WorkerPoolError(f"package_dir {config.package_dir} does not exist on Dask worker {worker.address}")
        if config.log_dir is not None:
            config = attrs.evolve(config, em_id=f"{config.em_id}-{_file_safe(str(worker.name))}")
        nthreads = worker.state.nthreads
        if nthreads < config.slots:
            logger.warning(
                "Dask worker %s runs %d task threads for %d spider-core slots: %d slots stay idle "
                "(start the workers with nthreads >= slots)",
                worker.address, nthreads, config.slots, config.slots - nthreads,
            )
        pool = SyncProcessPool(config)
        try:
            pool.start()
        except BaseException:
            pool.close()
            raise
        logger.info(
            "spider-core pool on Dask worker %s: %d slots, package_dir %s", worker.address, config.slots, config.package_dir
        )
        return pool

    def __repr__(self) -> str:
        upload = "" if self.upload is None else f", upload={str(self.upload)!r}"
        return f"SpiderWorkerPlugin(package_dir={str(self.config.package_dir)!r}, slots={self.config.slots}{upload})"


class _LocalWorker(WorkerPlugin):
    """For the workers of ``spider batch --dask local:N``, children of the ``spider`` process
    on its terminal: they report (or keep quiet) as ``spider`` does, with ``levels`` for some
    loggers and, if a worker's root logger has no handler, one writing ``fmt`` lines to stderr;
    and they ignore the terminal's SIGINT and SIGHUP, which ``spider`` handles for them (it
    closes the cluster; a worker whose parent is gone exits)."""

    name = "spider-core-local-worker"

    def __init__(self, levels: dict[str, int], fmt: str) -> None:
        self.levels = levels
        self.fmt = fmt

    def setup(self, worker: Any) -> None:
        for name, level in self.levels.items():
            logging.getLogger(name).setLevel(level)
        root = logging.getLogger()
        if not root.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter(self.fmt))
            root.addHandler(handler)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_IGN)


def worker_pool(worker: Any = None) -> SyncProcessPool:
    """The pool of ``worker`` (default: the worker running the current task), for tasks and
    ``client.run`` functions that want it directly (its ``pids``, say).

    :raises WorkerPoolError: the worker has no pool: its setup failed, or no
        ``SpiderWorkerPlugin`` is registered; or, without ``worker``, this is not a Dask
        worker's task or ``client.run`` function.
    """
    if worker is None:
        try:
            worker = get_worker()
        except ValueError:  # Dask's "No worker found"
            raise WorkerPoolError(
                "worker_pool() without a worker runs only on a Dask worker (in a task or a client.run "
                "function); elsewhere, pass the worker"
            ) from None
    pool = _POOLS.get(worker.address)
    if isinstance(pool, SyncProcessPool):
        return pool
    if pool is None:
        raise WorkerPoolError(
            f"no spider-core pool on Dask worker {worker.address}: "
            "register one with client.register_plugin(SpiderWorkerPlugin(config))"
        )
    raise WorkerPoolError(pool)


def _execute(request: ExecuteRequest, hard_timeout: float | None, soft_timeout: float | None) -> Outcome:
    """The Dask task: run ``request`` on this worker's pool and return its outcome.

    Dask cannot stop a task's thread; this one stops itself: while it waits for the outcome it
    looks every ``_CANCEL_POLL`` seconds whether Dask cancelled the task (its future cancelled
    or released by every client, its client gone), and then cancels the call, which kills the
    executor running it, as cancelling a ``SyncProcessPool.submit`` future does.
    """
    worker = get_worker()
    pool = _POOLS.get(worker.address)
    if not isinstance(pool, SyncProcessPool):
        pool = worker_pool(worker)  # raises the clear error
    call = pool.submit(request, hard_timeout, soft_timeout=soft_timeout)
    try:
        key = worker.get_current_task()
    except KeyError:  # pragma: no cover - not in one of the worker's task threads
        key = None
    try:
        while True:
            try:
                return call.result(timeout=_CANCEL_POLL if key is not None else None)
            except concurrent.futures.TimeoutError:
                if _cancelled(worker, key):
                    call.cancel()
                    raise concurrent.futures.CancelledError(f"Dask cancelled task {key!r}; its call was cancelled") from None
    except BaseException:
        call.cancel()  # done already: a no-op
        raise


def _cancelled(worker: Any, key: Any) -> bool:
    """Whether the worker no longer wants the result of its task ``key``."""
    task = worker.state.tasks.get(key)
    return task is None or task.state == "cancelled"


def submit(
    client: Client,
    request: ExecuteRequest,
    hard_timeout: float | None = None,
    *,
    soft_timeout: float | None = None,
    **dask_kwargs: Any,
) -> Future[Outcome]:
    """Run ``request`` on the cluster; the returned Dask future's result is its ``Outcome``.

    :param hard_timeout: As for ``SyncProcessPool.execute``; None: the workers'
        ``PoolConfig.default_timeout``.
    :param dask_kwargs: Passed to ``client.submit``: ``key``, ``workers``, ``resources``,
        ``retries``, ``priority``, ``fifo_timeout``, ``allow_other_workers``. The task is
        never pure (each call runs); its key is ``<package>.<task>-<uuid>`` unless ``key=``
        is given.
    """
    _check_keywords("submit", dask_kwargs, _SUBMIT_KEYWORDS)
    if not isinstance(request, ExecuteRequest):
        raise TypeError(f"request must be an ExecuteRequest, got {type(request).__name__}")
    _check_timeouts(hard_timeout, soft_timeout)
    dask_kwargs.setdefault("key", _key(request))
    return client.submit(_execute, request, hard_timeout, soft_timeout, pure=False, **dask_kwargs)


def map(
    client: Client,
    requests: Iterable[ExecuteRequest],
    hard_timeout: float | None = None,
    *,
    soft_timeout: float | None = None,
    **dask_kwargs: Any,
) -> list[Future[Outcome]]:
    """Run every request on the cluster: one Dask future per request, in request order, each
    resolving to that request's ``Outcome`` (as :func:`submit`; ``batch_size`` is accepted too).
    """
    _check_keywords("map", dask_kwargs, _MAP_KEYWORDS)
    _check_timeouts(hard_timeout, soft_timeout)
    requests = list(requests)
    for request in requests:
        if not isinstance(request, ExecuteRequest):
            raise TypeError(f"every request must be an ExecuteRequest, got {type(request).__name__}")
    if not requests:
        return []
    dask_kwargs.setdefault("key", [_key(request) for request in requests])
    n = len(requests)
    return client.map(_execute, requests, [hard_timeout] * n, [soft_timeout] * n, pure=False, **dask_kwargs)


def _check_timeouts(hard_timeout: float | None, soft_timeout: float | None) -> None:
    """Refuse a bad timeout here, on the client, as the workers' pools would, before Dask
    ships the call (and a worker logs its failure).

    :raises InvalidRequest: not a positive, finite number of seconds.
    """
    if hard_timeout is not None:
        check_timeout(hard_timeout)
    if soft_timeout is not None:
        check_timeout(soft_timeout, "soft_timeout")


def _key(request: ExecuteRequest) -> str:
    # The dashboard groups tasks by the part before the last "-<hex>": package.task.
    return f"{request.package}.{request.task}-{uuid.uuid4().hex}"


def _check_keywords(function: str, given: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise TypeError(
            f"spider_core.dask.{function}() got an unexpected keyword argument {unknown[0]!r} "
            f"(Dask keywords it passes on: {', '.join(sorted(allowed))})"
        )


def _file_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "worker"


# -- upload -----------------------------------------------------------------------------------


def _pack(directory: Path) -> bytes:
    """``directory`` as a gzipped tar (without ``__pycache__``), reproducible for the same files."""
    if not directory.is_dir():
        what = "is not a directory" if directory.exists() else "does not exist"
        raise FileNotFoundError(f"cannot upload the package directory {directory}: it {what}")

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if "__pycache__" in Path(info.name).parts:
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as archive:
        for path in sorted(directory.rglob("*")):
            archive.add(path, arcname=path.relative_to(directory).as_posix(), recursive=False, filter=clean)
    return buffer.getvalue()


def _unpack(archive: bytes, local_directory: Path) -> Path:
    """Unpack ``archive`` under the worker's local directory, once per content; its path."""
    root = local_directory / "spider-core-packages"
    target = root / hashlib.sha256(archive).hexdigest()[:16]
    if target.is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".unpacking-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: refuse links and paths outside
                tar.extractall(staging, filter="data")
            else:  # pragma: no cover
                tar.extractall(staging)
        os.rename(staging, target)  # atomic: a directory under this name is always complete
    except OSError:
        if not target.is_dir():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
