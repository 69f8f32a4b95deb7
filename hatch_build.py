"""Build hook: ship the bundled task-package sources in the wheel, and make an editable install
that pytest leaves alone.

Regular wheels get the sources (``spider demo`` builds them): an editable install reads
``task_packages/`` from the checkout, and a forced include there would put a stray
``spider_core/`` directory in site-packages.

An editable install (``pyproject.toml`` sets ``dev-mode-dirs = ["plugins"]``, so hatchling
writes a ``.pth`` file putting ``plugins/`` on ``sys.path`` for the default plugins) gets
``spider_core`` through a small import finder written here, named as setuptools names its
editable finders. pytest marks every top-level module of a distribution with a ``pytest11``
entry point for assertion rewriting, and warns (``PytestAssertRewriteWarning``) in every test
run of every project about one already imported, as an editable redirector is by its ``.pth``;
it skips finders named ``__editable__*``, and the docstring's PYTEST_DONT_REWRITE covers older
versions. The checkout's root is never put on ``sys.path``, so ``plugins``, ``tests`` and
``task_packages`` stay unimportable.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

#: The editable finder module; pytest does not rewrite (nor warn about) ``__editable__*``.
FINDER = "__editable___spider_core_finder"

FINDER_SOURCE = '''\
"""Editable install of spider-core: ``spider_core`` is imported from {root}.

Written by spider-core's hatch_build.py. PYTEST_DONT_REWRITE
"""

import importlib.machinery
import sys

ROOT = {root!r}


class SpiderCoreFinder:
    """Finds the top-level package ``spider_core`` in the checkout, and nothing else."""

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name != "spider_core":
            return None
        return importlib.machinery.PathFinder.find_spec(name, [ROOT])

    @classmethod
    def invalidate_caches(cls):
        pass


if not any(getattr(finder, "__name__", None) == "SpiderCoreFinder" for finder in sys.meta_path):
    sys.meta_path.append(SpiderCoreFinder)
'''


class BundleTaskPackages(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        if version == "standard":
            build_data["force_include"]["task_packages"] = "spider_core/_bundled/task_packages"
        elif version == "editable":
            self._generated = Path(tempfile.mkdtemp(prefix="spider-core-editable-"))
            finder = self._generated / f"{FINDER}.py"
            finder.write_text(FINDER_SOURCE.format(root=str(Path(self.root).resolve())))
            pth = self._generated / "__editable__.spider_core.pth"
            pth.write_text(f"import {FINDER}\n")
            build_data["force_include_editable"][str(finder)] = finder.name
            build_data["force_include_editable"][str(pth)] = pth.name

    def finalize(self, version: str, build_data: dict, artifact_path: str) -> None:
        generated = getattr(self, "_generated", None)
        if generated is not None:
            shutil.rmtree(generated, ignore_errors=True)
