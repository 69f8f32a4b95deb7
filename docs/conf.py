"""Sphinx configuration of spider-core's documentation.

Build it with warnings as errors, as ``tox -e docs`` and ``tests/test_docs.py`` do::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST). The configuration reference and the hook reference are generated
from the docstrings of ``spider_core.PoolConfig`` and ``spider_core/plugin/spec.py`` by
autodoc; ``spider --help`` texts come from the CLI's own parser (``_ext/spider_cli.py``).
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "spider-core"
author = "spider-core contributors"
copyright = "spider-core contributors"
try:
    release = metadata.version("spider-core-pool")
except metadata.PackageNotFoundError:  # building from a checkout that is not installed
    release = "unknown"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "spider_cli",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # `[text](#a-heading)` and `[text](page.md#a-heading)` links

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
if importlib.util.find_spec("distributed") is None:
    # The docs extra alone: spider_core.dask's reference is read from a stand-in for Dask
    # (`tox -e docs` and the test extra build it against the real one).
    autodoc_mock_imports = ["distributed"]

html_theme = "furo"
html_title = f"spider-core {release}"
