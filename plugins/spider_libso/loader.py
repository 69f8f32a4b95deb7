"""Load spider-tdl native packages with ctypes, as spider's ``TdlPackage::load`` does.

docs/abi.md §1.4-1.5, §2 and §8: the load order (version, name, optional init, execute), argument
arrays whose pointers are never NULL, symbols looked up by string, and the free rule for
every result buffer.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from spider_core.tdl import (
    HOST_VERSION,
    DuplicatePackage,
    EncodingError,
    ErrorPayloadDeserializationFailure,
    IncompatibleVersion,
    InvalidLibrary,
    InvalidUtf8,
    PackageInitError,
    TaskError,
    TdlError,
    Version,
)

if TYPE_CHECKING:
    from _ctypes import CFuncPtr  # ctypes._CFuncPtr at runtime; typeshed does not export that name

GET_VERSION = "__spider_tdl_package_get_version"
GET_NAME = "__spider_tdl_package_get_name"
INIT = "__spider_tdl_package_init"
EXECUTE = "__spider_tdl_package_execute"


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("patch", ctypes.c_uint32)]


class _InArray(ctypes.Structure):
    """A borrowed ``CArray`` built from ``bytes``: ``c_char_p`` points into the object, never NULL."""

    _fields_ = [("pointer", ctypes.c_char_p), ("length", ctypes.c_size_t)]


def _borrow(data: bytes | memoryview) -> tuple[_InArray, object]:
    """A borrowed ``CArray`` over ``data`` and what must stay alive while the call runs: a
    ``bytes`` object is pointed into as it is; a writable buffer (inputs in shared memory)
    through a ctypes array over its memory, without a copy."""
    if isinstance(data, bytes):
        return _InArray(data, len(data)), data
    if not data or data.readonly:  # nothing to point into, or not writable: copied
        copy = bytes(data)
        return _InArray(copy, len(copy)), copy
    view = (ctypes.c_char * len(data)).from_buffer(data)
    return _InArray(ctypes.cast(view, ctypes.c_char_p), len(data)), view


class _OutArray(ctypes.Structure):
    """A ``CArray`` returned by a package (not NUL-terminated, so read it by length)."""

    _fields_ = [("pointer", ctypes.c_void_p), ("length", ctypes.c_size_t)]


class _Result(ctypes.Structure):
    _fields_ = [("is_error", ctypes.c_bool), ("pointer", ctypes.c_void_p), ("length", ctypes.c_size_t)]


_libc = ctypes.CDLL(None)
_free = _libc.free
_free.argtypes = [ctypes.c_void_p]
_free.restype = None
_string_at = ctypes.string_at
_MAX_CACHED_NAMES = 4096
#: Inputs up to this size are kept with their argument until the next call (see ``execute``).
_KEEP_INPUTS = 4096


#: Outputs at least this large are not copied out of the package's buffer: ``execute`` returns a
#: view of it, freed once the last reference to the view goes (the executor writes the view
#: to the pipe, or copies it into shared memory, and drops it).
_LEND_FROM = 64 * 1024


def _take(result: _Result) -> bytes:
    """Copy a result buffer out and free it, exactly once; never touch an empty one."""
    length = result.length
    if not length:
        return b""
    data = _string_at(result.pointer, length)
    _free(result.pointer)
    return data


def _lend(result: _Result) -> bytes | memoryview:
    """A result buffer as :func:`_take` gives it, or, from :data:`_LEND_FROM` bytes on, a
    view of it, not copied, freed (exactly once) with the view's last reference."""
    length = result.length
    if length < _LEND_FROM:
        return _take(result)
    buffer = (ctypes.c_char * length).from_address(result.pointer)
    weakref.finalize(buffer, _free, result.pointer)
    return memoryview(buffer).cast("B")


def _tdl_error(payload: bytes, path: Path) -> TdlError:
    try:
        return TdlError.decode(payload)
    except EncodingError as e:
        raise ErrorPayloadDeserializationFailure(
            f"{path} returned an error payload that is not a msgpack TdlError: {e}"
        ) from None


