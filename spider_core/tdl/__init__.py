"""The contract with spider's Rust code: ABI version, errors, task context, wire format.

This package is spider-core's ground floor: it imports nothing else from ``spider_core``. The
Python task SDK (``Package``, ``Task``, ``task``) lives in :mod:`spider_core.sdk`; importing
those three names from here still works but warns (``DeprecationWarning``).
"""

import importlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # `X as X` re-exports each name for type checkers (see spider_core/__init__.py).
    # isort: off
    from spider_core.tdl.context import (
        TaskContext as TaskContext,
        TaskId as TaskId,
        TaskIdKind as TaskIdKind,
    )
    from spider_core.tdl.errors import (
        DuplicatePackage as DuplicatePackage,
        EncodingError as EncodingError,
        ErrorPayloadDeserializationFailure as ErrorPayloadDeserializationFailure,
        ExecutorError as ExecutorError,
        IncompatibleVersion as IncompatibleVersion,
        InvalidLibrary as InvalidLibrary,
        InvalidUtf8 as InvalidUtf8,
        PackageInitError as PackageInitError,
        TaskError as TaskError,
        TdlError as TdlError,
        TdlErrorKind as TdlErrorKind,
    )
    from spider_core.tdl.names import (
        InvalidPackageName as InvalidPackageName,
        is_utf8 as is_utf8,
        library_path as library_path,
        validate_package_name as validate_package_name,
    )
    from spider_core.tdl.outputs import (
        OutputsOption as OutputsOption,
        SerializedTaskOutputs as SerializedTaskOutputs,
    )
    from spider_core.tdl.version import (
        HOST_VERSION as HOST_VERSION,
        Version as Version,
    )
    from spider_core.tdl.wire import (
        EMPTY_FRAME as EMPTY_FRAME,
        WireFormatError as WireFormatError,
        decode_value as decode_value,
        decode_values as decode_values,
        encode_value as encode_value,
        encode_value_parts as encode_value_parts,
        encode_values as encode_values,
        frame_payload_parts as frame_payload_parts,
        frame_payloads as frame_payloads,
        payload_views as payload_views,
        unframe_payloads as unframe_payloads,
    )
    # isort: on

#: Each name and its module, imported on first use: the executor needs the errors and the
#: version at start, not the task context or the wire format.
_EXPORTS = {
    "TaskContext": "spider_core.tdl.context",
    "TaskId": "spider_core.tdl.context",
    "TaskIdKind": "spider_core.tdl.context",
    "DuplicatePackage": "spider_core.tdl.errors",
    "EncodingError": "spider_core.tdl.errors",
    "ErrorPayloadDeserializationFailure": "spider_core.tdl.errors",
    "ExecutorError": "spider_core.tdl.errors",
    "IncompatibleVersion": "spider_core.tdl.errors",
    "InvalidLibrary": "spider_core.tdl.errors",
    "InvalidUtf8": "spider_core.tdl.errors",
    "PackageInitError": "spider_core.tdl.errors",
    "TaskError": "spider_core.tdl.errors",
    "TdlError": "spider_core.tdl.errors",
    "TdlErrorKind": "spider_core.tdl.errors",
    "InvalidPackageName": "spider_core.tdl.names",
    "is_utf8": "spider_core.tdl.names",
    "library_path": "spider_core.tdl.names",
    "validate_package_name": "spider_core.tdl.names",
    "OutputsOption": "spider_core.tdl.outputs",
    "SerializedTaskOutputs": "spider_core.tdl.outputs",
    "HOST_VERSION": "spider_core.tdl.version",
    "Version": "spider_core.tdl.version",
    "EMPTY_FRAME": "spider_core.tdl.wire",
    "WireFormatError": "spider_core.tdl.wire",
    "decode_value": "spider_core.tdl.wire",
    "decode_values": "spider_core.tdl.wire",
    "encode_value": "spider_core.tdl.wire",
    "encode_value_parts": "spider_core.tdl.wire",
    "encode_values": "spider_core.tdl.wire",
    "frame_payload_parts": "spider_core.tdl.wire",
    "frame_payloads": "spider_core.tdl.wire",
    "payload_views": "spider_core.tdl.wire",
    "unframe_payloads": "spider_core.tdl.wire",
}

__all__ = sorted(_EXPORTS)

#: Names that moved to :mod:`spider_core.sdk`; still importable from here, with a warning.
_MOVED_TO_SDK = frozenset({"Package", "Task", "task"})


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if name in _MOVED_TO_SDK:
        warnings.warn(
            f"spider_core.tdl.{name} moved to spider_core.sdk.{name}; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module("spider_core.sdk"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
