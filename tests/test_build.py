"""`spider build-package` and `spider_core.build_package`, through the real entry point."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import spider_core
from helpers import SPIDER, TASK_PACKAGES, write_c_package
from spider_core.build import BuildError, PackageSourceError, build_package

SYMBOLS = {
    "__spider_tdl_package_get_version",
    "__spider_tdl_package_get_name",
    "__spider_tdl_package_init",
    "__spider_tdl_package_execute",
}


def spider(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([str(SPIDER), *args], capture_output=True, text=True, env={**os.environ, **(env or {})})


def assert_one_clear_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("spider: error: ") or done.stderr.startswith("usage:")
    assert text in done.stderr


def test_get_include_holds_the_header() -> None:
    assert (Path(spider_core.get_include()) / "spider_tdl.h").is_file()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nm") is None, reason="nm (binutils) is not installed")
def test_cli_builds_a_library_exporting_the_four_symbols(tmp_path: Path) -> None:
    done = spider("build-package", str(TASK_PACKAGES / "integration_test_tasks"), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    library = tmp_path / "integration_test_tasks" / "libintegration_test_tasks.so"
    assert done.stdout.strip() == str(library)
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(library)], capture_output=True, text=True).stdout
    assert SYMBOLS <= {line.split()[-1] for line in symbols.splitlines() if line.strip()}


@pytest.mark.slow
def test_rebuild_replaces_the_library(tmp_path: Path) -> None:
    first = build_package(TASK_PACKAGES / "integration_test_tasks", tmp_path)
    inode = first.stat().st_ino
    second = build_package(TASK_PACKAGES / "integration_test_tasks", tmp_path)
    assert second == first and second.stat().st_ino != inode
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary files left


def test_missing_source_dir(tmp_path: Path) -> None:
    assert_one_clear_line(
        spider("build-package", str(tmp_path / "nope"), "--out", str(tmp_path)), 2, "does not exist"
    )


def test_source_dir_without_c_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert_one_clear_line(spider("build-package", str(tmp_path / "empty"), "--out", str(tmp_path)), 2, "no .c files")


def test_missing_compiler(tmp_path: Path) -> None:
    done = spider("build-package", str(TASK_PACKAGES / "integration_test_tasks"), "--out", str(tmp_path),
                  env={"CC": "/nonexistent/cc"})
    assert_one_clear_line(done, 1, "C compiler '/nonexistent/cc' not found")
    assert len(done.stderr.strip().splitlines()) == 1


def test_compile_error_shows_the_compiler_message(tmp_path: Path) -> None:
    src = write_c_package(tmp_path, "broken", "int main(void) { return nope; }\n")
    done = spider("build-package", str(src), "--out", str(tmp_path / "out"))
    assert_one_clear_line(done, 1, "compiling package 'broken'")
    assert "nope" in done.stderr and "error" in done.stderr
    assert not (tmp_path / "out" / "broken" / "libbroken.so").exists()


def test_usage_error() -> None:
    done = spider("build-package")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_python_api_errors(tmp_path: Path) -> None:
    with pytest.raises(PackageSourceError, match="does not exist"):
        build_package(tmp_path / "nope", tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(PackageSourceError, match="is not a directory"):
        build_package(tmp_path / "file", tmp_path)
    with pytest.raises(PackageSourceError, match="cannot write to output directory .*: Not a directory"):
        build_package(TASK_PACKAGES / "integration_test_tasks", tmp_path / "file")
    with pytest.raises(BuildError, match="not found"):
        build_package(TASK_PACKAGES / "integration_test_tasks", tmp_path, cc="/nonexistent/cc")


def test_an_unusable_output_directory_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    done = spider("build-package", str(TASK_PACKAGES / "integration_test_tasks"), "--out", str(tmp_path / "file"))
    assert done.returncode == 2 and "cannot write to output directory" in done.stderr


@pytest.mark.slow
def test_the_library_is_readable_by_others_as_the_umask_allows(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        library = build_package(TASK_PACKAGES / "integration_test_tasks", tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(library.stat().st_mode) == 0o755  # not mkstemp's 0600


def test_cflags_reach_the_compiler(tmp_path: Path) -> None:
    src = write_c_package(tmp_path, "flagged", "#ifndef MUST_BE_SET\n#error MUST_BE_SET missing\n#endif\n")
    with pytest.raises(BuildError, match="MUST_BE_SET missing"):
        build_package(src, tmp_path / "out", check=False)
    assert build_package(src, tmp_path / "out", cflags=["-DMUST_BE_SET"], check=False).is_file()


def test_a_library_without_the_symbols_is_refused(tmp_path: Path) -> None:
    src = write_c_package(tmp_path, "noexport", "int foo(void) { return 1; }\n")
    done = spider("build-package", str(src), "--out", str(tmp_path / "out"))
    assert_one_clear_line(done, 1, "not a usable spider-tdl package")
    assert not (tmp_path / "out" / "noexport" / "libnoexport.so").exists()



@pytest.mark.slow
def test_a_failed_build_leaves_no_directory_it_made_and_names_no_temporary_file(tmp_path: Path) -> None:
    noexport = write_c_package(tmp_path, "noexport", "int foo(void) { return 1; }\n")
    broken = write_c_package(tmp_path, "broken", "int main(void) { return nope; }\n")
    out = tmp_path / "out" / "deeper"
    done = spider("build-package", str(noexport), "--out", str(out))
    assert_one_clear_line(done, 1, f"not a spider-tdl package: {out / 'noexport' / 'libnoexport.so'}: undefined symbol")
    assert ".tmp" not in done.stderr and ".libnoexport." not in done.stderr
    assert not (tmp_path / "out").exists()  # neither <out>/<name>/ nor the <out> it made
    assert_one_clear_line(spider("build-package", str(broken), "--out", str(out)), 1, "compiling package 'broken'")
    assert not (tmp_path / "out").exists()
    (tmp_path / "mine").mkdir()  # a directory the build did not make is kept, only what it made goes
    assert spider("build-package", str(noexport), "--out", str(tmp_path / "mine")).returncode == 1
    assert list((tmp_path / "mine").iterdir()) == []
    with pytest.raises(BuildError) as info:
        build_package(noexport, out)
    assert ".tmp" not in str(info.value) and str(out / "noexport" / "libnoexport.so") in str(info.value)
    assert not (tmp_path / "out").exists()

@pytest.mark.slow
def test_a_package_built_under_another_name_is_refused(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(TASK_PACKAGES / "integration_test_tasks", tmp_path / "renamed")
    done = spider("build-package", str(tmp_path / "renamed"), "--out", str(tmp_path / "out"))
    assert_one_clear_line(done, 1, "declares package name 'integration_test_tasks', but it must be named after")


def test_spider_inspect_package_reads_the_declared_name_and_version(package_dir: Path, tmp_path: Path) -> None:
    from spider_core.plugin import PackageSource
    from spider_core.plugin.manager import get_plugin_manager
    from spider_core.tdl import HOST_VERSION

    pm = get_plugin_manager(autoload=False)
    library = package_dir / "integration_test_tasks" / "libintegration_test_tasks.so"
    info = pm.hook.spider_inspect_package(source=PackageSource(package="anything", kind="native", location=library))
    assert (info.name, info.abi_version, info.compatible, info.error) == ("integration_test_tasks", str(HOST_VERSION), True, None)
    broken = build_package(write_c_package(tmp_path, "noexport", "int foo(void) { return 1; }\n"), tmp_path / "out", check=False)
    info = pm.hook.spider_inspect_package(source=PackageSource(package="noexport", kind="native", location=broken))
    assert info.name == "noexport" and info.error.startswith("not a spider-tdl package: ")
    assert pm.hook.spider_inspect_package(source=PackageSource(package="p", kind="python", location=tmp_path)) is None


def test_the_build_check_goes_through_the_plugins(tmp_path: Path) -> None:
    src = write_c_package(tmp_path, "noexport", "int foo(void) { return 1; }\n")
    done = spider("build-package", str(src), "--out", str(tmp_path / "out"), env={"SPIDER_DISABLE_PLUGINS": "spider_libso"})
    assert done.returncode == 0, done.stderr  # no plugin inspects native libraries: nothing to check with
    assert (tmp_path / "out" / "noexport" / "libnoexport.so").is_file()


@pytest.mark.parametrize(("variable", "value"), [("CC", '"unclosed'), ("CFLAGS", '"unclosed')])
def test_unparsable_compiler_settings(tmp_path: Path, variable: str, value: str) -> None:
    done = spider("build-package", str(TASK_PACKAGES / "integration_test_tasks"), "--out", str(tmp_path),
                  env={variable: value})
    assert_one_clear_line(done, 1, "No closing quotation")
    assert list((tmp_path / "integration_test_tasks").glob(".*.tmp")) == []
