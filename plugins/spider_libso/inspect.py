"""Read a native package's declared name and ABI version without running its init.

Run as ``python -m spider_libso.inspect LIBRARY...`` so that a library that crashes when
opened takes down a throwaway process, not the caller. Prints one JSON object per line:
``{"path", "name", "version"}`` or ``{"path", "error"}``.
"""

from __future__ import annotations

import ctypes
import json
import sys

from spider_core.plugin import die_with_parent
from spider_libso.loader import GET_NAME, GET_VERSION, _OutArray, _Version


def inspect_library(path: str) -> dict[str, object]:
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return {"path": path, "error": f"cannot load: {e}"}
    try:
        get_version, get_name = lib[GET_VERSION], lib[GET_NAME]
    except AttributeError as e:
        return {"path": path, "error": f"not a spider-tdl package: {e}"}
    get_version.restype = _Version
    get_name.restype = _OutArray
    version = get_version()
    name = get_name()
    raw = ctypes.string_at(name.pointer, name.length) if name.length else b""
    try:
        declared = raw.decode()
    except UnicodeDecodeError:
        return {"path": path, "error": "declares a package name that is not valid UTF-8"}
    return {"path": path, "name": declared, "version": [version.major, version.minor, version.patch]}


def main(paths: list[str]) -> int:
    die_with_parent()
    for path in paths:
        print(json.dumps(inspect_library(path)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
