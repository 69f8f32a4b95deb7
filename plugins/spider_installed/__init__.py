"""spider_installed: the default plugin for task packages installed with pip.

A distribution provides the task package ``<name>`` with an entry point ``<name>`` in the
``spider_core.task_packages`` group. Its value says the kind:

- ``module``: a native package; the module's directory holds ``lib<name>.so`` (what
  ``spider build-package SRC --wheel DIR`` writes);
- ``module:attribute``: a Python package; the attribute is its
  :class:`spider_core.sdk.Package` (loaded by ``spider_pytasks``).

Resolution comes after the package-directory plugins (``spider_pytasks``, ``spider_libso``),
so the package directory wins, and only when ``installed_packages`` is on. The entry points
are read once per process, on the first package that no directory holds: an executor that
finds all its packages in the directory never reads the installed distributions' metadata.
Two distributions that claim one name are a ``DuplicatePackage`` error naming both; a broken
distribution fails only the package it claims.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from attrs import evolve, frozen

from spider_core.plugin import TASK_PACKAGE_GROUP, InstalledPackage, PackageInfo, PackageSource, hookimpl
from spider_core.tdl import DuplicatePackage, InvalidLibrary, InvalidPackageName, validate_package_name

if TYPE_CHECKING:
    import importlib.metadata

__all__ = ["Claim", "installed_packages", "source_of"]


@frozen(kw_only=True)
class Claim:
    """One distribution's entry point for a task package name."""

    name: str
    installed: InstalledPackage
    root: Path  # where the distribution is installed (its site-packages directory)


def installed_packages() -> dict[str, list[Claim]]:
    """Every installed task package by name, each with the distributions that claim it (one
    entry point per distribution: a distribution found twice on ``sys.path`` counts once)."""
    import importlib.metadata

    claims: dict[str, list[Claim]] = {}
    for ep in importlib.metadata.entry_points(group=TASK_PACKAGE_GROUP):
        claim = _claim(ep)
        found = claims.setdefault(ep.name, [])
        if all(c.installed.distribution != claim.installed.distribution for c in found):
            found.append(claim)
    return claims


def _claim(ep: importlib.metadata.EntryPoint) -> Claim:
    dist = ep.dist
    root = Path(str(dist.locate_file(""))) if dist is not None else Path(".")
    installed = InstalledPackage(
        entry_point=ep.value, distribution=dist.name if dist else None, version=dist.version if dist else None
    )
    return Claim(name=ep.name, installed=installed, root=root)


def source_of(name: str, claims: list[Claim]) -> PackageSource:
    """Where the installed package ``name`` lives.

    :raises DuplicatePackage: more than one distribution claims ``name``.
    :raises InvalidLibrary: the entry point names a module that is not installed, or that
        holds no ``lib<name>.so`` (for a native package).
    """
    if len(claims) > 1:
        raise DuplicatePackage(
            f"task package {name!r} is installed more than once: "
            f"{'; '.join(c.installed.describe() for c in claims)}; uninstall all but one"
        )
    (claim,) = claims
    installed = claim.installed
    module, _, attribute = installed.entry_point.partition(":")
    if attribute:
        return PackageSource(package=name, kind="python", location=claim.root, details=installed)
    library = _module_directory(module, name, installed) / f"lib{name}.so"
    if not library.is_file():
        raise InvalidLibrary(
            f"installed task package {name!r} ({installed.describe()}) has no lib{name}.so beside module "
            f"{module}: reinstall the distribution, or point the entry point at a Python package as module:attribute"
        )
    return PackageSource(package=name, kind="native", location=library, details=installed)


def _module_directory(module: str, name: str, installed: InstalledPackage) -> Path:
    """The directory of ``module``, found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise InvalidLibrary(
            f"installed task package {name!r} ({installed.describe()}) names module {module!r}, "
            "which is not installed: reinstall the distribution"
        )
    return Path(spec.origin).parent


#: The installed packages as this process first read them, and the ``sys.path`` they were
#: read from (see :func:`_lookup`).
_cache: tuple[tuple[str, ...], dict[str, list[Claim]]] | None = None


def _lookup(name: str) -> list[Claim]:
    """The claims on ``name``, from one read of the entry points per process (read again only
    if ``sys.path`` changes): an executor serves the distributions installed when it needed
    the first one, and a new executor sees an upgrade."""
    global _cache
    path = tuple(sys.path)
    if _cache is None or _cache[0] != path:
        _cache = (path, installed_packages())
    return _cache[1].get(name, [])


@hookimpl(trylast=True)
def spider_resolve_package(package: str, installed_packages: bool) -> PackageSource | None:
    if not installed_packages:
        return None
    claims = _lookup(package)
    return source_of(package, claims) if claims else None


@hookimpl
def spider_list_packages(package_dir: Path | None) -> list[PackageInfo]:
    """Every installed task package, described by the plugin that understands its kind (in a
    child process); packages the package directory also holds are listed too: it wins."""
    from spider_core.plugin import get_plugin_manager

    pm = get_plugin_manager()
    infos = []
    for name, claims in sorted(installed_packages().items()):
        first = claims[0]
        info = PackageInfo(
            name=name,
            kind="-",
            location=first.root,
            source="installed",
            distribution=first.installed.distribution,
            version=first.installed.version,
        )
        try:
            validate_package_name(name)
            source = source_of(name, claims)
            described: PackageInfo | None = pm.hook.spider_inspect_package(source=source)
        except (InvalidPackageName, DuplicatePackage, InvalidLibrary) as e:
            infos.append(evolve(info, error=e.message if isinstance(e, InvalidLibrary | DuplicatePackage) else str(e)))
            continue
        if described is None:
            infos.append(evolve(info, kind=source.kind, location=source.location, error="no plugin can inspect it"))
            continue
        error = described.error
        if error is None and described.name != name:
            error = f"it declares package name {described.name!r}, not {name!r}"
        infos.append(
            evolve(described, name=name, source="installed", distribution=info.distribution, version=info.version, error=error)
        )
    return infos
