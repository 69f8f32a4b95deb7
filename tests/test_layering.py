"""The import rules that keep each boundary in one place, read from the source with ``ast``.

- The core (``spider_core``) imports no default plugin: it reaches plugins through hooks only.
- A plugin imports only the public modules ``spider_core``, ``spider_core.plugin``,
  ``spider_core.tdl`` and ``spider_core.sdk`` (and itself), as a third-party plugin would.
- The pool and the executor do not import each other; both import ``spider_core.protocol``.
- ``spider_core.tdl`` (the ABI, the ground floor) imports only itself, and modules that import
  nothing of spider_core (the lazy-import helper ``spider_core._lazy``).
- The bench (``spider_core.bench``) imports nothing of the command layer (``spider_core.commands``).
- No import cycle among spider_core modules.

Every import counts, with no exception: at module level, inside functions and under
``TYPE_CHECKING`` (where a package's lazy re-exports are written, see ``spider_core._lazy``),
``import_module("literal")`` (as ``importlib.import_module`` or imported bare) and
``__import__("literal")``, and the ``python -m module`` arguments of a call.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = (
    "spider_libso", "spider_msgpack", "spider_supervisor", "spider_pytasks", "spider_rustexec", "spider_prometheus",
    "spider_otel",
)
PUBLIC_FOR_PLUGINS = ("spider_core", "spider_core.plugin", "spider_core.tdl", "spider_core.sdk")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_sources() -> dict[str, str]:
    """Every module of the core and of the default plugins: dotted name -> source."""
    sources = {}
    for path in sorted((ROOT / "spider_core").rglob("*.py")):
        sources[module_name(path, ROOT)] = path.read_text()
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        sources[module_name(path, ROOT / "plugins")] = path.read_text()
    return sources


def imports_of(name: str, source: str, modules: set[str], packages: set[str]) -> Iterator[str]:
    """The modules ``name`` imports (resolved to the most specific known module)."""
    package = name if name in packages else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield candidate if candidate in modules else base
        elif isinstance(node, ast.Call):
            yield from _dynamic_imports(node)


def _dynamic_imports(call: ast.Call) -> Iterator[str]:
    """``import_module("x")``, ``__import__("x")`` and the ``x`` of ``[..., "-m", "x", ...]``."""
    func = call.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called in ("import_module", "__import__") and call.args:
        first = call.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            yield first.value
    for arg in call.args:
        if isinstance(arg, ast.List):
            values = [e.value if isinstance(e, ast.Constant) else None for e in arg.elts]
            for flag, value in itertools.pairwise(values):
                if flag == "-m" and isinstance(value, str):
                    yield value


def import_graph(sources: Mapping[str, str], packages: set[str]) -> dict[str, set[str]]:
    modules = set(sources)
    return {name: set(imports_of(name, source, modules, packages)) - {name} for name, source in sources.items()}


def _top(name: str) -> str:
    return name.split(".")[0]


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Every broken rule, one line each."""
    #: spider_core modules that import nothing of spider_core: below every layer, the ground floor's too.
    leaves = {
        module for module, imported in graph.items()
        if _within(module, "spider_core") and not any(_within(t, "spider_core") for t in imported)
    }
    found = []
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            if _within(module, "spider_core") and _top(target) in PLUGINS:
                found.append(f"{module} imports the default plugin module {target}: reach plugins through hooks")
            if _top(module) in PLUGINS:
                if _top(target) in PLUGINS and _top(target) != _top(module):
                    found.append(f"{module} imports another plugin, {target}")
                if _within(target, "spider_core") and target not in PUBLIC_FOR_PLUGINS:
                    found.append(
                        f"{module} imports {target}: plugins import only {', '.join(PUBLIC_FOR_PLUGINS)}"
                    )
            for a, b in (("spider_core.pool", "spider_core.executor"), ("spider_core.executor", "spider_core.pool")):
                if _within(module, a) and _within(target, b):
                    found.append(f"{module} imports {target}: pool and executor share spider_core.protocol only")
            if (_within(module, "spider_core.tdl") and _within(target, "spider_core")
                    and not _within(target, "spider_core.tdl") and target not in leaves):
                found.append(f"{module} imports {target}: spider_core.tdl imports nothing of spider_core above it")
            if _within(module, "spider_core.bench") and _within(target, "spider_core.commands"):
                found.append(f"{module} imports {target}: the bench imports nothing of spider_core.commands")
    found.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph))
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of spider_core modules (Tarjan's algorithm)."""
    nodes = {n for n in graph if _within(n, "spider_core")}
    edges = {n: sorted(t for t in graph[n] if t in nodes) for n in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return [[*group, group[0]] for group in groups]


def _packages() -> set[str]:
    found = {module_name(p, ROOT) for p in (ROOT / "spider_core").rglob("__init__.py")}
    found |= {module_name(p, ROOT / "plugins") for p in (ROOT / "plugins").rglob("__init__.py")}
    return found


def test_the_tree_keeps_every_import_rule() -> None:
    graph = import_graph(read_sources(), _packages())
    assert violations(graph) == []


def test_the_protocol_module_is_what_pool_and_executor_share() -> None:
    graph = import_graph(read_sources(), _packages())
    assert any("spider_core.protocol" in graph[m] for m in graph if _within(m, "spider_core.executor"))
    assert any("spider_core.protocol" in graph[m] for m in graph if _within(m, "spider_core.pool"))
    within_protocol = [m for m in graph if _within(m, "spider_core.protocol")]
    assert not {t for m in within_protocol for t in graph[m] if _within(t, "spider_core") and not _within(t, "spider_core.protocol")}


# -- the checker itself: each rule, broken on purpose ---------------------------------------


def _graph_with(module: str, source: str) -> dict[str, set[str]]:
    sources = read_sources()
    sources[module] = sources.get(module, "") + "\n" + source
    return import_graph(sources, _packages())


@pytest.mark.parametrize(
    ("module", "source", "complaint"),
    [
        ("spider_core.build", "from spider_libso import inspect", "imports the default plugin module spider_libso"),
        ("spider_core.build", "import subprocess\nsubprocess.run(['python', '-m', 'spider_libso.inspect'])",
         "imports the default plugin module spider_libso.inspect"),
        ("spider_core.plugin.manager", "import importlib\nimportlib.import_module('spider_msgpack')",
         "imports the default plugin module spider_msgpack"),
        ("spider_libso", "from spider_core.models import PoolConfig", "plugins import only"),
        ("spider_supervisor", "from spider_core.executor import main", "plugins import only"),
        ("spider_pytasks.listing", "from spider_libso import KIND", "imports another plugin, spider_libso"),
        ("spider_core.pool.supervisor", "from spider_core.executor import main", "pool and executor share"),
        ("spider_core.executor", "def f():\n    from spider_core.pool import ProcessPool", "pool and executor share"),
        ("spider_core.tdl.wire", "from spider_core.models import Success", "spider_core.tdl imports nothing of"),
        ("spider_core.tdl", "import importlib\nimportlib.import_module('spider_core.sdk')",
         "spider_core.tdl imports nothing of"),
        ("spider_core.tdl.errors", "from importlib import import_module\nimport_module('spider_core.errors')",
         "spider_core.tdl imports nothing of"),
        ("spider_core.tdl.names", "from spider_core._lazy import attach", None),
        ("spider_core.errors", "def f():\n    __import__('spider_core.models')", "import cycle"),
        ("spider_core.models", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from spider_core import PoolConfig as PoolConfig",
         "import cycle"),
        ("spider_core.bench.cli", "def f():\n    from spider_core.commands.demo import run_demo",
         "the bench imports nothing of spider_core.commands"),
        ("spider_core.protocol", "from spider_core.errors import InternalError", None),
        ("spider_core.errors", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from spider_core.commands import main",
         "import cycle"),
    ],
)
def test_each_rule_catches_a_forbidden_import(module: str, source: str, complaint: str | None) -> None:
    found = violations(_graph_with(module, source))
    if complaint is None:  # allowed: the protocol may use the user-facing errors; tdl, a module importing nothing
        assert found == []
    else:
        assert any(complaint in line for line in found), found
