"""Lazy re-exports (``spider_core._lazy``): each package writes each name once, in its
``if TYPE_CHECKING:`` block, and serves exactly those names, each imported on first use."""

from __future__ import annotations

import ast
import importlib
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
    block = exports(module.__file__ or "")
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
    init = tmp_path / "example.py"
    init.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from collections import OrderedDict\n"  # a type-only import
        "    from collections import deque as deque, Counter as Tally\n"
    )
    assert exports(init) == {"deque": ("collections", "deque"), "Tally": ("collections", "Counter")}

    sys.modules["example_lazy"] = module = type(sys)("example_lazy")
    module.__file__ = str(init)
    try:
        getattr_, dir_ = attach("example_lazy")
        assert getattr_("Tally") is __import__("collections").Counter
        assert module.Tally is getattr_("Tally")  # kept: the next lookup does not reach __getattr__
        assert getattr_("__all__") == ["Tally", "deque"]
        assert {"Tally", "deque"} <= set(dir_())
    finally:
        del sys.modules["example_lazy"]

    init.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .x import y as y\n")
    with pytest.raises(ImportError, match=r"lazy re-exports need absolute imports, not from \.x import y as y"):
        exports(init)
