"""Task packages as wheels: ``spider build-package SRC --wheel DIR`` and a hatchling build hook.

A task package wheel is a platform wheel (``py3-none-linux_<arch>``: any Python 3, one
machine architecture) holding a small Python package (the *module*) whose directory holds
``lib<name>.so``, and declaring the entry point ``<name> = <module>`` in the
``spider_core.task_packages`` group, where the ``spider_installed`` plugin finds it.

hatchling writes the wheel (the ``wheel`` extra installs it); :class:`TaskPackageHook` is the
hatchling build hook that compiles the C package into the module and tags the wheel. A
project that builds its own task package wheel with hatchling uses it from a one-line
``hatch_build.py`` (``from spider_core.wheel import TaskPackageHook``); ``spider build-package
--wheel`` writes such a project into a temporary directory and builds it.
"""

from __future__ import annotations

import json
import re
import shutil
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

from spider_core.build import BuildError, PackageSourceError, build_package, missing_directories, remove_empty
from spider_core.plugin import TASK_PACKAGE_GROUP
from spider_core.tdl import InvalidPackageName, validate_package_name

#: The default distribution name of task package ``<name>``: ``spider-task-<name>``.
DEFAULT_DIST_PREFIX = "spider-task-"

#: A distribution name, as PEP 508 allows it.
_DIST_NAME = re.compile(r"[A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9]", re.IGNORECASE | re.ASCII)


def platform_tag() -> str:
    """This machine's wheel tag for task packages: ``py3-none-linux_<arch>`` (the library is
    native, not tied to a Python version: the executor loads it with ctypes)."""
    return "py3-none-" + re.sub(r"[-.]", "_", sysconfig.get_platform())


def default_dist_name(package: str) -> str:
    """``spider-task-<name>`` (underscores become hyphens)."""
    return DEFAULT_DIST_PREFIX + package.replace("_", "-")


def module_name(dist_name: str) -> str:
    """The Python package a wheel's library lives in: the distribution name, normalized, with
    underscores (``spider-task-fib`` -> ``spider_task_fib``).

    :raises PackageSourceError: ``dist_name`` is not a distribution name, or gives no Python
        identifier.
    """
    if _DIST_NAME.fullmatch(dist_name) is None:
        raise PackageSourceError(
            f"--dist-name {dist_name!r} is not a distribution name: use letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )
    module = re.sub(r"[-_.]+", "_", dist_name).lower()
    if not module.isidentifier():
        raise PackageSourceError(
            f"--dist-name {dist_name!r} gives the module name {module!r}, which is not a Python identifier: "
            "start it with a letter"
        )
    return module


def normalized_version(version: str) -> str:
    """``version`` in PEP 440's normal form.

    :raises PackageSourceError: it is not a PEP 440 version.
    """
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(version))
    except InvalidVersion:
        raise PackageSourceError(f"--version {version!r} is not a version number (PEP 440, such as 1.2.0)") from None


class TaskPackageHook(BuildHookInterface):  # type: ignore[type-arg]  # hatchling's generic config
    """hatchling build hook: compile a C task package into the wheel and tag it
    ``py3-none-linux_<arch>``.

    Options (``[tool.hatch.build.targets.wheel.hooks.custom]``): ``source``, the C package
    directory (relative to the project root; its name is the package name); ``module``, the
    Python package of the project that receives ``lib<name>.so``; ``cc``, the compiler
    command (default ``$CC``, then ``cc``).
    """

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        self._build_dir = tempfile.mkdtemp(prefix="spider-wheel-")
        library = build_package(
            Path(self.root, self.config["source"]),
            self._build_dir,
            cc=self.config.get("cc"),
            check=self.config.get("check", True),
        )
        build_data["force_include"][str(library)] = f"{self.config['module']}/{library.name}"
        build_data["tag"] = platform_tag()
        build_data["pure_python"] = False

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        build_dir = getattr(self, "_build_dir", None)
        if build_dir is not None:
            shutil.rmtree(build_dir, ignore_errors=True)


