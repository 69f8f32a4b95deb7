"""pytest plugin for testing task packages; installing spider-core registers it (``pytest11``).

Fixtures:

- ``spider_package_dir``: an empty package directory for the test.
- ``spider_build_package(src, out=None, *, cc=None, cflags=())``: build the C package in
  ``src`` (or copy the Python package in ``src``) into ``out``, by default
  ``spider_package_dir``; returns the package directory.
- ``spider_pool_factory(package_dir, **config)``: a started
  :class:`~spider_core.SyncProcessPool` on ``package_dir`` (None: installed task packages
  only; ``config`` is passed to :class:`~spider_core.PoolConfig`); every pool it made is
  closed after the test.
- ``spider_pool``: a started pool on ``spider_package_dir``; configure it with
  ``@pytest.mark.spider_pool(**config)`` (``package_dir=`` included; ``package_dir=None`` to
  test installed packages, such as a wheel the test session installed). Packages are resolved
  when first called, so they may be built into the directory after the pool started.

Helper: ``assert_outcome(outcome, kind, values=..., error=..., **fields)`` (also importable
from :mod:`spider_core.testing`).

Disable the plugin with ``-p no:spider_core``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from spider_core.testing import assert_outcome

if TYPE_CHECKING:
    from spider_core.pool import SyncProcessPool

__all__ = ["assert_outcome"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "spider_pool(**config): PoolConfig arguments for the spider_pool fixture "
        "(package_dir defaults to spider_package_dir)",
    )


@pytest.fixture
def spider_package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty task-package directory for this test."""
    return tmp_path_factory.mktemp("spider-packages")


@pytest.fixture
def spider_build_package(spider_package_dir: Path) -> Callable[..., Path]:
    """``build(src, out=None, *, cc=None, cflags=()) -> package_dir``: compile the C package in
    ``src`` into ``out/<name>/lib<name>.so`` (``out`` defaults to ``spider_package_dir``), or,
    if ``src`` holds a Python package (``__init__.py`` and no ``.c`` file), copy it to
    ``out/<name>/``."""

    def build(
        src: str | Path, out: str | Path | None = None, *, cc: str | None = None, cflags: Sequence[str] = ()
    ) -> Path:
        from spider_core.build import build_package

        src = Path(src)
        target = spider_package_dir if out is None else Path(out)
        if (src / "__init__.py").is_file() and not any(src.glob("*.c")):
            shutil.copytree(
                src, target / src.resolve().name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
            )
        else:
            build_package(src, target, cc=cc, cflags=cflags)
        return target

    return build


@pytest.fixture
def spider_pool_factory() -> Iterator[Callable[..., SyncProcessPool]]:
    """``factory(package_dir, **config) -> SyncProcessPool``, started; closed after the test
    (``package_dir`` None: installed task packages only)."""
    from spider_core.models import PoolConfig
    from spider_core.pool import SyncProcessPool

    pools: list[SyncProcessPool] = []

    def factory(package_dir: str | Path | None, **config: Any) -> SyncProcessPool:
        pool = SyncProcessPool(PoolConfig(package_dir=package_dir, **config))
        pools.append(pool)
        pool.start()
        return pool

    yield factory
    for pool in reversed(pools):
        pool.close()


@pytest.fixture
def spider_pool(
    request: pytest.FixtureRequest, spider_package_dir: Path, spider_pool_factory: Callable[..., SyncProcessPool]
) -> SyncProcessPool:
    """A started pool on ``spider_package_dir`` (see ``@pytest.mark.spider_pool``)."""
    config: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("spider_pool"))):
        config.update(marker.kwargs)
    return spider_pool_factory(config.pop("package_dir", spider_package_dir), **config)
