"""Everything a plugin author imports: ``from spider_core.plugin import hookimpl, ...``.

A plugin implements hooks from :mod:`spider_core.plugin.spec` with :data:`hookimpl` and is
registered under the ``spider_core`` entry-point group. This module re-exports the types those
hooks take and return (including the request and outcomes ``spider_task_finished`` gets), the
framing and executor protocol interfaces, the helpers a launcher or an inspector needs,
and the plugin manager factory for tests. The default plugins in ``plugins/`` import only from
here, ``spider_core``, ``spider_core.tdl`` and ``spider_core.sdk``, as any third-party plugin
can.

Each name is imported on first use: the executor process imports this package (and its
plugins import from it) without paying for the user-facing models it never needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # `X as X` re-exports each name for type checkers (see spider_core/__init__.py).
    # isort: off
    from spider_core.models import (
        ExecuteRequest as ExecuteRequest,
        ExecutorCrash as ExecutorCrash,
        InTaskFailure as InTaskFailure,
        Outcome as Outcome,
        PoolConfig as PoolConfig,
        Success as Success,
        outcome_name as outcome_name,
        Timeout as Timeout,
    )
    from spider_core.plugin.manager import (
        DEFAULT_PLUGINS as DEFAULT_PLUGINS,
        ENTRY_POINT_GROUP as ENTRY_POINT_GROUP,
        PluginError as PluginError,
        PluginInfo as PluginInfo,
        PluginSettings as PluginSettings,
        Registration as Registration,
        SpiderPluginManager as SpiderPluginManager,
        get_plugin_manager as get_plugin_manager,
    )
    from spider_core.plugin.spec import PROJECT_NAME as PROJECT_NAME, hookimpl as hookimpl, hookspec as hookspec
    from spider_core.plugin.types import (
        EXIT_REASONS as EXIT_REASONS,
        SPAWN_REASONS as SPAWN_REASONS,
        ExecutorHandle as ExecutorHandle,
        TASK_PACKAGE_GROUP as TASK_PACKAGE_GROUP,
        ExitReason as ExitReason,
        InstalledPackage as InstalledPackage,
        LaunchSpec as LaunchSpec,
        PackageInfo as PackageInfo,
        PackageOrigin as PackageOrigin,
        PackageSource as PackageSource,
        PoolView as PoolView,
        RespawnDecision as RespawnDecision,
        RespawnState as RespawnState,
        SpawnReason as SpawnReason,
        Spawner as Spawner,
        TaskPackage as TaskPackage,
    )
    from spider_core.protocol import (
        CORE_PROTOCOL as CORE_PROTOCOL,
        DEFAULT_MAX_FRAME_SIZE as DEFAULT_MAX_FRAME_SIZE,
        ENV_FORK_SERVER as ENV_FORK_SERVER,
        ENV_PACKAGE_DIR as ENV_PACKAGE_DIR,
        CoreProtocol as CoreProtocol,
        ExecutorProtocol as ExecutorProtocol,
        Frame as Frame,
        FrameDecoder as FrameDecoder,
        Framing as Framing,
        FramingError as FramingError,
        LengthDelimitedDecoder as LengthDelimitedDecoder,
        ProtocolError as ProtocolError,
        die_with_parent as die_with_parent,
        execute_fields as execute_fields,
        execute_primitive as execute_primitive,
    )
    # isort: on

_EXPORTS = {
    "ExecuteRequest": "spider_core.models",
    "ExecutorCrash": "spider_core.models",
    "InTaskFailure": "spider_core.models",
    "Outcome": "spider_core.models",
    "PoolConfig": "spider_core.models",
    "Success": "spider_core.models",
    "Timeout": "spider_core.models",
    "outcome_name": "spider_core.models",
    "DEFAULT_PLUGINS": "spider_core.plugin.manager",
    "ENTRY_POINT_GROUP": "spider_core.plugin.manager",
    "PluginError": "spider_core.plugin.manager",
    "PluginInfo": "spider_core.plugin.manager",
    "PluginSettings": "spider_core.plugin.manager",
    "Registration": "spider_core.plugin.manager",
    "SpiderPluginManager": "spider_core.plugin.manager",
    "get_plugin_manager": "spider_core.plugin.manager",
    "PROJECT_NAME": "spider_core.plugin.spec",
    "hookimpl": "spider_core.plugin.spec",
    "hookspec": "spider_core.plugin.spec",
    "EXIT_REASONS": "spider_core.plugin.types",
    "SPAWN_REASONS": "spider_core.plugin.types",
    "ExecutorHandle": "spider_core.plugin.types",
    "TASK_PACKAGE_GROUP": "spider_core.plugin.types",
    "ExitReason": "spider_core.plugin.types",
    "InstalledPackage": "spider_core.plugin.types",
    "LaunchSpec": "spider_core.plugin.types",
    "PackageInfo": "spider_core.plugin.types",
    "PackageOrigin": "spider_core.plugin.types",
    "PackageSource": "spider_core.plugin.types",
    "PoolView": "spider_core.plugin.types",
    "RespawnDecision": "spider_core.plugin.types",
    "RespawnState": "spider_core.plugin.types",
    "SpawnReason": "spider_core.plugin.types",
    "Spawner": "spider_core.plugin.types",
    "TaskPackage": "spider_core.plugin.types",
    "CORE_PROTOCOL": "spider_core.protocol",
    "CoreProtocol": "spider_core.protocol",
    "ExecutorProtocol": "spider_core.protocol",
    "ProtocolError": "spider_core.protocol",
    "execute_fields": "spider_core.protocol",
    "execute_primitive": "spider_core.protocol",
    "DEFAULT_MAX_FRAME_SIZE": "spider_core.protocol",
    "ENV_FORK_SERVER": "spider_core.protocol",
    "ENV_PACKAGE_DIR": "spider_core.protocol",
    "Frame": "spider_core.protocol",
    "FrameDecoder": "spider_core.protocol",
    "Framing": "spider_core.protocol",
    "FramingError": "spider_core.protocol",
    "LengthDelimitedDecoder": "spider_core.protocol",
    "die_with_parent": "spider_core.protocol",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
