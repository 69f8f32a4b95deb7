"""spider-core: run native and Python task packages in supervised executor processes.

The public API is re-exported here and imported on first use, so the executor process (which
imports ``spider_core.executor``) does not pay for the pool, asyncio or the build tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # `X as X` re-exports each name for type checkers, which cannot compute __all__ below
    # (tests/test_packaging.py checks it against _EXPORTS). Out of ruff's isort, which would
    # give each `as` import a statement of its own.
    # isort: off
    from spider_core.build import BuildError as BuildError, build_package as build_package, get_include as get_include
    from spider_core.errors import (
        BuildTaskContext as BuildTaskContext,
        EncodeTaskContext as EncodeTaskContext,
        EncodeTaskInputs as EncodeTaskInputs,
        ExecutorCrashed as ExecutorCrashed,
        ExecutorCreationFailure as ExecutorCreationFailure,
        InternalError as InternalError,
        InvalidRequest as InvalidRequest,
        NotRunning as NotRunning,
        OutcomeError as OutcomeError,
        SoftTimeout as SoftTimeout,
        TaskFailed as TaskFailed,
        TaskTimedOut as TaskTimedOut,
    )
    from spider_core.models import (
        ExecuteRequest as ExecuteRequest,
        ExecutorCrash as ExecutorCrash,
        ExecutorStats as ExecutorStats,
        InTaskFailure as InTaskFailure,
        Outcome as Outcome,
        PoolConfig as PoolConfig,
        PoolStats as PoolStats,
        Success as Success,
        Timeout as Timeout,
    )
    from spider_core.plugin import (
        PluginError as PluginError,
        PluginSettings as PluginSettings,
        get_plugin_manager as get_plugin_manager,
        hookimpl as hookimpl,
    )
    from spider_core.pool import ProcessPool as ProcessPool, SyncProcessPool as SyncProcessPool
    from spider_core.tdl import (
        HOST_VERSION as HOST_VERSION,
        DuplicatePackage as DuplicatePackage,
        ErrorPayloadDeserializationFailure as ErrorPayloadDeserializationFailure,
        ExecutorError as ExecutorError,
        IncompatibleVersion as IncompatibleVersion,
        InvalidLibrary as InvalidLibrary,
        InvalidUtf8 as InvalidUtf8,
        PackageInitError as PackageInitError,
        SerializedTaskOutputs as SerializedTaskOutputs,
        TaskContext as TaskContext,
        TaskError as TaskError,
        TaskId as TaskId,
        TdlError as TdlError,
        TdlErrorKind as TdlErrorKind,
        Version as Version,
    )
    # isort: on

_EXPORTS = {
    "BuildError": "spider_core.build",
    "build_package": "spider_core.build",
    "get_include": "spider_core.build",
    "BuildTaskContext": "spider_core.errors",
    "EncodeTaskContext": "spider_core.errors",
    "EncodeTaskInputs": "spider_core.errors",
    "ExecutorCrashed": "spider_core.errors",
    "ExecutorCreationFailure": "spider_core.errors",
    "InternalError": "spider_core.errors",
    "InvalidRequest": "spider_core.errors",
    "NotRunning": "spider_core.errors",
    "OutcomeError": "spider_core.errors",
    "SoftTimeout": "spider_core.errors",
    "TaskFailed": "spider_core.errors",
    "TaskTimedOut": "spider_core.errors",
    "ExecuteRequest": "spider_core.models",
    "ExecutorCrash": "spider_core.models",
    "InTaskFailure": "spider_core.models",
    "Outcome": "spider_core.models",
    "PoolConfig": "spider_core.models",
    "PoolStats": "spider_core.models",
    "ExecutorStats": "spider_core.models",
    "Success": "spider_core.models",
    "Timeout": "spider_core.models",
    "PluginError": "spider_core.plugin",
    "PluginSettings": "spider_core.plugin",
    "get_plugin_manager": "spider_core.plugin",
    "hookimpl": "spider_core.plugin",
    "ProcessPool": "spider_core.pool",
    "SyncProcessPool": "spider_core.pool",
    "HOST_VERSION": "spider_core.tdl",
    "DuplicatePackage": "spider_core.tdl",
    "ErrorPayloadDeserializationFailure": "spider_core.tdl",
    "ExecutorError": "spider_core.tdl",
    "IncompatibleVersion": "spider_core.tdl",
    "InvalidLibrary": "spider_core.tdl",
    "InvalidUtf8": "spider_core.tdl",
    "PackageInitError": "spider_core.tdl",
    "SerializedTaskOutputs": "spider_core.tdl",
    "TaskContext": "spider_core.tdl",
    "TaskError": "spider_core.tdl",
    "TaskId": "spider_core.tdl",
    "TdlError": "spider_core.tdl",
    "TdlErrorKind": "spider_core.tdl",
    "Version": "spider_core.tdl",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spider_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
