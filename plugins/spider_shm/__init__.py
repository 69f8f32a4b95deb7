"""spider_shm: large task inputs and outputs through shared memory instead of the pipes.

Selected with ``PoolConfig(shm_threshold=N)``; inactive (and never imported past this module)
otherwise. A ``bytes`` field of a request or a reply of at least ``N`` bytes (a task's
wire-format inputs or outputs) is copied into a ``memfd`` region that the pool and the
executor both map, and only a reference crosses the pipe (:mod:`spider_shm.framing` has the
format, :mod:`spider_shm.region` the regions' lifetime). A native task's input ``CArray`` then
points straight into the region.

Each slot has two regions, one per direction, created by the pool and freed when it closes;
an executor opens them through ``/proc/<pool pid>/fd`` (so executors of the fork server find
them too) and holds nothing the pool must clean up after a crash. Requests are sent one at a
time per slot (the protocol is not pipelined: the next request reuses the region).

Two hooks: ``spider_protocol`` in the pool (spider-core's protocol over this framing, with
``SPIDER_SHM_THRESHOLD`` in the executors' environment) and ``spider_framing`` in the
executor (this framing when that variable is set).
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

from spider_core.plugin import CORE_PROTOCOL, CoreProtocol, PluginError, hookimpl
from spider_shm.framing import ShmFraming

if TYPE_CHECKING:
    from spider_core.plugin import PoolConfig

__all__ = ["ENV_THRESHOLD", "ShmFraming", "ShmProtocol"]

#: Set in the executors' environment: the threshold, in bytes (``PoolConfig.shm_threshold``).
ENV_THRESHOLD = "SPIDER_SHM_THRESHOLD"

_PR_GET_DUMPABLE = 3

#: The pool-side framings of this process, so that a forked child lets go of their regions.
_owned: weakref.WeakSet[ShmFraming] = weakref.WeakSet()


def _after_fork() -> None:
    for framing in list(_owned):
        framing.forsake()


os.register_at_fork(after_in_child=_after_fork)


class ShmProtocol(CoreProtocol):
    """spider-core's protocol over a :class:`ShmFraming`, one request in flight per slot."""

    pipelined = False  # the next request reuses the request region: never two at once

    def __init__(self, framing: ShmFraming) -> None:
        super().__init__(framing)
        self.environment = {ENV_THRESHOLD: str(framing.threshold)}
        self._framing = framing

    def close(self) -> None:
        """Free the slot's regions (the pool is closed: no executor will read them again)."""
        self._framing.close()


def _check_dumpable() -> None:
    """Executors open the regions through ``/proc/<pool pid>/fd``: the kernel refuses that for
    a process that is not dumpable (set-user-id programs, ``prctl(PR_SET_DUMPABLE, 0)``)."""
    try:
        dumpable = ctypes.CDLL(None).prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if dumpable == 0:
        raise PluginError(
            "PoolConfig.shm_threshold needs a dumpable pool process: executors open its shared memory through "
            f"/proc/{os.getpid()}/fd, which prctl(PR_SET_DUMPABLE, 0) forbids"
        )


# trylast, as every default: an installed plugin still takes over. Among the defaults these are
# asked before spider_msgpack's and spider_rustexec's (registered before them: pluggy asks
# trylast implementations in registration order), and answer only when the pool asked for
# shared memory.


@hookimpl(trylast=True)
def spider_protocol(name: str, config: PoolConfig) -> ShmProtocol | None:
    threshold = config.shm_threshold
    if threshold is None:
        return None
    if name != CORE_PROTOCOL:
        raise PluginError(
            f"PoolConfig.shm_threshold works with the {CORE_PROTOCOL!r} protocol only, not {name!r}: "
            "leave shm_threshold at None"
        )
    _check_dumpable()
    try:
        framing = ShmFraming(config.max_frame_size, threshold, owner=True)
    except OSError as e:
        raise PluginError(f"cannot create shared memory for PoolConfig.shm_threshold: {e.strerror or e}") from None
    _owned.add(framing)
    return ShmProtocol(framing)


@hookimpl(trylast=True)
def spider_framing(max_frame_size: int, environment: Mapping[str, str]) -> ShmFraming | None:
    threshold = environment.get(ENV_THRESHOLD)
    if threshold is None:
        return None
    return ShmFraming(max_frame_size, int(threshold), owner=False)
