"""The contract between the executor and a task package, spider-core's ground floor: spider's
ABI version, its errors, the task context and the wire format (docs/abi.md), and the
``SoftTimeout`` a Python task may be interrupted with. It imports nothing else of
``spider_core`` (only the import helper :mod:`spider_core._lazy`, which imports nothing
either), so every other layer can build on it; each name is imported on first use, as the
executor needs the errors and the version at start, not the task context or the wire format.
Python task packages are written with :mod:`spider_core.sdk`.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Each name once, as `X as X`, served lazily by spider_core._lazy (see spider_core/__init__.py).
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
    from spider_core.tdl.timeout import SoftTimeout as SoftTimeout
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
else:
    from spider_core._lazy import attach

    __getattr__, __dir__ = attach(__name__)
