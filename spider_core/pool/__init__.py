"""The pool: supervised executor processes behind ``ProcessPool`` and ``SyncProcessPool``.

Split along its seams, one job per module:

- :mod:`~spider_core.pool.async_pool`: ``ProcessPool``, its lifecycle and entry points;
- :mod:`~spider_core.pool.call`: one call from a prepared request to its outcome, the path
  ``execute``, the sync pool and ``map`` share (sending, the answer, the hard timeout's
  verdict, recycling, the task-finished event), with the map lane and the sync pool's direct
  path;
- :mod:`~spider_core.pool.pipeline`: the ``execute`` path of an asyncio caller, which sends
  the requests of the callers queued behind it ahead (pipelining);
- :mod:`~spider_core.pool.sync_pool`: ``SyncProcessPool``, the same pool on a thread of its
  own for callers without an event loop;
- :mod:`~spider_core.pool.mapping`: ``map``, a lane per slot;
- :mod:`~spider_core.pool.slots`: the slots and the queue of callers;
- :mod:`~spider_core.pool.supervisor`: spawn, standby and respawn (the launcher and respawn
  policy hooks);
- :mod:`~spider_core.pool.process`: one executor process: its channel, its log and its exit;
- :mod:`~spider_core.pool.channel`: the protocol channel's state, shared by
  :mod:`~spider_core.pool.loop_channel` (driven by the event loop) and
  :mod:`~spider_core.pool.thread_channel` (driven by a sync pool's caller);
- :mod:`~spider_core.pool.logsink`: the executor's log, to a file or to ``logging``;
- :mod:`~spider_core.pool.requests`: request validation and encoding, outside the lock;
- :mod:`~spider_core.pool.events`: the lifecycle hooks (executor started and exited, task
  finished).

What the pool and the executor say to each other is in :mod:`spider_core.protocol`.
"""

import logging

from spider_core.pool.async_pool import ProcessPool
from spider_core.pool.logsink import executor_logger
from spider_core.pool.sync_pool import SyncProcessPool

# A library leaves its log records to the application's configuration: without a handler of its
# own, Python's last-resort handler would print the pool's warnings (a handled crash, say) to
# stderr (the logging HOWTO, "Configuring Logging for a Library"); the CLI configures its own.
# Here, where the embedding process starts, not in ``spider_core``: the executor imports that
# too, and runs a native package without importing logging at all.
logging.getLogger("spider_core").addHandler(logging.NullHandler())

__all__ = ["ProcessPool", "SyncProcessPool", "executor_logger"]
