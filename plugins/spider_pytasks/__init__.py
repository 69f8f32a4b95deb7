"""spider_pytasks: the default plugin for task packages written in Python, with the SDK in
:mod:`spider_core.sdk`. It resolves a directory package ``<package_dir>/<name>/__init__.py``
(one that holds ``lib<name>.so`` is native, left to ``spider_libso``), imports it as
``spider_pytasks.loaded.<name>`` or loads an installed one that ``spider_installed`` found,
checks that its :class:`spider_core.sdk.Package` is named ``<name>``, and lists and describes
such packages for ``spider packages`` in a child process (:mod:`spider_pytasks.inspect`),
never in the caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from spider_core.plugin import InstalledPackage, PackageInfo, PackageSource, hookimpl
from spider_core.tdl import validate_package_name
from spider_pytasks.finder import KIND, find_directory_package

if TYPE_CHECKING:
    from spider_pytasks.loader import PythonPackage


@hookimpl(trylast=True)
def spider_resolve_package(package: str, package_dir: Path | None) -> PackageSource | None:
    validate_package_name(package)
    directory = None if package_dir is None else find_directory_package(package_dir, package)
    if directory is None:
        return None
    return PackageSource(package=package, kind=KIND, location=directory)


@hookimpl(trylast=True)
def spider_load_package(source: PackageSource) -> PythonPackage | None:
    if source.kind != KIND:
        return None
    from spider_pytasks.loader import load_directory_package, load_entry_point_package

    if isinstance(source.details, InstalledPackage):
        return load_entry_point_package(source.details, expected_name=source.package)
    return load_directory_package(source.location, expected_name=source.package)


@hookimpl
def spider_list_packages(package_dir: Path | None) -> list[PackageInfo]:
    from spider_pytasks.listing import list_packages

    return list_packages(package_dir)


@hookimpl(trylast=True)
def spider_inspect_package(source: PackageSource) -> PackageInfo | None:
    if source.kind != KIND or not isinstance(source.details, InstalledPackage):
        return None
    from spider_pytasks.listing import inspect_installed

    return inspect_installed(source.package, source.details, source.location)
