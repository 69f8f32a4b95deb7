"""spider_libso: the default package plugin for native spider-tdl libraries.

Resolves ``<package_dir>/<name>/lib<name>.so`` and loads it with ctypes following spider's
``TdlPackage::load``.
"""

from __future__ import annotations

from pathlib import Path

from spider_core.tdl import validate_package_name
from spider_libso.loader import NativePackage, TdlPackageManager, load_native_package

__all__ = ["NativePackage", "TdlPackageManager", "library_path", "load_native_package", "resolve"]


def library_path(package_dir: Path, package: str) -> Path:
    """Where a native package named ``package`` lives under ``package_dir``."""
    validate_package_name(package)
    return Path(package_dir) / package / f"lib{package}.so"


def resolve(package: str, package_dir: Path) -> Path | None:
    """The package's library if it exists, else None."""
    path = library_path(package_dir, package)
    return path if path.is_file() else None
