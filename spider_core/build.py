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
    """The package source directory is missing, empty or badly named."""


def get_include() -> str:
    """The directory holding ``spider_tdl.h``, for ``-I``."""
    return str(Path(__file__).parent / "include")


def _compiler(cc: str | None) -> list[str]:
    command = shlex.split(cc or os.environ.get("CC") or "cc")
    if not command or shutil.which(command[0]) is None:
        name = command[0] if command else "''"
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
) -> Path:
    """Build the C package in ``src`` and return the path of the library.

    The package name is the source directory's name. The library is compiled to a temporary
    file and moved into place, so a running executor never sees a half-written one.

    :param cc: The compiler command; defaults to ``$CC``, then ``cc``.
    :param cflags: Extra compiler flags, after ``$CFLAGS``.
    :raises PackageSourceError: ``src`` is missing, holds no ``.c`` file or has a bad name.
    :raises BuildError: no compiler, or the compiler failed (its message included).
    """
    src = Path(src).resolve()
    if not src.is_dir():
        raise PackageSourceError(f"package source directory {src} does not exist")
    sources = sorted(src.glob("*.c"))
    if not sources:
        raise PackageSourceError(f"package source directory {src} has no .c files to compile")
    try:
        name = validate_package_name(src.name)
    except InvalidPackageName as e:
        raise PackageSourceError(f"cannot use directory {src} as a package: {e}") from None
    command = _compiler(cc)

    target_dir = Path(out) / name
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BuildError(f"cannot create output directory {target_dir}: {e.strerror}") from None
    target = target_dir / f"lib{name}.so"
    fd, tmp = tempfile.mkstemp(prefix=f".lib{name}.", suffix=".so.tmp", dir=target_dir)
    os.close(fd)
    argv = [
        *command,
        *BASE_CFLAGS,
        f"-I{get_include()}",
        *shlex.split(os.environ.get("CFLAGS", "")),
        *cflags,
        *map(str, sources),
        "-o",
        tmp,
    ]
    try:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True)
        except OSError as e:
            raise BuildError(f"cannot run C compiler {command[0]!r}: {e.strerror}") from None
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip()
            raise BuildError(
                f"compiling package {name!r} from {src} failed "
                f"(compiler exit status {proc.returncode}):\n{message}"
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
