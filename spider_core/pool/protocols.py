"""Which protocol the pool speaks with its executors: ``PoolConfig.protocol``, resolved through
the ``spider_protocol`` hook when the pool starts (one protocol object per slot), with
spider-core's own :class:`~spider_core.protocol.CoreProtocol` built in; and what starts its
executors, through the ``spider_spawner`` hook (one spawner per pool)."""

from __future__ import annotations

from spider_core.errors import ExecutorCreationFailure
from spider_core.models import PoolConfig
from spider_core.plugin import Spawner
from spider_core.plugin.manager import PluginError, SpiderPluginManager
from spider_core.protocol import CORE_PROTOCOL, CoreProtocol, ExecutorProtocol


def protocol_names(pm: SpiderPluginManager) -> list[str]:
    """The protocols a pool can speak: the built-in one, then every plugin's."""
    names = [CORE_PROTOCOL]
    for found in pm.hook.spider_protocol_names():
        for name in found or ():
            if name not in names:
                names.append(name)
    return names


def _failed(hook: str, error: Exception) -> ExecutorCreationFailure:
    if isinstance(error, PluginError):  # a clear sentence: what the protocol needs
        return ExecutorCreationFailure(str(error))
    return ExecutorCreationFailure(f"the {hook} hook failed: {type(error).__name__}: {error}")


def open_protocol(pm: SpiderPluginManager, config: PoolConfig) -> ExecutorProtocol:
    """A new protocol object for one slot of a pool with ``config``.

    :raises ExecutorCreationFailure: no plugin implements ``config.protocol`` (the message names
        the available ones), or the hook (or, for the built-in protocol, the framing) failed.
    """
    name = config.protocol
    try:
        protocol: ExecutorProtocol | None = pm.hook.spider_protocol(name=name, config=config)
    except Exception as e:
        raise _failed("spider_protocol", e) from None
    if protocol is not None:
        return protocol
    if name == CORE_PROTOCOL:
        try:
            return CoreProtocol(pm.call_required("spider_framing", max_frame_size=config.max_frame_size, environment={}))
        except Exception as e:
            raise _failed("spider_framing", e) from None
    try:
        available = ", ".join(repr(n) for n in protocol_names(pm))
    except Exception as e:
        raise _failed("spider_protocol_names", e) from None
    blocked = sorted(pm.settings.blocked)
    hint = f"; blocked plugins: {', '.join(blocked)}" if blocked else ""
    raise ExecutorCreationFailure(
        f"unknown protocol {name!r} (PoolConfig.protocol): the available protocols are {available}{hint}"
    )


def open_spawner(pm: SpiderPluginManager, config: PoolConfig) -> Spawner:
    """The spawner of a pool with ``config`` (``start_method``, ...).

    :raises ExecutorCreationFailure: no plugin answered, or the hook failed (a
        ``PluginError``'s message alone: a configuration the spawner cannot serve).
    """
    try:
        spawner: Spawner = pm.call_required("spider_spawner", config=config)
    except Exception as e:
        raise _failed("spider_spawner", e) from None
    return spawner
