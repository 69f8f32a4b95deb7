"""Task packages as wheels: built by ``spider build-package --wheel``, installed by real pip into
a fresh virtual environment, found by ``spider_installed`` in the real executor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from helpers import C_EXECUTE, C_HEADER, C_VERSION, PKG, SPIDER, TASK_PACKAGES, c_name_fn, write_c_package
from spider_core import build_package
from spider_core.wheel import platform_tag

pytestmark = pytest.mark.slow

#: Runs in the fresh environment: one pool (PoolConfig from argv[1], as JSON), one JSON request
#: per line of stdin (``[package, task, inputs]``), one outcome record per line of stdout.
DRIVER = """
import json, sys
import spider_core as sc
from spider_core.commands.reporting import outcome_record

with sc.SyncProcessPool(sc.PoolConfig(**json.loads(sys.argv[1]))) as pool:
    for line in sys.stdin:
        package, task, inputs = json.loads(line)
        outcome = pool.execute(sc.ExecuteRequest(package=package, task=task, inputs=inputs), hard_timeout=30)
        print(json.dumps(outcome_record(outcome)), flush=True)
"""


class Venv:
    """A fresh virtual environment that has the framework (this worktree's installation, by a
    ``.pth`` file that adds its site-packages) and nothing else; pip runs from the test's
    interpreter (``pip --python``), offline."""

    def __init__(self, root: Path) -> None:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
        self.python = root / "bin" / "python"
        site = subprocess.run(
            [self.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        framework = sysconfig.get_paths()["purelib"]
        Path(site, "spider_framework.pth").write_text(f"import site; site.addsitedir({framework!r})\n")

    def pip(self, *args: str | Path) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "--python", str(self.python), *map(str, args)],
            capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr

    def install(self, *wheels: Path) -> None:
        self.pip("install", "--quiet", "--no-index", "--no-deps", *wheels)

    def spider(self, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SPIDER_")} | (env or {})
        return subprocess.run([self.python, "-m", "spider_core", *map(str, args)], capture_output=True, text=True,
                              env=clean, timeout=120)

    def packages(self, *args: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
        """``spider packages --json``, by (name, source)."""
        done = self.spider("packages", "--json", *args)
        assert done.returncode == 0, done.stderr
        return {(r["name"], r["source"]): r for r in map(json.loads, done.stdout.splitlines())}

    def pool(self, **config: Any) -> Driver:
        return Driver(self.python, config)


class Driver:
    """A pool running in the fresh environment, fed one request at a time."""

    def __init__(self, python: Path, config: dict[str, Any]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPIDER_")}
        self.proc = subprocess.Popen(
            [python, "-c", DRIVER, json.dumps(config)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def run(self, package: str, task: str, *inputs: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps([package, task, list(inputs)]) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the driver exited with status {self.proc.wait()}"
        record: dict[str, Any] = json.loads(line)
        return record

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0


def run_once(venv: Venv, package: str, task: str, *inputs: Any, **config: Any) -> dict[str, Any]:
    driver = venv.pool(**config)
    try:
        return driver.run(package, task, *inputs)
    finally:
        driver.close()


def build_wheel(src: Path, out: Path, *args: str, env: dict[str, str] | None = None) -> Path:
    """``spider build-package SRC --wheel OUT ARGS``: the one wheel it printed."""
    done = subprocess.run([SPIDER, "build-package", src, "--wheel", out, *args], capture_output=True, text=True,
                          env=os.environ | (env or {}))
    assert done.returncode == 0, done.stderr
    wheel = Path(done.stdout.strip())
    assert wheel.parent == out and wheel.is_file()
    return wheel


#: A native package ``release`` whose one task fails with "release <RELEASE>": each build says
#: which one runs.
RELEASE = C_HEADER + C_VERSION + c_name_fn("release") + C_EXECUTE.replace(
    "BODY", 'return spider_tdl_result_error(SPIDER_TDL_ERR_CUSTOM, "release %d", RELEASE);'
)


def release_of(record: dict[str, Any]) -> str:
    assert record["outcome"] == "task_failure", record
    return str(record["message"]).rsplit(": ", 1)[-1]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheels the tests install: the bundled package (1.0.0, and as two distributions that
    claim one name), and ``release`` 1 and 2."""
    out = tmp_path_factory.mktemp("wheels")
    src = write_c_package(tmp_path_factory.mktemp("src"), "release", RELEASE)
    return {
        "bundled": build_wheel(TASK_PACKAGES / PKG, out / "bundled", "--version", "1.0.0"),
        "twin_a": build_wheel(TASK_PACKAGES / PKG, out / "twins", "--dist-name", "acme-twin-a"),
        "twin_b": build_wheel(TASK_PACKAGES / PKG, out / "twins", "--dist-name", "acme-twin-b"),
        "release1": build_wheel(src, out / "r1", "--version", "1", env={"CFLAGS": "-DRELEASE=1"}),
        "release2": build_wheel(src, out / "r2", "--version", "2", env={"CFLAGS": "-DRELEASE=2"}),
    }


