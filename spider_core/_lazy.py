"""Re-exports imported on first use (PEP 562), for ``spider_core`` and ``spider_core.plugin``:
the executor imports both without paying for the names it never touches. (``spider_core.tdl``
and ``spider_pytasks`` keep their own: ``tdl`` imports only itself, and a plugin only the
public modules.)"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    module: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``module``, whose ``exports`` map each public
    name to the module that defines it; a name, once imported, is cached in ``namespace``."""

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = namespace[name] = getattr(importlib.import_module(source), name)
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
