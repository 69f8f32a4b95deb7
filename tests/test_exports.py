"""Lazy re-exports (``spider_core._lazy``): each package writes each name once, in its
``if TYPE_CHECKING:`` block, and serves exactly those names, each imported on first use."""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from spider_core._lazy import attach, exports

#: The packages that re-export lazily: the user API, the plugin author API, the ABI.
LAZY = ["spider_core", "spider_core.plugin", "spider_core.tdl"]


@pytest.mark.parametrize("package", LAZY)
def test_a_package_serves_exactly_its_type_checking_block(package: str) -> None:
    module = importlib.import_module(package)
    block = exports(Path(module.__file__ or "").read_text(), package)
    assert module.__all__ == sorted(block)
    assert set(block) <= set(dir(module))
    for name, (source, attribute) in block.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), attribute), name
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'NoSuchName'"):
        module.NoSuchName  # noqa: B018


def test_importing_the_packages_imports_none_of_what_they_re_export() -> None:
    code = (
        "import sys, spider_core, spider_core.plugin, spider_core.tdl\n"
        "print(sorted(m for m in sys.modules if m.startswith('spider_core')), 'ast' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == [
        "['spider_core',", "'spider_core._lazy',", "'spider_core.plugin',", "'spider_core.tdl']", "False",
    ]


def test_no_package_writes_the_lazy_pattern_by_hand() -> None:
    """One helper: no module of spider_core or of the default plugins defines ``__getattr__``."""
    sources = [*(REPO / "spider_core").rglob("*.py"), *(REPO / "plugins").rglob("*.py")]
    by_hand = [
        str(path.relative_to(REPO))
        for path in sources
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
    ]
    assert by_hand == []


def test_only_as_imports_are_re_exported_and_relative_ones_are_refused(tmp_path: Path) -> None:
    init = tmp_path / "example_lazy.py"
    init.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from collections import OrderedDict\n"  # a type-only import
        "    from collections import deque as deque, Counter as Tally\n"
        "else:\n"
        "    from spider_core._lazy import attach\n"
        "    __getattr__, __dir__ = attach(__name__)\n"
    )
    assert exports(init.read_text(), "example_lazy") == {
        "deque": ("collections", "deque"), "Tally": ("collections", "Counter"),
    }
    spec = importlib.util.spec_from_file_location("example_lazy", init)
    assert spec and spec.loader
    sys.modules["example_lazy"] = module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        assert "Tally" not in vars(module)
        assert module.Tally is __import__("collections").Counter
        assert "Tally" in vars(module)  # kept: the next lookup does not reach __getattr__
        assert module.__all__ == ["Tally", "deque"]
        assert {"Tally", "deque"} <= set(dir(module))
        assert not hasattr(module, "OrderedDict")
    finally:
        del sys.modules["example_lazy"]

    relative = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import y as y\n"
    with pytest.raises(ImportError, match=r"example: lazy re-exports need absolute imports, not from \.x import y as y"):
        exports(relative, "example")


def test_a_package_whose_loader_gives_no_source_is_read_from_its_file(tmp_path: Path) -> None:
    """As under pytest's assertion rewriter, which imports the modules of a distribution that
    registers a pytest plugin (ours does) and has no ``get_source``."""
    init = tmp_path / "example_rewritten.py"
    init.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from collections import deque as deque\n"
        "else:\n"
        "    from spider_core._lazy import attach\n"
        "    __getattr__, __dir__ = attach(__name__)\n"
    )

    class NoSource(importlib.machinery.SourceFileLoader):
        get_source = None  # type: ignore[assignment]

    spec = importlib.util.spec_from_file_location("example_rewritten", init, loader=NoSource("example_rewritten", str(init)))
    assert spec and spec.loader
    sys.modules["example_rewritten"] = module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        assert module.deque is __import__("collections").deque
    finally:
        del sys.modules["example_rewritten"]


def test_a_package_without_its_source_says_so() -> None:
    sys.modules["example_sourceless"] = type(sys)("example_sourceless")
    try:
        getattr_, _ = attach("example_sourceless")
        with pytest.raises(ImportError, match="example_sourceless: its lazy re-exports are read from its source"):
            getattr_("anything")
    finally:
        del sys.modules["example_sourceless"]
