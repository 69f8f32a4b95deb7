"""spider_installed: the default plugin for task packages installed with pip. A distribution
provides the task package ``<name>`` with an entry point ``<name>`` in the
``spider_core.task_packages`` group, whose value says the kind: ``module`` for a native
package whose module's directory holds ``lib<name>.so`` (what ``spider build-package SRC
--wheel DIR`` writes), ``module:attribute`` for a Python package whose attribute is its
:class:`spider_core.sdk.Package` (loaded by ``spider_pytasks``); this plugin resolves a name
to the distribution that claims it and lists what is installed for ``spider packages``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from attrs import evolve, field, frozen

from spider_core.plugin import TASK_PACKAGE_GROUP, InstalledPackage, PackageInfo, PackageSource, hookimpl
from spider_core.tdl import DuplicatePackage, ExecutorError, InvalidLibrary, InvalidPackageName, validate_package_name

__all__ = ["LEGACY_GROUP", "Claim", "Installed", "installed_packages", "source_of"]

#: The group of Python task packages that older releases read; still read, never written:
#: each entry point a Python package (``module:attribute``, or a module with a ``package``
#: attribute).
LEGACY_GROUP = "spider_core.packages"


@frozen(kw_only=True)
class Claim:
    """One distribution's entry point for a task package name."""

    name: str
    installed: InstalledPackage
    root: Path  # where the distribution is installed (its site-packages directory)


@frozen(kw_only=True)
class Installed:
    """What the installed distributions declare.

    :param claims: Each task package name, with the distributions that claim it.
    :param unreadable: Distributions that mention the group but whose entry points cannot be
        read, by name: ``(version, root, why)``. They claim nothing; the others still resolve.
    """

    claims: dict[str, list[Claim]] = field(factory=dict)
    unreadable: dict[str, tuple[str | None, Path, str]] = field(factory=dict)


def installed_packages() -> Installed:
    """Every installed task package, read distribution by distribution (one whose metadata is
    broken is set apart, where ``importlib.metadata.entry_points()`` would fail for all). Only
    the distributions whose ``entry_points.txt`` mentions the group have their metadata
    parsed; one found twice on ``sys.path`` counts once, as the first found (the one Python
    imports)."""
    import importlib.metadata

    found = Installed()
    seen: set[str] = set()
    for dist in importlib.metadata.distributions():
        text = dist.read_text("entry_points.txt")
        if not text or (TASK_PACKAGE_GROUP not in text and LEGACY_GROUP not in text):
            continue
        name = dist.name
        if not isinstance(name, str) or _normalized(name) in seen:
            continue
        seen.add(_normalized(name))
        root = Path(str(dist.locate_file("")))
        try:
            declared = dist.entry_points
            entry_points = [(ep.name, ep.value) for ep in declared.select(group=TASK_PACKAGE_GROUP)]
            entry_points += [
                (ep.name, ep.value if ":" in ep.value else f"{ep.value}:package")  # always Python
                for ep in declared.select(group=LEGACY_GROUP)
            ]
        except Exception as e:  # a malformed entry_points.txt raises whatever its parser meets
            found.unreadable[name] = (dist.version, root, f"cannot read its entry points: {type(e).__name__}: {e}")
            continue
        for ep_name, value in entry_points:
            installed = InstalledPackage(entry_point=value, distribution=name, version=dist.version)
            found.claims.setdefault(ep_name, []).append(Claim(name=ep_name, installed=installed, root=root))
    return found


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _kind(installed: InstalledPackage) -> str:
    """``"python"`` for an entry point ``module:attribute``, else ``"native"``."""
    return "python" if ":" in installed.entry_point else "native"


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
    if _kind(installed) == "python":
        return PackageSource(package=name, kind="python", location=claim.root, details=installed)
    module = installed.entry_point
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
_cache: tuple[tuple[str, ...], Installed] | None = None


def _lookup(name: str) -> list[Claim]:
    """The claims on ``name``, from one read of the entry points per process (read again only
    if ``sys.path`` changes): an executor serves the distributions installed when it needed
    the first one, and a new executor sees an upgrade."""
    global _cache
    path = tuple(sys.path)
    if _cache is None or _cache[0] != path:
        _cache = (path, installed_packages())
    return _cache[1].claims.get(name, [])


@hookimpl(trylast=True)
def spider_resolve_package(package: str, installed_packages: bool) -> PackageSource | None:
    """The distribution that claims ``package``, after the package-directory plugins
    (``spider_pytasks``, ``spider_libso``: the package directory wins) and only when
    ``installed_packages`` is on. The entry points are read on the first package that no
    directory holds: an executor that finds all its packages in the directory never reads the
    installed distributions' metadata. Two distributions that claim one name are a
    ``DuplicatePackage`` error naming both; a broken distribution fails only the package it
    claims."""
    if not installed_packages:
        return None
    claims = _lookup(package)
    return source_of(package, claims) if claims else None


@hookimpl
def spider_list_packages(package_dir: Path | None) -> list[PackageInfo]:
    """Every installed task package, described by the plugin that understands its kind (in a
    child process), with its distribution and version. A package the package directory also
    holds is listed too (the directory's copy is the one used); a broken one is listed with
    the reason, and never keeps the others from being listed."""
    from spider_core import get_plugin_manager

    # The kinds an entry point can name (native, python) are the default plugins': no need to
    # read every distribution's entry points again for third-party plugins.
    pm = get_plugin_manager(autoload=False)
    found = installed_packages()
    infos = [
        PackageInfo(name=dist, kind="unknown", location=root, source="installed", distribution=dist, version=version,
                    error=why)
        for dist, (version, root, why) in sorted(found.unreadable.items())
    ]
    for name, claims in sorted(found.claims.items()):
        installed = claims[0].installed
        info = PackageInfo(name=name, kind=_kind(installed), location=claims[0].root, source="installed",
                           distribution=installed.distribution, version=installed.version)
        try:
            validate_package_name(name)
            source = source_of(name, claims)
            described: PackageInfo | None = pm.hook.spider_inspect_package(source=source)
        except (ExecutorError, InvalidPackageName) as e:  # each one sentence
            infos.append(evolve(info, error=str(e)))
            continue
        if described is None:
            infos.append(evolve(info, location=source.location, error=f"no plugin can inspect a {source.kind} package"))
            continue
        error = described.error
        if error is None and described.name != name:
            error = f"it declares package name {described.name!r}, not {name!r}"
        infos.append(evolve(described, name=name, source="installed", distribution=info.distribution,
                            version=info.version, error=error))
    return infos
