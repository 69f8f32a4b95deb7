"""Import Python task packages and run their tasks with spider's error semantics.

A directory package ``<package_dir>/<name>/__init__.py`` is imported as the module
``spider_pytasks.loaded.<name>`` (relative imports inside it work; ``sys.path`` is never
touched; no bytecode is written into the package directory). An installed package is an
entry point of the ``spider_core.task_packages`` group. Either way the module exposes a
:class:`spider_core.sdk.Package`, normally as ``package``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import spider_pytasks.loaded
from spider_core.plugin import TASK_PACKAGE_GROUP, InstalledPackage
from spider_core.sdk import Package
from spider_core.tdl import (
    InvalidLibrary,
    PackageInitError,
    TaskError,
    TdlError,
    TdlErrorKind,
)
from spider_pytasks.finder import KIND

logger = logging.getLogger("spider_pytasks")

#: The module attribute holding a directory package's :class:`~spider_core.sdk.Package`.
PACKAGE_ATTRIBUTE = "package"

_LOADED = spider_pytasks.loaded.__name__


class PythonPackage:
    """A loaded Python task package (a :class:`~spider_core.models.TaskPackage`)."""

    kind = KIND
    #: Python code can be interrupted: a call's soft timeout raises ``SoftTimeout`` inside it.
    interruptible = True
    #: Inputs in shared memory are decoded where they lie (into new Python objects).
    accepts_buffers = True

    def __init__(self, package: Package, location: str, module: ModuleType | None = None) -> None:
        self.package = package
        self.name = package.name
        self.location = location
        self.module = module

    def __repr__(self) -> str:
        return f"<PythonPackage {self.name} {self.location}>"

    def execute(self, task: str, raw_ctx: bytes, raw_inputs: bytes) -> bytes:
        """Run ``task``; return wire-format outputs.

        :raises TaskError: wrapping the task's ``TdlError`` (``TaskNotFound``, a decoding or
            encoding failure, or one it raised), or an ``ExecutionError`` ``"ExcType: message"``
            for any other exception (``KeyboardInterrupt``, a leaked ``CancelledError`` and other
            ``BaseException`` subclasses included), whose traceback is logged. Only
            ``SystemExit`` is not caught: it ends the executor, as ``os._exit`` would.
        """
        try:
            return self.package.execute_raw(task, raw_ctx, raw_inputs)
        except TdlError as e:
            raise TaskError(e) from None
        except SystemExit:
            raise
        except BaseException as e:
            logger.exception("task raised", extra={"fields": {"package": self.name, "task": task}})
            raise TaskError(TdlError(TdlErrorKind.ExecutionError, _exception_text(e))) from None


#: What importing or initialising a package may raise without ending the executor: a module
#: that calls ``sys.exit`` (argparse at import time) is a broken package, not a crash.
_LOAD_FAILURES = (Exception, SystemExit, KeyboardInterrupt)


def _exception_text(e: BaseException) -> str:
    try:
        text = str(e)
    except Exception:
        text = "<the exception's message could not be printed>"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# -- modules -------------------------------------------------------------------------------


def module_name(package: str, suffix: str = "") -> str:
    """The module name a directory package is imported as (``.`` and ``%`` are escaped, so
    distinct package names never share a module)."""
    return f"{_LOADED}.{package.replace('%', '%25').replace('.', '%2E')}{suffix}"


def forget_module(name: str) -> None:
    """Drop a module and its submodules from ``sys.modules``."""
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]


@contextlib.contextmanager
def _no_bytecode() -> Iterator[None]:
    previous = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        yield
    finally:
        sys.dont_write_bytecode = previous


def import_directory(directory: Path, name: str) -> ModuleType:
    """Import ``directory/__init__.py`` as the package module ``name`` (replacing any module
    of that name). A failing import leaves nothing in ``sys.modules``."""
    init = directory / "__init__.py"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(directory)])
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise ImportError(f"cannot make an import spec for {init}")
    forget_module(name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        with _no_bytecode():
            spec.loader.exec_module(module)
    except BaseException:
        forget_module(name)
        raise
    return module


def package_of(obj: Any, where: str) -> Package:
    """The :class:`Package` an imported object is or holds (a module's ``package``).

    :raises InvalidLibrary: it is neither.
    """
    if isinstance(obj, ModuleType):
        obj = getattr(obj, PACKAGE_ATTRIBUTE, None)
        if obj is None:
            raise InvalidLibrary(
                f"{where} does not define `{PACKAGE_ATTRIBUTE}`; a Python task package exposes "
                f'its tasks as `{PACKAGE_ATTRIBUTE} = spider_core.sdk.Package("<name>")`'
            )
    if not isinstance(obj, Package):
        raise InvalidLibrary(
            f"{where}: the package object is of type {type(obj).__name__}, not spider_core.sdk.Package; "
            f'a Python task package exposes `{PACKAGE_ATTRIBUTE} = spider_core.sdk.Package("<name>")`'
        )
    return obj


def _check(package: Package, expected_name: str | None, where: str, rule: str) -> None:
    if expected_name is not None and package.name != expected_name:
        raise InvalidLibrary(
            f"{where} declares package name {package.name!r} but was requested as {expected_name!r}; {rule}"
        )
    try:
        package.validate()
    except TypeError as e:
        raise InvalidLibrary(f"{where}: {e}") from None


# -- loading -------------------------------------------------------------------------------


def _initialize(package: Package, where: str) -> None:
    try:
        package.initialize()
    except TdlError as e:
        raise PackageInitError(e) from None
    except _LOAD_FAILURES as e:
        logger.exception("package init raised", extra={"fields": {"package": package.name, "location": where}})
        raise PackageInitError(TdlError(TdlErrorKind.ExecutionError, _exception_text(e))) from None


def load_directory_package(directory: Path, expected_name: str | None = None) -> PythonPackage:
    """Import, check and initialise ``directory/__init__.py``.

    :param directory: ``<package_dir>/<name>``.
    :param expected_name: The requested name; the declared one must match.
    :raises ExecutorError: ``InvalidLibrary`` (the module fails to import, has no package,
        declares another name or has unresolvable annotations) or ``PackageInitError``.
    """
    directory = Path(directory).absolute()
    name = expected_name if expected_name is not None else directory.name
    init = directory / "__init__.py"
    mod_name = module_name(name)
    try:
        module = import_directory(directory, mod_name)
    except _LOAD_FAILURES as e:
        logger.exception("package import failed", extra={"fields": {"package": name, "location": str(init)}})
        raise InvalidLibrary(f"cannot import Python task package {name!r} from {init}: {_exception_text(e)}") from None
    try:
        package = package_of(module, str(init))
        _check(
            package,
            expected_name,
            str(init),
            "a Python package must live in <package_dir>/<name>/__init__.py under its declared name",
        )
        _initialize(package, str(init))
    except BaseException:
        forget_module(mod_name)
        raise
    return PythonPackage(package, str(directory), module)


def load_entry_point_package(ref: InstalledPackage, expected_name: str | None = None) -> PythonPackage:
    """Import, check and initialise an installed package.

    :raises ExecutorError: as :func:`load_directory_package`.
    """
    import importlib.metadata

    where = ref.describe()
    entry_point = importlib.metadata.EntryPoint(name=expected_name or "", value=ref.entry_point, group=TASK_PACKAGE_GROUP)
    try:
        obj = entry_point.load()
    except _LOAD_FAILURES as e:
        logger.exception("package import failed", extra={"fields": {"package": expected_name, "location": where}})
        raise InvalidLibrary(
            f"cannot import installed task package {expected_name!r} ({where}): {_exception_text(e)}"
        ) from None
    package = package_of(obj, where)
    _check(package, expected_name, where, "the entry point name must be the declared package name")
    _initialize(package, where)
    return PythonPackage(package, where, obj if isinstance(obj, ModuleType) else sys.modules.get(entry_point.module))
