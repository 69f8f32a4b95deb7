"""spider's error enums, ``TdlError`` and ``ExecutorError``, encoded as rmp-serde does (docs/abi.md §3).

Every variant is a Python exception so callers can ``raise`` and ``except`` them; ``encode``
and ``decode`` produce and accept spider's exact bytes. Decoding is as lenient as rmp-serde:
a variant may be named or given by its index, and a struct variant may be an array or a map.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import msgpack

from spider_core.tdl.version import Version


class EncodingError(ValueError):
    """Bytes that do not follow one of spider's encodings."""


class TdlErrorKind(enum.Enum):
    """The variants of ``spider_tdl::TdlError``, in declaration order (the index matters)."""

    TaskNotFound = 0
    DeserializationError = 1
    SerializationError = 2
    ExecutionError = 3
    InvalidTaskContext = 4
    Custom = 5


def _unpack(data: bytes, what: str) -> Any:
    try:
        return msgpack.unpackb(data, strict_map_key=False)
    except msgpack.ExtraData as e:  # rmp-serde ignores trailing bytes
        return e.unpacked
    except Exception as e:
        raise EncodingError(f"{what} is not valid msgpack: {e}") from None


def _variant(obj: Any, names: list[str], what: str) -> tuple[str, Any]:
    """Split an externally tagged enum value into (variant name, value)."""
    if not isinstance(obj, dict) or len(obj) != 1:
        raise EncodingError(f"{what} must be a one-entry map {{variant: value}}, got {obj!r}")
    ((key, value),) = obj.items()
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(names):
        key = names[key]
    if key not in names:
        raise EncodingError(f"unknown {what} variant {key!r}; expected one of {', '.join(names)}")
    return key, value


def _string(value: Any, what: str) -> str:
    if isinstance(value, bytes):  # rmp-serde reads a String from bin too
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise EncodingError(f"{what} is not valid UTF-8") from None
    if not isinstance(value, str):
        raise EncodingError(f"{what} must be a string, got {value!r}")
    return value


class TdlError(Exception):
    """A task-level error returned by a package: ``{kind: message}``."""

    def __init__(self, kind: TdlErrorKind | str, message: str) -> None:
        self.kind = TdlErrorKind[kind] if isinstance(kind, str) else kind
        self.message = message
        super().__init__(f"{self.kind.name}: {message}")

    def __repr__(self) -> str:
        return f"TdlError({self.kind.name!r}, {self.message!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # pickle and copy rebuild it from its fields
        return type(self), (self.kind, self.message)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TdlError):
            return NotImplemented
        return (self.kind, self.message) == (other.kind, other.message)

    def __hash__(self) -> int:
        return hash((self.kind, self.message))

    def to_primitive(self) -> dict[str, str]:
        return {self.kind.name: self.message}

    def encode(self) -> bytes:
        encoded: bytes = msgpack.packb(self.to_primitive())
        return encoded

    @classmethod
    def from_primitive(cls, obj: Any) -> TdlError:
        name, value = _variant(obj, [k.name for k in TdlErrorKind], "TdlError")
        return cls(name, _string(value, f"TdlError::{name} message"))

    @classmethod
    def decode(cls, data: bytes) -> TdlError:
        return cls.from_primitive(_unpack(data, "TdlError"))


class ExecutorError(Exception):
    """Why the executor could not produce a task's outputs (``spider_task_executor::ExecutorError``).

    Subclasses are the variants; ``ExecutorError.decode`` returns the right one.
    """

    #: Variant names in declaration order; each subclass registers itself here.
    variants: ClassVar[dict[str, type[ExecutorError]]] = {}
    variant_index: ClassVar[int]

    def __init_subclass__(cls, index: int | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if index is not None:  # abstract helper bases pass no index
            cls.variant_index = index
            ExecutorError.variants[cls.__name__] = cls

    def _value(self) -> Any:
        raise NotImplementedError

    @classmethod
    def _from_value(cls, value: Any) -> ExecutorError:
        raise NotImplementedError

    def to_primitive(self) -> dict[str, Any]:
        return {type(self).__name__: self._value()}

    def encode(self) -> bytes:
        encoded: bytes = msgpack.packb(self.to_primitive())
        return encoded

    @classmethod
    def from_primitive(cls, obj: Any) -> ExecutorError:
        names = sorted(cls.variants, key=lambda n: cls.variants[n].variant_index)
        name, value = _variant(obj, names, "ExecutorError")
        return cls.variants[name]._from_value(value)

    @classmethod
    def decode(cls, data: bytes) -> ExecutorError:
        return cls.from_primitive(_unpack(data, "ExecutorError"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutorError):
            return NotImplemented
        return self.to_primitive() == other.to_primitive()

    def __hash__(self) -> int:
        return hash(self.encode())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._value()!r})"


class _MessageError(ExecutorError):
    """A variant carrying one ``String``."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message,)

    def _value(self) -> str:
        return self.message

    @classmethod
    def _from_value(cls, value: Any) -> ExecutorError:
        return cls(_string(value, f"ExecutorError::{cls.__name__} message"))


class _TdlErrorWrapper(ExecutorError):
    """A variant carrying a ``TdlError``."""

    prefix: ClassVar[str]

    def __init__(self, error: TdlError) -> None:
        self.error = error
        super().__init__(f"{self.prefix}: {error}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.error,)

    def _value(self) -> dict[str, str]:
        return self.error.to_primitive()

    @classmethod
    def _from_value(cls, value: Any) -> ExecutorError:
        return cls(TdlError.from_primitive(value))


class InvalidLibrary(_MessageError, index=0):
    """The package library could not be opened or lacks a required symbol."""


class IncompatibleVersion(ExecutorError, index=1):
    """The package was built for an ABI version this executor cannot run."""

    def __init__(self, package: Version, executor: Version) -> None:
        self.package = package
        self.executor = executor
        super().__init__(
            f"package ABI version {package} is incompatible with executor ABI version "
            f"{executor}; rebuild the package against spider-tdl {executor.major}.{executor.minor}"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.package, self.executor)

    def _value(self) -> list[int]:
        p, e = self.package, self.executor
        return [p.major, p.minor, p.patch, e.major, e.minor, e.patch]

    _FIELDS = (
        "package_major",
        "package_minor",
        "package_patch",
        "executor_major",
        "executor_minor",
        "executor_patch",
    )

    @classmethod
    def _from_value(cls, value: Any) -> ExecutorError:
        if isinstance(value, dict):
            try:
                value = [value[f] for f in cls._FIELDS]
            except KeyError as e:
                raise EncodingError(f"IncompatibleVersion is missing field {e}") from None
        if (
            not isinstance(value, list)
            or len(value) != 6
            or not all(isinstance(v, int) and 0 <= v < 2**32 for v in value)
        ):
            raise EncodingError(f"IncompatibleVersion must be six u32 values, got {value!r}")
        return cls(Version(*value[:3]), Version(*value[3:]))


class DuplicatePackage(_MessageError, index=2):
    """A package with the same declared name is already loaded."""


class InvalidUtf8(_MessageError, index=3):
    """The package's declared name is not valid UTF-8."""


class TaskError(_TdlErrorWrapper, index=4):
    """The task ran and returned an error."""

    prefix = "task error"


class PackageInitError(_TdlErrorWrapper, index=5):
    """The package's init function returned an error."""

    prefix = "package init failed"


class ErrorPayloadDeserializationFailure(_MessageError, index=6):
    """The package returned an error whose bytes are not a valid ``TdlError``."""
