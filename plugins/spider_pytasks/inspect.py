"""Describe Python task packages without running them in the caller (``spider packages``).

Run as ``python -m spider_pytasks.inspect``: reads a JSON list of candidates on stdin,
``{"name", "directory"}`` or ``{"name", "entry_point"}``, imports each one (its top level runs,
never its init function) and prints one JSON object per candidate, in order:
``{"index", "tasks": [signature, ...], "error": str | null, "location": str | null}``.
Whatever a package prints goes to stderr.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from spider_core.plugin import TASK_PACKAGE_GROUP, die_with_parent
from spider_core.tdl import InvalidLibrary
from spider_pytasks.loader import forget_module, import_directory, module_name, package_of


def _error_text(e: BaseException) -> str:
    if isinstance(e, InvalidLibrary):
        return e.message
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _signatures(obj: Any, where: str, name: str) -> list[str]:
    package = package_of(obj, where)
    if package.name != name:
        raise InvalidLibrary(f"declares package name {package.name!r} but is found as {name!r}")
    try:
        return [t.signature() for t in package.tasks.values()]
    except TypeError as e:
        raise InvalidLibrary(str(e)) from None


def inspect_candidate(candidate: dict[str, str]) -> dict[str, Any]:
    """Import one candidate and describe it: ``{"tasks", "error", "location"}``."""
    name = candidate["name"]
    location = None
    try:
        if "directory" in candidate:
            directory = Path(candidate["directory"])
            mod_name = module_name(name, "@inspect")
            try:
                module: ModuleType | None = import_directory(directory, mod_name)
                tasks = _signatures(module, str(directory / "__init__.py"), name)
            finally:
                forget_module(mod_name)
        else:
            ep = importlib.metadata.EntryPoint(name=name, value=candidate["entry_point"], group=TASK_PACKAGE_GROUP)
            obj = ep.load()
            module = obj if isinstance(obj, ModuleType) else sys.modules.get(ep.module)
            location = getattr(module, "__file__", None)
            tasks = _signatures(obj, f"entry point {ep.value}", name)
    except (Exception, SystemExit) as e:
        return {"tasks": [], "error": _error_text(e), "location": location}
    return {"tasks": tasks, "error": None, "location": location}


def main() -> int:
    die_with_parent()  # a package that hangs at import must not outlive the listing
    with os.fdopen(os.dup(1), "w") as out:
        os.dup2(2, 1)  # what a package prints at import goes to stderr, not into the answers
        candidates = json.load(sys.stdin)
        for index, candidate in enumerate(candidates):
            record = {"index": index, **inspect_candidate(candidate)}
            out.write(json.dumps(record) + "\n")
            out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
