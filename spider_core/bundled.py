"""The task packages bundled with spider-core (``integration_test_tasks`` and the others under
``task_packages/``), built once per version of their sources into the user's cache: the
packages ``spider demo``, ``spider soak`` and ``spider bench`` run when given none."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from spider_core.build import build_package, get_include

#: The bundled C package: the demo's calls, the soak's faults, the bench's workloads.
NATIVE = "integration_test_tasks"


def cache_root(cache_dir: Path | None = None) -> Path:
    """``cache_dir``, else ``$XDG_CACHE_HOME/spider-core``, else ``~/.cache/spider-core``."""
    if cache_dir is not None:
        return cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spider-core"


def bundled_sources() -> Path:
    """The task package sources shipped in the wheel (or the checkout, for an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_bundled" / "task_packages", here.parent / "task_packages"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the bundled task package sources are missing from this installation")


def _fingerprint(sources: Path) -> str:
    digest = hashlib.sha256()
    files = [p for p in sorted(sources.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    for path in [*files, Path(get_include()) / "spider_tdl.h"]:
        digest.update(str(path.relative_to(path.parents[1])).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def prepare_packages(root: Path) -> Path:
    """Build (once per version of the sources) the bundled packages; return the package dir."""
    sources = bundled_sources()
    target = root / "packages" / _fingerprint(sources)
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        for source in sorted(p for p in sources.iterdir() if p.is_dir()):
            if any(source.glob("*.c")):
                build_package(source, staging)
            elif any(source.rglob("*.py")):
                shutil.copytree(source, staging / source.name, ignore=shutil.ignore_patterns("__pycache__"))
        (staging / ".complete").touch()
        try:
            staging.rename(target)
        except OSError:  # another demo built it meanwhile
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
