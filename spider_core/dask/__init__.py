"""Scale out on Dask: a supervised spider-core pool on every Dask worker.

``pip install 'spider-core-pool[dask]'`` brings ``distributed``; nothing else in spider-core imports
it (``import spider_core`` and the executor stay free of Dask).

- :class:`SpiderWorkerPlugin` is a ``distributed.WorkerPlugin``: registered with
  ``client.register_plugin(SpiderWorkerPlugin(config))``, it opens one
  :class:`~spider_core.SyncProcessPool` in every Dask worker process at setup (and in every
  worker that joins later, or that the nanny restarts) and closes it at teardown.
- :func:`submit` and :func:`map` send :class:`~spider_core.ExecuteRequest` s to the cluster;
  each Dask future's result is the :data:`~spider_core.Outcome`, exactly as the local pool
  returns it.

The package's modules: :mod:`~spider_core.dask.worker` (the plugin, :func:`submit` and
:func:`map`) and :mod:`~spider_core.dask.cluster` (``spider batch --dask``'s cluster).

How the two layers share the work:

- **One pool per worker process.** Each Dask worker process owns one pool with
  ``config.slots`` executors (plus one standby per slot with ``standby=True``); its executors
  are children of the worker process and die with it (``PR_SET_PDEATHSIG``). Every other
  ``PoolConfig`` field (``default_timeout``, ``recycle_after``, ``max_executor_rss``, ...)
  applies per worker pool, as locally. ``inherited_env`` is copied from the worker's
  environment, entry-point plugins are those installed on the worker, and with a ``log_dir``
  each worker's pool logs as ``<em_id>-<worker name>`` so workers sharing a directory never
  write to the same file.
- **Threads and slots.** A Dask worker runs up to ``nthreads`` tasks at once, each in a thread
  that blocks in ``pool.execute`` until the outcome is there. Give workers
  ``nthreads >= slots``, or some slots stay idle (setup logs a warning); with more threads than
  slots the extra tasks wait in the pool's first-come, first-served queue (their hard timeout
  starts when they hold a slot).
- **Outcomes, not errors.** A task failure, an executor crash or a hard timeout is an outcome
  (the future's result), handled on the worker as locally: the Dask worker never notices. Only
  an ``InternalError`` (a bad request, a pool that cannot start an executor) is raised, and so
  becomes the Dask task's error. Dask retries a task only when the worker running it is lost
  (within the scheduler's ``allowed_failures``), so a task may run twice: make tasks that can.
  ``retries=`` additionally retries tasks that raised.
- **Cancelling.** Cancelling a future (``future.cancel()``, ``client.cancel``), releasing the
  last reference to it, or closing its client cancels the call on the worker: a task still
  waiting for a slot never runs, a running one has its executor killed (within a tenth of a
  second), as for a cancelled call of a local pool.
"""

from __future__ import annotations

from spider_core.dask.worker import PLUGIN_NAME, SpiderWorkerPlugin, WorkerPoolError, submit, worker_pool
from spider_core.dask.worker import map as map

# ``map`` is public too (``spider_core.dask.map``), but left out of ``__all__`` so that a star
# import does not shadow the builtin.
__all__ = ["PLUGIN_NAME", "SpiderWorkerPlugin", "WorkerPoolError", "submit", "worker_pool"]
