"""The contract with spider's Rust code: ABI version, errors, task context, wire format, and
the Python task SDK (``Package``, ``task``)."""

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
from spider_core.tdl.sdk import Package, Task, task
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
    "Package",
    "PackageInitError",
    "SerializedTaskOutputs",
    "Task",
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
    "task",
    "unframe_payloads",
    "validate_package_name",
]