@pytest.fixture
def venv(tmp_path: Path) -> Venv:
    return Venv(tmp_path / "venv")


def test_the_wheel_is_a_platform_wheel_with_the_entry_point(wheels: dict[str, Path]) -> None:
    wheel = wheels["bundled"]
    assert wheel.name == f"spider_task_integration_test_tasks-1.0.0-{platform_tag()}.whl"
    assert platform_tag().startswith("py3-none-linux_")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = "spider_task_integration_test_tasks-1.0.0.dist-info"
        assert f"spider_task_integration_test_tasks/lib{PKG}.so" in names
        assert archive.read(f"{info}/entry_points.txt").decode().split() == [
            "[spider_core.task_packages]", PKG, "=", "spider_task_integration_test_tasks",
        ]
        assert "Root-Is-Purelib: false" in archive.read(f"{info}/WHEEL").decode()
        assert "Name: spider-task-integration-test-tasks" in archive.read(f"{info}/METADATA").decode()


def test_an_installed_wheel_runs_without_a_package_directory(venv: Venv, wheels: dict[str, Path]) -> None:
    venv.install(wheels["bundled"])
    record = run_once(venv, PKG, "fibonacci", 10)
    assert (record["outcome"], record["values"]) == ("success", [55])

    listed = venv.packages()
    info = listed[PKG, "installed"]
    assert (info["kind"], info["distribution"], info["version"]) == ("native", "spider-task-integration-test-tasks", "1.0.0")
    assert info["abi_version"] == "0.1.0" and info["error"] is None
    assert info["location"].endswith(f"spider_task_integration_test_tasks/lib{PKG}.so")
    table = venv.spider("packages").stdout
    assert f"{PKG}  native  spider-task-integration-test-tasks 1.0.0  0.1.0  ok" in table

    # Uninstalled: the missing-package outcome.
    venv.pip("uninstall", "--yes", "spider-task-integration-test-tasks")
    record = run_once(venv, PKG, "fibonacci", 10)
    assert record["outcome"] == "task_failure" and "InvalidLibrary" in record["error"]
    assert f"no task package named {PKG!r} installed" in record["message"]


def test_an_upgrade_runs_in_the_next_executor(venv: Venv, wheels: dict[str, Path]) -> None:
    venv.install(wheels["release1"])
    driver = venv.pool(recycle_after=1)  # every task gets a new executor
    try:
        first = driver.run("release", "release")
        assert release_of(first) == "release 1"
        venv.install(wheels["release2"])
        second = driver.run("release", "release")
        assert release_of(second) == "release 2" and second["executor_id"] > first["executor_id"]
    finally:
        driver.close()
    assert venv.packages()["release", "installed"]["version"] == "2"


