"""spider_libso: the default package plugin for native spider-tdl libraries: it resolves
``<package_dir>/<name>/lib<name>.so``, loads it with ctypes following spider's
``TdlPackage::load``, and lists and inspects such libraries in a child process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spider_core.plugin import PackageInfo, PackageSource, hookimpl
from spider_core.tdl import HOST_VERSION, InvalidLibrary, Version, library_path
from spider_libso.loader import NativePackage, TdlPackageManager, load_native_package

__all__ = ["NativePackage", "TdlPackageManager", "library_path", "load_native_package"]

KIND = "native"


@hookimpl(trylast=True)
def spider_resolve_package(package: str, package_dir: Path | None) -> PackageSource | None:
    if package_dir is None:
        return None
    path = library_path(package_dir, package)
    try:
        if not path.is_file():
            return None
    except OSError as e:  # an unreadable package directory
        raise InvalidLibrary(f"cannot access {path}: {e.strerror}") from None
    return PackageSource(package=package, kind=KIND, location=path)


@hookimpl(trylast=True)
def spider_load_package(source: PackageSource) -> NativePackage | None:
    if source.kind != KIND:
        return None
    return load_native_package(source.location, expected_name=source.package)


def _inspect(libraries: list[Path]) -> tuple[dict[str, dict[str, Any]], int]:
    """What :mod:`spider_libso.inspect` reads from each library, in a child process (a library
    may crash when opened): records by path, and the child's exit status."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "spider_libso.inspect", *map(str, libraries)],
        capture_output=True,
        text=True,
    )
    found = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        found[record["path"]] = record
    return found, done.returncode


def _crashed(status: int) -> str:
    return f"inspecting it crashed the inspector (exit status {status})"


@hookimpl(trylast=True)
def spider_inspect_package(source: PackageSource) -> PackageInfo | None:
    if source.kind != KIND:
        return None
    found, status = _inspect([source.location])
    record = found.get(str(source.location))
    if record is None:
        return _broken(source.package, source.location, _crashed(status))
    if "error" in record:
        return _broken(source.package, source.location, record["error"])
    version = Version(*record["version"])
    return PackageInfo(
        name=record["name"],
        kind=KIND,
        location=source.location,
        abi_version=str(version),
        compatible=HOST_VERSION.is_compatible_with(version),
    )


@hookimpl
def spider_list_packages(package_dir: Path | None) -> list[PackageInfo]:
    libraries = [] if package_dir is None else sorted(Path(package_dir).glob("*/lib*.so"))
    if not libraries:
        return []
    found, status = _inspect(libraries)
    infos = []
    for library in libraries:
        directory = library.parent.name
        record = found.get(str(library))
        if record is None:
            infos.append(_broken(directory, library, _crashed(status)))
        elif "error" in record:
            infos.append(_broken(directory, library, record["error"]))
        else:
            version = Version(*record["version"])
            error = None
            if library.name != f"lib{directory}.so":
                error = f"the library must be named lib{directory}.so to match its directory"
            elif record["name"] != directory:
                error = f"it declares package name {record['name']!r}, not {directory!r}"
            infos.append(
                PackageInfo(
                    name=directory,
                    kind=KIND,
                    location=library,
                    abi_version=str(version),
                    compatible=HOST_VERSION.is_compatible_with(version),
                    error=error,
                )
            )
    return infos


def _broken(name: str, library: Path, error: str) -> PackageInfo:
    return PackageInfo(name=name, kind=KIND, location=library, error=error)
