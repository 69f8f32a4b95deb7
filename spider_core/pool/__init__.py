"""The pool: supervised executor processes behind ``ProcessPool`` and ``SyncProcessPool``. It
owns one executor process per slot, queues callers for the slots, sends each call's request
(ahead, for the asyncio callers queued behind a busy slot) and reads its outcome, enforces the
hard timeout by SIGKILL, respawns executors after timeouts and crashes (through the launcher
and respawn hooks), captures each executor's log and reports the lifecycle events; it is split
along those seams, one job per module, and speaks to the executor only through
:mod:`spider_core.protocol`.
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