def test_the_package_directory_wins(venv: Venv, wheels: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    venv.install(wheels["release2"])
    monkeypatch.setenv("CFLAGS", "-DRELEASE=1")
    packages = tmp_path / "packages"
    build_package(write_c_package(tmp_path / "src", "release", RELEASE), packages)
    assert release_of(run_once(venv, "release", "release", package_dir=str(packages))) == "release 1"
    listed = venv.packages("--package-dir", packages)
    assert listed["release", "directory"]["error"] is None and listed["release", "installed"]["version"] == "2"
    assert "hidden by the package directory's copy" in venv.spider("packages", "--package-dir", packages).stdout


def test_installed_packages_false_ignores_installed_packages(venv: Venv, wheels: dict[str, Path]) -> None:
    venv.install(wheels["bundled"])
    record = run_once(venv, PKG, "fibonacci", 10, installed_packages=False)
    assert record["outcome"] == "task_failure" and "InvalidLibrary" in record["error"]
    assert "SPIDER_TDL_PACKAGE_DIR is not set and installed packages are off" in record["message"]


def test_two_distributions_claiming_one_name(venv: Venv, wheels: dict[str, Path]) -> None:
    venv.install(wheels["twin_a"], wheels["twin_b"], wheels["release1"])
    record = run_once(venv, PKG, "fibonacci", 10)
    assert record["outcome"] == "task_failure" and "DuplicatePackage" in record["error"]
    message = record["message"]
    assert f"task package {PKG!r} is installed more than once" in message
    assert "acme-twin-a 0.0.0" in message and "acme-twin-b 0.0.0" in message
    # Neither stops another package from resolving, nor the listing.
    assert release_of(run_once(venv, "release", "release")) == "release 1"
    listed = venv.packages()
    assert "installed more than once" in listed[PKG, "installed"]["error"]
    assert listed["release", "installed"]["error"] is None


def test_broken_installed_packages_are_listed_and_fail_alone(venv: Venv, wheels: dict[str, Path]) -> None:
    venv.install(wheels["bundled"], wheels["release1"])
    done = subprocess.run([venv.python, "-c", "import spider_task_release; print(spider_task_release.LIBRARY)"],
                          capture_output=True, text=True, check=True)
    Path(done.stdout.strip()).unlink()  # the library is gone: the distribution is broken
    record = run_once(venv, "release", "release")
    assert record["outcome"] == "task_failure" and "InvalidLibrary" in record["error"]
    assert "installed task package 'release' (entry point spider_task_release from spider-task-release 1) " \
           "has no librelease.so beside module spider_task_release" in record["message"]
    assert run_once(venv, PKG, "fibonacci", 10)["values"] == [55]
    listed = venv.packages()
    assert "has no librelease.so" in listed["release", "installed"]["error"]
    assert listed[PKG, "installed"]["error"] is None


def test_a_library_that_declares_another_name(venv: Venv, tmp_path: Path) -> None:
    from spider_core.wheel import build_wheel as build

    src = write_c_package(tmp_path / "src", "alias", RELEASE.replace("RELEASE)", "1)"))  # declares "release"
    venv.install(build(src, tmp_path / "dist", check=False))
    record = run_once(venv, "alias", "release")
    assert record["outcome"] == "task_failure" and "InvalidLibrary" in record["error"]
    assert "declares package name 'release' but was requested as 'alias'" in record["message"]
    assert venv.packages()["alias", "installed"]["error"] == "it declares package name 'release', not 'alias'"


PY_PROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "acme-pytasks"
version = "3.1"

[project.entry-points."spider_core.task_packages"]
acme_py = "acme_pytasks:package"
"""

PY_MODULE = """
from spider_core.sdk import Package, TaskContext

package = Package("acme_py")


@package.task
def double(ctx: TaskContext, n: int) -> int:
    return 2 * n
"""


def test_a_python_task_package_installed_the_same_way(venv: Venv, tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "acme_pytasks").mkdir(parents=True)
    (project / "pyproject.toml").write_text(textwrap.dedent(PY_PROJECT))
    (project / "acme_pytasks" / "__init__.py").write_text(textwrap.dedent(PY_MODULE))
    venv.pip("install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation", project)
    assert run_once(venv, "acme_py", "double", 21)["values"] == [42]
    info = venv.packages()["acme_py", "installed"]
    assert (info["kind"], info["distribution"], info["version"], info["tasks"]) == (
        "python", "acme-pytasks", "3.1", ["double(n: int) -> int"]
    )


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.stdout == "" and "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    return line


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--version", "one"], 2, "spider: error: --version 'one' is not a version number (PEP 440, such as 1.2.0)"),
        (["--dist-name=-acme"], 2, "spider: error: --dist-name '-acme' is not a distribution name: use letters, "
                                   "digits, '-', '_' and '.', starting and ending with a letter or digit"),
        (["--dist-name", "9lives"], 2, "spider: error: --dist-name '9lives' gives the module name '9lives', which is "
                                       "not a Python identifier: start it with a letter"),
    ],
)
def test_bad_wheel_options_are_one_sentence_and_build_nothing(tmp_path: Path, args: list[str], status: int,
                                                              message: str) -> None:
    out, dist = tmp_path / "out", tmp_path / "dist"
    done = subprocess.run([SPIDER, "build-package", TASK_PACKAGES / PKG, "--out", out, "--wheel", dist, *args],
                          capture_output=True, text=True)
    assert (done.returncode, one_line_error(done)) == (status, message)
    assert not out.exists() and not dist.exists()


def test_a_wheel_directory_that_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = subprocess.run([SPIDER, "build-package", TASK_PACKAGES / PKG, "--wheel", tmp_path / "file" / "dist"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert one_line_error(done) == f"spider: error: cannot write the wheel to {tmp_path / 'file' / 'dist'}: Not a directory"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--version", "1"], "spider: error: say what to build: --out DIR (a package directory), --wheel DIR (a wheel), "
                             "or both"),
        (["--out", "x", "--dist-name", "acme"], "spider: error: --version and --dist-name describe a wheel: pass "
                                                "--wheel DIR too"),
    ],
)
def test_wheel_options_without_a_wheel(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run([SPIDER, "build-package", TASK_PACKAGES / PKG, *args], capture_output=True, text=True,
                          cwd=tmp_path)
    assert (done.returncode, one_line_error(done)) == (2, message)
    assert list(tmp_path.iterdir()) == []


def test_a_wheel_without_hatchling_says_how_to_get_it(tmp_path: Path) -> None:
    hide = "import sys; sys.modules['hatchling'] = None; from spider_core.commands import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", hide, "build-package", TASK_PACKAGES / PKG, "--wheel", tmp_path],
                          capture_output=True, text=True)
    assert done.returncode == 1
    line = one_line_error(done)
    assert line.startswith("spider: error: --wheel needs hatchling, which writes the wheel (")
    assert line.endswith("): pip install 'spider-core-pool[wheel]'")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_build_leaves_no_wheel_directory(tmp_path: Path) -> None:
    src = write_c_package(tmp_path / "src", "broken", "int x = ;\n")
    dist = tmp_path / "dist" / "sub"
    done = subprocess.run([SPIDER, "build-package", src, "--wheel", dist], capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"spider: error: compiling package 'broken' from {src} failed (compiler exit status 1)")
    assert not (tmp_path / "dist").exists()