class NativePackage:
    """A loaded ``lib<name>.so``; ``execute`` runs one task."""

    kind = "native"
    #: Inputs in shared memory are passed to the package where they lie.
    accepts_buffers = True

    def __init__(self, path: Path, name: str, version: Version, execute: CFuncPtr) -> None:
        self.path = path
        self.name = name
        self.version = version
        self._execute = execute
        self._names: dict[str, _InArray] = {}  # task name -> its argument, built once
        # The last context and inputs, and their arguments: a structure costs more to build
        # than the comparison, and calls repeat them (the context nearly always; the inputs
        # of a task called with the same values again).
        self._ctx: tuple[bytes, _InArray] = (b"", _InArray(b"", 0))
        self._inputs: tuple[bytes, _InArray] = (b"", _InArray(b"", 0))

    def __repr__(self) -> str:
        return f"<NativePackage {self.name} {self.version} {self.path}>"

    def execute(self, task: str, raw_ctx: bytes | memoryview, raw_inputs: bytes | memoryview) -> bytes | memoryview:
        """Run ``task``; return its wire-format outputs (large ones as a view of the package's
        own buffer, not copied) or raise an ``ExecutorError``."""
        name = self._names.get(task)
        if name is None:
            encoded = task.encode("utf-8", "surrogateescape")
            name = _InArray(encoded, len(encoded))
            if len(self._names) < _MAX_CACHED_NAMES:  # names come from requests: bound the cache
                self._names[task] = name
        if raw_ctx.__class__ is bytes and raw_inputs.__class__ is bytes:  # the pipes: the usual case
            last, ctx = self._ctx
            if raw_ctx != last:
                ctx = _InArray(raw_ctx, len(raw_ctx))
                self._ctx = (raw_ctx, ctx)
            last, inputs = self._inputs
            if raw_inputs != last:
                inputs = _InArray(raw_inputs, len(raw_inputs))
                if len(raw_inputs) <= _KEEP_INPUTS:
                    self._inputs = (raw_inputs, inputs)
            result = self._execute(name, ctx, inputs)
        else:
            (ctx, ctx_memory), (inputs, inputs_memory) = _borrow(raw_ctx), _borrow(raw_inputs)
            result = self._execute(name, ctx, inputs)
            del ctx_memory, inputs_memory  # the views of the shared memory go with the call
        if result.is_error:
            raise TaskError(_tdl_error(_take(result), self.path))
        return _lend(result)


def _symbol(lib: ctypes.CDLL, name: str) -> CFuncPtr | None:
    try:
        return lib[name]  # by string: `lib.__x` inside a class would be name-mangled
    except AttributeError:
        return None


def load_native_package(path: Path, expected_name: str | None = None) -> NativePackage:
    """Open, check and initialise a native package (spider's load order).

    :param path: The ``lib<name>.so`` file.
    :param expected_name: The name the package was requested by; the declared name must match.
    :raises ExecutorError: ``InvalidLibrary``, ``IncompatibleVersion``, ``InvalidUtf8`` or
        ``PackageInitError``, each naming the file.
    """
    path = Path(os.path.abspath(path))  # a bare file name would make dlopen search the system
    try:
        lib = ctypes.CDLL(str(path))
    except OSError as e:
        raise InvalidLibrary(
            f"cannot load {path}: {e}; check that it is a shared library built for this machine "
            f"(cc -shared -fPIC) with all its dependencies available"
        ) from None

    missing = [s for s in (GET_VERSION, GET_NAME) if _symbol(lib, s) is None]
    if missing:
        raise InvalidLibrary(
            f"{path} does not export {' or '.join(missing)}; is it a spider-tdl package? "
            "Check the exported symbols with `nm -D`"
        )
    get_version = lib[GET_VERSION]
    get_version.argtypes = []
    get_version.restype = _Version
    raw = get_version()
    version = Version(raw.major, raw.minor, raw.patch)
    if not HOST_VERSION.is_compatible_with(version):
        raise IncompatibleVersion(package=version, executor=HOST_VERSION)

    get_name = lib[GET_NAME]
    get_name.argtypes = []
    get_name.restype = _OutArray
    raw_name = get_name()  # static storage: never freed
    name_bytes = _string_at(raw_name.pointer, raw_name.length) if raw_name.length else b""
    try:
        name = name_bytes.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidUtf8(f"{path} declares a package name that is not valid UTF-8: {e}") from None
    if expected_name is not None and name != expected_name:
        raise InvalidLibrary(
            f"{path} declares package name {name!r} but was requested as {expected_name!r}; "
            f"a package must live in <package_dir>/<name>/lib<name>.so under its declared name"
        )

    init = _symbol(lib, INIT)
    if init is not None:
        init.argtypes = []
        init.restype = _Result
        result = init()
        data = _take(result)
        if result.is_error:
            raise PackageInitError(_tdl_error(data, path))

    execute = _symbol(lib, EXECUTE)
    if execute is None:
        raise InvalidLibrary(f"{path} does not export {EXECUTE}; it cannot run tasks")
    execute.argtypes = [_InArray, _InArray, _InArray]
    execute.restype = _Result
    return NativePackage(path, name, version, execute)


class TdlPackageManager:
    """Loaded native packages by declared name, as spider's executor keeps them."""

    def __init__(self) -> None:
        self._packages: dict[str, NativePackage] = {}

    def load(self, path: Path, expected_name: str | None = None) -> NativePackage:
        package = load_native_package(path, expected_name)
        if package.name in self._packages:
            raise DuplicatePackage(
                f"package {package.name!r} from {package.path} is already loaded "
                f"from {self._packages[package.name].path}"
            )
        self._packages[package.name] = package
        return package

    def get(self, name: str) -> NativePackage | None:
        return self._packages.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._packages

    def __len__(self) -> int:
        return len(self._packages)
