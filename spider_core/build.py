"""Compile a C task package: ``SRC/*.c`` into ``OUT/<name>/lib<name>.so``."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from spider_core.tdl import InvalidPackageName, validate_package_name

#: Flags every package is built with; ``$CFLAGS`` and ``cflags`` come after them.
BASE_CFLAGS = ("-std=c11", "-O2", "-Wall", "-Wextra", "-shared", "-fPIC")


class BuildError(Exception):
    """A package could not be built (no compiler, or the compiler failed)."""


class PackageSourceError(BuildError):
    """The package source directory is missing, empty or badly named, or the output directory
    cannot be written: bad input rather than a failed build."""


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it
    os.umask(mask)
    return mask


def get_include() -> str:
    """The directory holding ``spider_tdl.h``, for ``-I``."""
    return str(Path(__file__).parent / "include")


def _split(text: str, what: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as e:
        raise BuildError(f"cannot parse {what} {text!r}: {e}") from None


def _compiler(cc: str | None) -> list[str]:
    text = cc if cc is not None and cc.strip() else os.environ.get("CC") or "cc"
    command = _split(text, "the compiler command")
    if not command or shutil.which(command[0]) is None:
        name = command[0] if command else text
        raise BuildError(
            f"C compiler {name!r} not found; install one (e.g. apt-get install gcc) "
            "or point $CC at it"
        )
    return command


def build_package(
    src: os.PathLike[str] | str,
    out: os.PathLike[str] | str,
    *,
    cc: str | None = None,
    cflags: Sequence[str] = (),
    check: bool = True,
) -> Path:
    """Build the C package in ``src`` and return the path of the library.

    The package name is the source directory's name. The library is compiled to a temporary
    file and moved into place, so a running executor never sees a half-written one. A failed
    build removes the directories it created, and its message names the target library, not
    the temporary file.

    :param cc: The compiler command; defaults to ``$CC``, then ``cc``.
    :param cflags: Extra compiler flags, after ``$CFLAGS``.
    :param check: Refuse a library that does not export the spider-tdl symbols or declares
        another package name (off only to build broken packages on purpose, for tests).
    :raises PackageSourceError: ``src`` is missing, holds no ``.c`` file or has a bad name.
    :raises BuildError: no compiler, or the compiler failed (its message included).
    :raises PluginError: a plugin cannot load (the library is checked through the hooks).
    """
    src = Path(src).resolve()
    if not src.is_dir():
        what = "is not a directory" if src.exists() else "does not exist"
        raise PackageSourceError(f"package source directory {src} {what}")
    sources = sorted(src.glob("*.c"))
    if not sources:
        raise PackageSourceError(f"package source directory {src} has no .c files to compile")
    try:
        name = validate_package_name(src.name)
    except InvalidPackageName as e:
        raise PackageSourceError(f"cannot use directory {src} as a package: {e}") from None
    command = _compiler(cc)

    target_dir = Path(out) / name
    target = target_dir / f"lib{name}.so"
    env_cflags = _split(os.environ.get("CFLAGS", ""), "$CFLAGS")
    created = missing_directories(target_dir)
    built = False
    tmp: str | None = None
    try:
        try:
            target_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".lib{name}.", suffix=".so.tmp", dir=target_dir)
        except OSError as e:
            raise PackageSourceError(f"cannot write to output directory {target_dir}: {e.strerror}") from None
        os.close(fd)
        argv = [*command, *BASE_CFLAGS, f"-I{get_include()}", *env_cflags, *cflags, *map(str, sources), "-o", tmp]
        try:
            _compile(argv, command[0], name, src)
            if check:
                _check_library(tmp, name)
        except BuildError as e:
            # The library is built under a temporary name; messages name the one it was for.
            raise BuildError(_named(str(e), tmp, target)) from None
        os.chmod(tmp, 0o755 & ~_umask())  # as the compiler would make it, not mkstemp's 0600
        os.replace(tmp, target)
        built = True
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if not built:
            remove_empty(created)  # a failed build leaves no directory it made
    return target


def _compile(argv: list[str], compiler: str, name: str, src: Path) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True)
    except OSError as e:
        raise BuildError(f"cannot run C compiler {compiler!r}: {e.strerror}") from None
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip() or "(the compiler printed nothing)"
        raise BuildError(
            f"compiling package {name!r} from {src} failed (compiler exit status {proc.returncode}):\n{message}"
        )


def _named(message: str, tmp: str, target: Path) -> str:
    """``message`` with the temporary library's name replaced by the target's."""
    return message.replace(tmp, str(target)).replace(os.path.basename(tmp), target.name)


def missing_directories(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty(directories: list[Path]) -> None:
    """Remove each of ``directories`` (deepest first) that is empty; keep the others."""
    for directory in directories:
        try:
            directory.rmdir()
        except FileNotFoundError:
            continue
        except OSError:  # not empty: someone else wrote there, and so into its parents
            return


def _check_library(path: str, name: str) -> None:
    """Refuse a library the executor could never load: it must export the spider-tdl symbols
    and declare the package name. The ``spider_inspect_package`` hook reads it (in a child
    process: it may crash); with no plugin for native libraries, nothing is checked."""
    from spider_core.plugin import PackageSource
    from spider_core.plugin.manager import PluginError, get_plugin_manager

    source = PackageSource(package=name, kind="native", location=path)
    try:
        info = get_plugin_manager().hook.spider_inspect_package(source=source)
    except PluginError:
        raise  # a broken plugin, not a failed build: reported as every command reports it
    except Exception as e:  # a plugin's bug
        raise BuildError(f"cannot check the built library: a plugin failed: {type(e).__name__}: {e}") from None
    if info is None:
        return
    if info.error is not None:
        raise BuildError(f"the built library is not a usable spider-tdl package: {info.error}")
    if info.name != name:
        raise BuildError(
            f"the built library declares package name {info.name!r}, but it must be named after "
            f"its source directory, {name!r} (rename the directory or change __spider_tdl_package_get_name)"
        )
