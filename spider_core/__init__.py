"""spider-core: run native and Python task packages in supervised executor processes."""

from spider_core.build import BuildError, build_package, get_include
from spider_core.hookspecs import hookimpl
from spider_core.plugins import PluginError, PluginSettings, get_plugin_manager
from spider_core.tdl import (
    HOST_VERSION,
    ExecutorError,
    TaskContext,
    TaskId,
    TdlError,
    TdlErrorKind,
    Version,
)

__all__ = [
    "HOST_VERSION",
    "BuildError",
    "ExecutorError",
    "PluginError",
    "PluginSettings",
    "TaskContext",
    "TaskId",
    "TdlError",
    "TdlErrorKind",
    "Version",
    "build_package",
    "get_include",
    "get_plugin_manager",
    "hookimpl",
]
