"""Package names and the package directory's layout.

A name from a request must never escape the package directory; a native package named
``<name>`` lives at ``<package_dir>/<name>/lib<name>.so`` (spider's layout, docs/abi.md §1).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

#: lib<name>.so must fit in a file name (NAME_MAX is 255 bytes on Linux).
MAX_PACKAGE_NAME_BYTES = 200


def is_utf8(text: str) -> bool:
    """Whether ``text`` encodes to UTF-8 (no lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


class InvalidPackageName(ValueError):
    """A package name that cannot be used to locate a package."""


def validate_package_name(name: object) -> str:
    """Return ``name`` unchanged if it is a safe package name, else raise ``InvalidPackageName``."""
    if not isinstance(name, str):
        raise InvalidPackageName(f"package name must be a string, got {type(name).__name__}")
    problem = None
    if not name:
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is a relative directory reference"
    elif "\0" in name:
        problem = "contains a NUL byte"
    elif name.startswith("/"):
        problem = "is an absolute path"
    elif "/" in name or "\\" in name:
        problem = "contains a path separator"
    elif not is_utf8(name):
        problem = "is not valid UTF-8"
    elif not name.isprintable():
        problem = "contains a control character"
    elif len(name.encode()) > MAX_PACKAGE_NAME_BYTES:
        problem = f"is {len(name.encode())} bytes long; the limit is {MAX_PACKAGE_NAME_BYTES}"
    if problem:
        raise InvalidPackageName(f"invalid package name {name!r:.60}: the name {problem}")
    return name


def library_path(package_dir: str | PathLike[str], name: str) -> Path:
    """Where the native library of package ``name`` lives: ``<package_dir>/<name>/lib<name>.so``.

    :raises InvalidPackageName: ``name`` is not a safe package name.
    """
    validate_package_name(name)
    return Path(package_dir) / name / f"lib{name}.so"
