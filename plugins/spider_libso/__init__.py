"""spider_libso: the default package plugin for native spider-tdl libraries.

Resolves ``<package_dir>/<name>/lib<name>.so`` and loads it with ctypes following spider's
``TdlPackage::load``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spider_core.hookspecs import hookimpl
from spider_core.models import PackageInfo, PackageSource
from spider_core.tdl import HOST_VERSION, InvalidLibrary, Version, validate_package_name
from spider_libso.loader import NativePackage, TdlPackageManager, load_native_package

__all__ = ["NativePackage", "TdlPackageManager", "library_path", "load_native_package"]

KIND = "native"


def library_path(package_dir: Path, package: str) -> Path:
    """Where a native package named ``package`` lives under ``package_dir``."""
    validate_package_name(package)
    return Path(package_dir) / package / f"lib{package}.so"


@hookimpl(trylast=True)
def spider_resolve_package(package: str, package_dir: Path) -> PackageSource | None:
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


@hookimpl
def spider_list_packages(package_dir: Path) -> list[PackageInfo]:
    libraries = sorted(Path(package_dir).glob("*/lib*.so"))
    if not libraries:
        return []
    done = subprocess.run(
        [sys.executable, "-m", "spider_libso.inspect", *map(str, libraries)],
        capture_output=True,
        text=True,
    )
    found = {}
    for line in done.stdout.splitlines():
        record = json.loads(line)
        found[record["path"]] = record
    infos = []
    for library in libraries:
        directory = library.parent.name
        record = found.get(str(library))
        if record is None:
            infos.append(_broken(directory, library, f"inspecting it crashed the inspector (exit status {done.returncode})"))
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
                    version=str(version),
                    compatible=HOST_VERSION.is_compatible_with(version),
                    error=error,
                )
            )
    return infos


def _broken(name: str, library: Path, error: str) -> PackageInfo:
    return PackageInfo(name=name, kind=KIND, location=library, error=error)
