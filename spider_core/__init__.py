"""spider-core: run native and Python task packages in supervised executor processes."""

from spider_core.build import BuildError, build_package, get_include
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
    "BuildError",
    "ExecutorError",
    "HOST_VERSION",
    "TaskContext",
    "TaskId",
    "TdlError",
    "TdlErrorKind",
    "Version",
    "build_package",
    "get_include",
]
