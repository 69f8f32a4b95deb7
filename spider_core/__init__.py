"""spider-core: run native and Python task packages in supervised executor processes."""

from spider_core.build import BuildError, build_package, get_include
from spider_core.errors import (
    BuildTaskContext,
    EncodeTaskContext,
    EncodeTaskInputs,
    ExecutorCreationFailure,
    InternalError,
    InvalidRequest,
    NotRunning,
)
from spider_core.hookspecs import hookimpl
from spider_core.models import (
    ExecuteRequest,
    ExecutorCrash,
    InTaskFailure,
    Outcome,
    PoolConfig,
    Success,
    Timeout,
)
from spider_core.plugins import PluginError, PluginSettings, get_plugin_manager
from spider_core.pool import ProcessPool, SyncProcessPool
from spider_core.tdl import (
    HOST_VERSION,
    ExecutorError,
    SerializedTaskOutputs,
    TaskContext,
    TaskId,
    TdlError,
    TdlErrorKind,
    Version,
)

__all__ = [
    "HOST_VERSION",
    "BuildError",
    "BuildTaskContext",
    "EncodeTaskContext",
    "EncodeTaskInputs",
    "ExecuteRequest",
    "ExecutorCrash",
    "ExecutorCreationFailure",
    "ExecutorError",
    "InTaskFailure",
    "InternalError",
    "InvalidRequest",
    "NotRunning",
    "Outcome",
    "PluginError",
    "PluginSettings",
    "PoolConfig",
    "ProcessPool",
    "SerializedTaskOutputs",
    "Success",
    "SyncProcessPool",
    "TaskContext",
    "TaskId",
    "TdlError",
    "TdlErrorKind",
    "Timeout",
    "Version",
    "build_package",
    "get_include",
    "get_plugin_manager",
    "hookimpl",
]
