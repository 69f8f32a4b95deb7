"""Lazy re-exports for a package's ``__init__``, each name written once.

A package that re-exports names without importing their modules up front writes each name
once, as ``from module import X as X`` under ``if TYPE_CHECKING:`` (the re-export form strict
type checkers honour), and hands the rest to :func:`attach`::

    if TYPE_CHECKING:
        from spider_core.models import PoolConfig as PoolConfig
    else:
        from spider_core._lazy import attach

        __getattr__, __dir__ = attach(__name__)

When the package is first asked for a name it does not hold, :func:`exports` reads that
block from the package's source with ``ast`` (as ``lazy_loader.attach_stub`` reads a stub);
each name is then imported from its module on first use and kept. ``__all__`` is the block's
names. A plain ``from module import X`` in the block stays a type-only import.

This module imports nothing of ``spider_core``, so even the ground floor (``spider_core.tdl``)
may use it. ``ast`` is imported on the first lookup, not with the package.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # not at run time: `import spider_core` stays as cheap as it was
    from collections.abc import Callable


def exports(source: str, where: str) -> dict[str, tuple[str, str]]:
    """The names re-exported by the ``if TYPE_CHECKING:`` block of ``source`` (the module
    ``where``): name -> (module, attribute), in the block's order.

    :raises ImportError: a relative import in the block (write the module's full name).
    """
    import ast

    found: dict[str, tuple[str, str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for statement in node.body:
                if not isinstance(statement, ast.ImportFrom):
                    continue
                if statement.level or not statement.module:
                    raise ImportError(f"{where}: lazy re-exports need absolute imports, not {ast.unparse(statement)}")
                for alias in statement.names:
                    if alias.asname:
                        found[alias.asname] = (statement.module, alias.name)
    return found


def _source(package: str) -> str | None:
    """The source of ``package``: the ``.py`` file its spec names, else what its loader gives
    (a loader need not give it: pytest's assertion rewriter, which imports the modules of a
    distribution that registers a pytest plugin, has no ``get_source``)."""
    spec = sys.modules[package].__spec__
    origin = spec and spec.origin
    if origin and origin.endswith(".py"):
        try:
            with open(origin, encoding="utf-8") as file:
                return file.read()
        except OSError:
            pass
    get_source = getattr(spec and spec.loader, "get_source", None)
    source: str | None = get_source(package) if get_source else None
    return source


def attach(package: str) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, serving the names of
    its ``if TYPE_CHECKING:`` block (see :func:`exports`) and ``__all__``."""
    table: dict[str, tuple[str, str]] = {}

    def names() -> dict[str, tuple[str, str]]:
        if not table:
            source = _source(package)
            if source is None:
                raise ImportError(f"{package}: its lazy re-exports are read from its source, which is not installed")
            table.update(exports(source, package))
        return table

    def __getattr__(name: str) -> Any:
        if name == "__all__":
            value: Any = sorted(names())
        elif name in names():
            module, attribute = names()[name]
            value = getattr(importlib.import_module(module), attribute)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names()))

    return __getattr__, __dir__
