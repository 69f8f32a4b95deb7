"""What the installed distribution exposes, and what it must not."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from helpers import REPO


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    # -P: do not put the current directory on sys.path, as an installed program would not.
    return subprocess.run([sys.executable, "-P", "-c", code], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("name", ["plugins", "tests", "task_packages"])
def test_repository_directories_are_not_importable(name: str, tmp_path: Path) -> None:
    done = run_python(f"import {name}", cwd=REPO)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


def test_plugin_packages_are_top_level(tmp_path: Path) -> None:
    done = run_python("import spider_libso, spider_msgpack, spider_supervisor, spider_pytasks, spider_rustexec, spider_core", cwd=tmp_path)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("spider_core_pool-*.whl")
    return path


@pytest.mark.slow
def test_wheel_top_level_packages(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {
        "spider_core", "spider_libso", "spider_msgpack", "spider_supervisor", "spider_pytasks", "spider_rustexec",
        "spider_installed", "spider_shm",
        "spider_prometheus", "spider_otel",
    }
    assert "spider_core/include/spider_tdl.h" in names
    assert "spider_core/_bundled/task_packages/integration_test_tasks/integration_test_tasks.c" in names
    assert not any("__pycache__" in n for n in names)
    # PEP 561: type checkers read the annotations of the package and of each default plugin
    assert {f"{top}/py.typed" for top in tops} <= set(names)


@pytest.mark.slow
def test_demo_from_a_wheel_in_a_fresh_virtualenv(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    demo = subprocess.run([str(venv / "bin" / "spider"), "demo"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "Success [75025]" in demo.stdout and "ExecutorCrash" in demo.stdout and "Timeout" in demo.stdout
    assert (tmp_path / "cache" / "spider-core" / "packages").is_dir()
    # nothing from the checkout is importable in that environment
    for name in ("plugins", "tests", "task_packages"):
        probe = subprocess.run([str(venv / "bin" / "python"), "-P", "-c", f"import {name}"], capture_output=True, cwd=tmp_path)
        assert probe.returncode != 0


@pytest.mark.slow
def test_readme_install_from_a_clean_clone(tmp_path: Path) -> None:
    """The README's first command, pasted into a shell in a clean clone: it installs the
    distribution by its name on the package index, ``spider-core-pool``, and runs the demo."""
    clone = tmp_path / "clone"
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):  # what a clone of this tree, committed, would hold
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    (command,) = re.findall(r"```console\n(python3 -m venv .venv && .* pip install \. && spider demo)\n```",
                            (REPO / "README.md").read_text())
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "Success [75025]" in done.stdout
    python = clone / ".venv" / "bin" / "python"
    probe = subprocess.run([str(python), "-P", "-c", (
        "import importlib.metadata as m, spider_core\n"
        "print(m.version('spider-core-pool'))\n"
        "print(spider_core.__file__)\n"
        "try:\n    m.distribution('spider-core')\nexcept m.PackageNotFoundError:\n    print('no spider-core')\n"
    )], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert probe.returncode == 0, probe.stderr
    version, module, absent = probe.stdout.splitlines()
    assert version == re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), flags=re.M)[1]
    assert module.startswith(str(clone / ".venv" / "lib")) and absent == "no spider-core"
    plugins = subprocess.run([str(clone / ".venv" / "bin" / "spider"), "plugins"], capture_output=True, text=True, env=env)
    assert f"spider_libso       spider-core-pool {version}  default" in plugins.stdout