def _toml(value: object) -> str:
    """A TOML string or boolean (JSON's string escapes are TOML's)."""
    return json.dumps(value)


_MODULE_INIT = '''\
"""Task package {name!r}, built by ``spider build-package --wheel``.

The ``spider_installed`` plugin finds ``lib{name}.so`` beside this file through the entry point
``{name} = {module}`` in the ``{group}`` group; nothing here needs importing.
"""

from pathlib import Path

#: The native library of task package {name!r}.
LIBRARY = Path(__file__).with_name("lib{name}.so")
'''


def build_wheel(
    src: Path | str,
    wheel_dir: Path | str,
    *,
    version: str = "0.0.0",
    dist_name: str | None = None,
    cc: str | None = None,
    check: bool = True,
) -> Path:
    """Build the C package in ``src`` and write its wheel into ``wheel_dir``; return the wheel.

    :param version: The distribution's version (PEP 440).
    :param dist_name: The distribution's name; default ``spider-task-<name>``.
    :param cc: The compiler command; defaults to ``$CC``, then ``cc``.
    :param check: As for :func:`~spider_core.build_package`.
    :raises PackageSourceError: bad input: ``src`` (as for ``build_package``), the version,
        the distribution name, or a ``wheel_dir`` that cannot be written.
    :raises BuildError: the library or the wheel could not be built.
    """
    src = Path(src).resolve()
    try:
        name = validate_package_name(src.name)
    except InvalidPackageName as e:
        raise PackageSourceError(f"cannot use directory {src} as a package: {e}") from None
    version = normalized_version(version)
    dist_name = dist_name if dist_name is not None else default_dist_name(name)
    module = module_name(dist_name)
    wheel_dir = Path(wheel_dir)
    created = missing_directories(wheel_dir)
    _check_writable(wheel_dir)
    try:
        return _build_project(src, name, wheel_dir, version=version, dist_name=dist_name, module=module, cc=cc,
                              check=check)
    except BuildError:
        remove_empty(created)  # a failed build leaves no directory it made
        raise


def _build_project(
    src: Path, name: str, wheel_dir: Path, *, version: str, dist_name: str, module: str, cc: str | None, check: bool
) -> Path:
    """Write the project of the wheel into a temporary directory and build it."""
    with tempfile.TemporaryDirectory(prefix="spider-wheel-project-") as project:
        root = Path(project)
        (root / module).mkdir()
        (root / module / "__init__.py").write_text(_MODULE_INIT.format(name=name, module=module, group=TASK_PACKAGE_GROUP))
        hook = {"path": __file__, "source": str(src), "module": module, "check": check}
        if cc is not None:
            hook["cc"] = cc
        (root / "pyproject.toml").write_text(
            "[project]\n"
            f"name = {_toml(dist_name)}\n"
            f"version = {_toml(version)}\n"
            f"description = {_toml(f'The spider task package {name}, built by spider build-package --wheel.')}\n"
            f'\n[project.entry-points."{TASK_PACKAGE_GROUP}"]\n'
            f"{name} = {_toml(module)}\n"
            "\n[tool.hatch.build.targets.wheel]\n"
            f"packages = [{_toml(module)}]\n"
            "\n[tool.hatch.build.targets.wheel.hooks.custom]\n"
            + "".join(f"{key} = {_toml(value)}\n" for key, value in hook.items())
        )
        return _build(root, wheel_dir)


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".spider-write-test-"):
            pass
    except OSError as e:
        raise PackageSourceError(f"cannot write the wheel to {directory}: {e.strerror}") from None


def _build(root: Path, wheel_dir: Path) -> Path:
    """Build the wheel of the project in ``root`` with hatchling."""
    from hatchling.builders.wheel import WheelBuilder

    try:
        (wheel,) = WheelBuilder(str(root)).build(directory=str(wheel_dir), versions=["standard"])
    except BuildError:
        raise
    except Exception as e:  # hatchling's own errors carry no common type
        raise BuildError(f"hatchling could not write the wheel: {type(e).__name__}: {e}") from None
    return Path(wheel)
