"""Where a Python task package lives: a package directory, or an installed entry point.

Resolution only: nothing here imports a task package, the SDK or (unless an installed package
is looked up) ``importlib.metadata``, so an executor that serves native packages pays for none
of them (the resolver runs for every package's first call).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from attrs import frozen

from spider_core.tdl import DuplicatePackage, library_path

if TYPE_CHECKING:
    import importlib.metadata

KIND = "python"
#: Installed Python task packages register here: ``<package name> = module:attribute``.
ENTRY_POINT_GROUP = "spider_core.packages"


@frozen(kw_only=True)
class EntryPointRef:
    """Where an installed package comes from: ``PackageSource.details`` for those packages."""

    value: str  # module:attribute, or module (then its ``package`` attribute)
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "an unknown distribution"
        return f"entry point {self.value} from {dist}"


def find_directory_package(package_dir: Path, package: str) -> Path | None:
    """``<package_dir>/<package>`` if it holds a Python package and no native library (a
    directory with ``lib<package>.so`` is native, whatever else it holds)."""
    directory = Path(package_dir) / package
    if library_path(package_dir, package).is_file():
        return None
    if (directory / "__init__.py").is_file():
        return directory
    return None


def find_entry_point(package: str) -> tuple[Path, EntryPointRef] | None:
    """The installed package named ``package``, if any.

    :raises DuplicatePackage: two distributions provide different packages under that name.
    """
    import importlib.metadata

    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=package):
        found.setdefault(ep.value, ep)
    if not found:
        return None
    refs = [_ref(ep) for ep in found.values()]
    if len(refs) > 1:
        raise DuplicatePackage(
            f"task package {package!r} is installed more than once: "
            f"{'; '.join(ref.describe() for ref in refs)}; uninstall all but one"
        )
    (ep,) = found.values()
    location = Path(ep.dist.locate_file("")) if ep.dist is not None else Path(".")  # type: ignore[arg-type]  # a Path for an installed distribution; typeshed says SimplePath
    return location, refs[0]


def _ref(ep: importlib.metadata.EntryPoint) -> EntryPointRef:
    dist = ep.dist
    return EntryPointRef(
        value=ep.value, distribution=dist.name if dist else None, version=dist.version if dist else None
    )
