"""spider_installed in-process: how installed distributions are read (real dist-info directories
on ``sys.path``; tests/test_wheels.py installs real wheels with pip)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import spider_installed

from spider_core.plugin import TASK_PACKAGE_GROUP, InstalledPackage
from spider_core.tdl import InvalidLibrary

PY_MODULE = """
    from spider_core.sdk import Package

    package = Package("{name}")
"""


def make_dist(site: Path, dist: str, entry_points: str, module: str | None = None, name: str = "") -> Path:
    """A distribution ``dist`` 1.0 in ``site`` with this ``entry_points.txt`` (and ``module.py``)."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module is not None:
        (site / f"{module}.py").write_text(textwrap.dedent(PY_MODULE.format(name=name)))
    return site


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site directory on ``sys.path``, and on ``PYTHONPATH`` for the listing's child process."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    return site


def test_a_distribution_with_unreadable_entry_points_claims_nothing_and_stops_nothing(site: Path, pm) -> None:
    make_dist(site, "acme-broken", f"[{TASK_PACKAGE_GROUP}]\nthis line has no equals sign\n")
    make_dist(site, "acme-fine", f"[{TASK_PACKAGE_GROUP}]\nfine = fine_mod:package\n", "fine_mod", "fine")
    source = pm.hook.spider_resolve_package(package="fine", package_dir=None, installed_packages=True)
    assert source.details == InstalledPackage(entry_point="fine_mod:package", distribution="acme-fine", version="1.0")
    assert pm.hook.spider_load_package(source=source).name == "fine"

    listed = {i.name: i for found in pm.hook.spider_list_packages(package_dir=None) for i in found}
    broken = listed["acme-broken"]
    assert (broken.source, broken.distribution, broken.version) == ("installed", "acme-broken", "1.0")
    assert broken.error.startswith("cannot read its entry points: ")
    assert listed["fine"].error is None and listed["fine"].tasks == ()


def test_an_entry_point_naming_a_module_that_is_not_installed(site: Path, pm) -> None:
    make_dist(site, "acme-ghost", f"[{TASK_PACKAGE_GROUP}]\nghost = no_such_module_here\n")
    with pytest.raises(InvalidLibrary) as caught:
        pm.hook.spider_resolve_package(package="ghost", package_dir=None, installed_packages=True)
    assert str(caught.value) == (
        "installed task package 'ghost' (entry point no_such_module_here from acme-ghost 1.0) names module "
        "'no_such_module_here', which is not installed: reinstall the distribution"
    )


@pytest.mark.parametrize("value", ["old_mod:package", "old_mod"])
def test_python_packages_in_the_older_group_are_still_found(site: Path, pm, value: str) -> None:
    """``spider_core.packages`` (Python packages only, a module's ``package`` by default)."""
    make_dist(site, "acme-old", f"[{spider_installed.LEGACY_GROUP}]\nold = {value}\n", "old_mod", "old")
    source = pm.hook.spider_resolve_package(package="old", package_dir=None, installed_packages=True)
    assert source.kind == "python"
    assert source.details == InstalledPackage(entry_point="old_mod:package", distribution="acme-old", version="1.0")
    assert pm.hook.spider_load_package(source=source).name == "old"


def test_the_lookup_is_off_without_installed_packages(site: Path, pm) -> None:
    make_dist(site, "acme-fine", f"[{TASK_PACKAGE_GROUP}]\nfine = fine_mod:package\n", "fine_mod", "fine")
    assert pm.hook.spider_resolve_package(package="fine", package_dir=None, installed_packages=False) is None


def test_the_distributions_are_read_once_per_process(site: Path, pm) -> None:
    """A distribution installed after the first look-up is not seen by this process: a new
    executor sees it."""
    make_dist(site, "acme-first", f"[{TASK_PACKAGE_GROUP}]\nfirst = first_mod:package\n", "first_mod", "first")
    assert pm.hook.spider_resolve_package(package="first", package_dir=None, installed_packages=True) is not None
    make_dist(site, "acme-later", f"[{TASK_PACKAGE_GROUP}]\nlater = later_mod:package\n", "later_mod", "later")
    assert pm.hook.spider_resolve_package(package="later", package_dir=None, installed_packages=True) is None
    assert "later" in spider_installed.installed_packages().claims  # a fresh read finds it
