"""Everything a plugin author imports: ``from spider_core.plugin import hookimpl, ...``.

A plugin implements hooks from :mod:`spider_core.plugin.spec` with :data:`hookimpl` and is
registered under the ``spider_core`` entry-point group. This module re-exports the types those
hooks take and return (including the request and outcomes ``spider_task_finished`` gets), the
framing and executor protocol interfaces, the helpers a launcher or an inspector needs,
and the plugin manager factory for tests. The default plugins in ``plugins/`` import only from
here, ``spider_core``, ``spider_core.tdl`` and ``spider_core.sdk``, as any third-party plugin
can.
"""

from spider_core.models import ExecuteRequest, ExecutorCrash, InTaskFailure, Outcome, PoolConfig, Success, Timeout
from spider_core.plugin.manager import (
    DEFAULT_PLUGINS,
    ENTRY_POINT_GROUP,
    PluginError,
    PluginInfo,
    PluginSettings,
    SpiderPluginManager,
    get_plugin_manager,
)
from spider_core.plugin.spec import PROJECT_NAME, hookimpl, hookspec
from spider_core.plugin.types import (
    EXIT_REASONS,
    SPAWN_REASONS,
    ExitReason,
    LaunchSpec,
    PackageInfo,
    PackageSource,
    RespawnDecision,
    RespawnState,
    SpawnReason,
    TaskPackage,
)
from spider_core.protocol import (
    CORE_PROTOCOL,
    DEFAULT_MAX_FRAME_SIZE,
    ENV_PACKAGE_DIR,
    CoreProtocol,
    ExecutorProtocol,
    FrameDecoder,
    Framing,
    FramingError,
    ProtocolError,
    die_with_parent,
    execute_fields,
    execute_primitive,
)

__all__ = [
    "CORE_PROTOCOL",
    "CoreProtocol",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "ENV_PACKAGE_DIR",
    "EXIT_REASONS",
    "ExecuteRequest",
    "ExecutorCrash",
    "ExecutorProtocol",
    "ExitReason",
    "FrameDecoder",
    "Framing",
    "FramingError",
    "InTaskFailure",
    "LaunchSpec",
    "Outcome",
    "PROJECT_NAME",
    "PackageInfo",
    "PackageSource",
    "ProtocolError",
    "PluginError",
    "PluginInfo",
    "PluginSettings",
    "PoolConfig",
    "RespawnDecision",
    "RespawnState",
    "SPAWN_REASONS",
    "SpawnReason",
    "SpiderPluginManager",
    "Success",
    "TaskPackage",
    "Timeout",
    "die_with_parent",
    "execute_fields",
    "execute_primitive",
    "get_plugin_manager",
    "hookimpl",
    "hookspec",
]
