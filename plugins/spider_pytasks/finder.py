"""Where a Python task package lives in a package directory.

Resolution only: nothing here imports a task package or the SDK, so an executor that serves
native packages pays for none of them (the resolver runs for every package's first call).
Installed packages are found by ``spider_installed``.
"""

from __future__ import annotations

from pathlib import Path

from spider_core.tdl import library_path

KIND = "python"


def find_directory_package(package_dir: Path, package: str) -> Path | None:
    """``<package_dir>/<package>`` if it holds a Python package and no native library (a
    directory with ``lib<package>.so`` is native, whatever else it holds)."""
    directory = Path(package_dir) / package
    if library_path(package_dir, package).is_file():
        return None
    if (directory / "__init__.py").is_file():
        return directory
    return None
