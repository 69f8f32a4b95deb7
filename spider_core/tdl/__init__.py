"""The contract with spider's Rust code: ABI version, errors, task context, wire format.

This package is spider-core's ground floor: it imports nothing else from ``spider_core``. The
Python task SDK (``Package``, ``Task``, ``task``) lives in :mod:`spider_core.sdk`; importing
those three names from here still works but warns (``DeprecationWarning``).
"""

import importlib
import warnings
from typing import Any

from spider_core.tdl.context import TaskContext, TaskId, TaskIdKind
from spider_core.tdl.errors import (
    DuplicatePackage,
    EncodingError,
    ErrorPayloadDeserializationFailure,
    ExecutorError,
    IncompatibleVersion,
    InvalidLibrary,
    InvalidUtf8,
    PackageInitError,
    TaskError,
    TdlError,
    TdlErrorKind,
)
from spider_core.tdl.names import InvalidPackageName, is_utf8, library_path, validate_package_name
from spider_core.tdl.outputs import OutputsOption, SerializedTaskOutputs
from spider_core.tdl.version import HOST_VERSION, Version
from spider_core.tdl.wire import (
    EMPTY_FRAME,
    WireFormatError,
    decode_value,
    decode_values,
    encode_value,
    encode_values,
    frame_payloads,
    unframe_payloads,
)

__all__ = [
    "DuplicatePackage",
    "EMPTY_FRAME",
    "EncodingError",
    "ErrorPayloadDeserializationFailure",
    "ExecutorError",
    "HOST_VERSION",
    "IncompatibleVersion",
    "InvalidLibrary",
    "InvalidPackageName",
    "InvalidUtf8",
    "OutputsOption",
    "PackageInitError",
    "SerializedTaskOutputs",
    "TaskContext",
    "TaskError",
    "TaskId",
    "TaskIdKind",
    "TdlError",
    "TdlErrorKind",
    "Version",
    "WireFormatError",
    "decode_value",
    "decode_values",
    "encode_value",
    "encode_values",
    "frame_payloads",
    "is_utf8",
    "library_path",
    "unframe_payloads",
    "validate_package_name",
]

#: Names that moved to :mod:`spider_core.sdk`; still importable from here, with a warning.
_MOVED_TO_SDK = frozenset({"Package", "Task", "task"})


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_SDK:
        warnings.warn(
            f"spider_core.tdl.{name} moved to spider_core.sdk.{name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("spider_core.sdk"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
