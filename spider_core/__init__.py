"""spider-core: run native and Python task packages in supervised executor processes. This
module is the user's API and holds nothing else: it re-exports the pools, the request and
outcome models, the errors, the ABI's types, the build tools, ``hookimpl`` and the plugin
manager an embedder builds, each imported on first use (:mod:`spider_core._lazy`), so the
executor process (which imports ``spider_core.executor``) does not pay for the pool, asyncio
or the build tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Each name once, as `X as X` (the re-export form type checkers honour), served lazily by
    # spider_core._lazy. Out of ruff's isort, which would give each `as` import a statement
    # of its own.
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
    from spider_core.plugin.manager import (
        PluginError as PluginError,
        PluginSettings as PluginSettings,
        get_plugin_manager as get_plugin_manager,
    )
    from spider_core.plugin.spec import hookimpl as hookimpl
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
        SoftTimeout as SoftTimeout,
        TaskContext as TaskContext,
        TaskError as TaskError,
        TaskId as TaskId,
        TdlError as TdlError,
        TdlErrorKind as TdlErrorKind,
        Version as Version,
    )
    # isort: on
else:
    from spider_core._lazy import attach

    __getattr__, __dir__ = attach(__name__)
