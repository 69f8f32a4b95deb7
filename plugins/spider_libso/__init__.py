"""spider_libso: the default package plugin for native spider-tdl libraries.

Resolves ``<package_dir>/<name>/lib<name>.so`` and loads it with ctypes following spider's
``TdlPackage::load``.
"""

from __future__ import annotations

from pathlib import Path

from spider_core.hookspecs import hookimpl
from spider_core.models import PackageSource
from spider_core.tdl import validate_package_name
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
    if not path.is_file():
        return None
    return PackageSource(package=package, kind=KIND, location=path)


@hookimpl(trylast=True)
def spider_load_package(source: PackageSource) -> NativePackage | None:
    if source.kind != KIND:
        return None
    return load_native_package(source.location, expected_name=source.package)
