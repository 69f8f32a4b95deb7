"""The ctypes loader against real compiled packages, in-process (never the aborting tasks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import C_EXECUTE, C_HEADER, C_VERSION, TASK_PACKAGES, c_name_fn, write_c_package
from spider_core.build import build_package
from spider_core.plugin import PackageSource
from spider_core.tdl import (
    EMPTY_FRAME,
    DuplicatePackage,
    ErrorPayloadDeserializationFailure,
    IncompatibleVersion,
    InvalidLibrary,
    InvalidPackageName,
    InvalidUtf8,
    PackageInitError,
    TaskContext,
    TaskError,
    TdlErrorKind,
    Version,
    decode_values,
    encode_values,
)
from spider_libso import TdlPackageManager, library_path, load_native_package

CTX = TaskContext(job_id=1, task_instance_id=13, resource_group_id=2).encode()
NAME = "integration_test_tasks"


@pytest.fixture(scope="module")
def tasks(package_dir: Path):
    return load_native_package(library_path(package_dir, NAME), expected_name=NAME)


def test_package_metadata(tasks, package_dir: Path) -> None:
    assert tasks.name == NAME
    assert tasks.version == Version(0, 1, 0)
    assert tasks.path == package_dir / NAME / f"lib{NAME}.so"


def test_fibonacci(tasks) -> None:
    out = tasks.execute("fibonacci", CTX, encode_values([10]))
    assert out == bytes.fromhex("01000000 01000000 37")
    assert decode_values(out) == [55]


def test_sleep_and_echo(tasks) -> None:
    strings = [f"/data/file-{i}.log" for i in range(100)]
    assert decode_values(tasks.execute("sleep_and_echo", CTX, encode_values([strings]))) == [strings]
    assert tasks.execute("sleep_and_echo", CTX, encode_values([["a", "bc"]])) == bytes.fromhex(
        "01000000 06000000 92a161a26263"
    )


def test_always_fail(tasks) -> None:
    with pytest.raises(TaskError) as info:
        tasks.execute("always_fail", CTX, EMPTY_FRAME)
    assert info.value.error.kind is TdlErrorKind.ExecutionError
    assert "always_fail" in info.value.error.message


def test_unknown_task(tasks) -> None:
    with pytest.raises(TaskError) as info:
        tasks.execute("no_such_task", CTX, EMPTY_FRAME)
    assert (info.value.error.kind, info.value.error.message) == (TdlErrorKind.TaskNotFound, "no_such_task")


def test_wrong_input_count_is_length_mismatch(tasks) -> None:
    with pytest.raises(TaskError) as info:
        tasks.execute("fibonacci", CTX, EMPTY_FRAME)
    assert info.value.error.kind is TdlErrorKind.DeserializationError
    assert "expected 1 payloads, got 0" in info.value.error.message


def test_empty_inputs_buffer_is_a_deserialization_error(tasks) -> None:
    with pytest.raises(TaskError) as info:
        tasks.execute("fibonacci", CTX, b"")
    assert info.value.error.kind is TdlErrorKind.DeserializationError


def test_big_output(tasks) -> None:
    assert decode_values(tasks.execute("big", CTX, encode_values([100_000]))) == ["x" * 100_000]


def test_assert_initialized(tasks) -> None:
    assert tasks.execute("assert_initialized", CTX, EMPTY_FRAME) == EMPTY_FRAME


@pytest.mark.slow
def test_incompatible_version_is_refused(tmp_path: Path) -> None:
    library = build_package(TASK_PACKAGES / NAME, tmp_path, cflags=["-DSPIDER_TDL_VERSION_MINOR=2"])
    with pytest.raises(IncompatibleVersion) as info:
        load_native_package(library, expected_name=NAME)
    assert (info.value.package, info.value.executor) == (Version(0, 2, 0), Version(0, 1, 0))


@pytest.mark.slow
def test_patch_version_is_ignored(tmp_path: Path) -> None:
    library = build_package(TASK_PACKAGES / NAME, tmp_path, cflags=["-DSPIDER_TDL_VERSION_PATCH=7"])
    assert load_native_package(library, expected_name=NAME).version == Version(0, 1, 7)


def test_init_failure(package_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIDER_TEST_TDL_INIT_SHOULD_FAIL", "1")
    with pytest.raises(PackageInitError) as info:
        load_native_package(library_path(package_dir, NAME), expected_name=NAME)
    assert info.value.error.kind is TdlErrorKind.Custom


def test_name_mismatch(package_dir: Path) -> None:
    with pytest.raises(InvalidLibrary, match="declares package name 'integration_test_tasks' but was requested as 'other'"):
        load_native_package(library_path(package_dir, NAME), expected_name="other")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidLibrary, match=r"cannot load .*libnope\.so"):
        load_native_package(tmp_path / "nope" / "libnope.so")


def test_not_a_library(tmp_path: Path) -> None:
    path = tmp_path / "libjunk.so"
    path.write_bytes(b"not an ELF file")
    with pytest.raises(InvalidLibrary, match="cannot load"):
        load_native_package(path)


def build_fake(tmp_path: Path, name: str, source: str) -> Path:
    return build_package(write_c_package(tmp_path / "src", name, source), tmp_path / "out", check=False)


def test_missing_execute_symbol(tmp_path: Path) -> None:
    library = build_fake(tmp_path, "no_execute", C_HEADER + C_VERSION + c_name_fn("no_execute"))
    with pytest.raises(InvalidLibrary, match="does not export __spider_tdl_package_execute"):
        load_native_package(library, expected_name="no_execute")


def test_missing_version_symbol(tmp_path: Path) -> None:
    library = build_fake(tmp_path, "no_version", C_HEADER + c_name_fn("no_version"))
    with pytest.raises(InvalidLibrary, match="does not export __spider_tdl_package_get_version"):
        load_native_package(library)


def test_name_not_utf8(tmp_path: Path) -> None:
    body = C_EXECUTE.replace("BODY", "return spider_tdl_result_empty();")
    library = build_fake(tmp_path, "bad_utf8", C_HEADER + C_VERSION + c_name_fn("\\xff\\xfe") + body)
    with pytest.raises(InvalidUtf8, match="not valid UTF-8"):
        load_native_package(library)


def test_undecodable_error_payload(tmp_path: Path) -> None:
    body = C_EXECUTE.replace(
        "BODY",
        """spider_tdl_buf b; spider_tdl_buf_init(&b); spider_tdl_buf_append(&b, (const uint8_t *)"\\xc1", 1);
    spider_tdl_task_execution_result r = spider_tdl_result_ok(&b); r.is_error = true; return r;""",
    )
    library = build_fake(tmp_path, "bad_error", C_HEADER + C_VERSION + c_name_fn("bad_error") + body)
    package = load_native_package(library, expected_name="bad_error")
    with pytest.raises(ErrorPayloadDeserializationFailure, match="not a msgpack TdlError"):
        package.execute("anything", CTX, EMPTY_FRAME)


def test_empty_success_result_is_not_freed(tmp_path: Path) -> None:
    body = C_EXECUTE.replace("BODY", "return spider_tdl_result_empty();")
    library = build_fake(tmp_path, "empty_result", C_HEADER + C_VERSION + c_name_fn("empty_result") + body)
    package = load_native_package(library, expected_name="empty_result")
    for _ in range(3):  # freeing the dangling (uint8_t*)1 would crash the test process
        assert package.execute("t", CTX, EMPTY_FRAME) == b""


@pytest.mark.parametrize(
    "name", ["", ".", "..", "a/b", "/abs", "a\\b", "nul\0byte", "x" * 201, "tab\there"]
)
def test_bad_package_names_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidPackageName, match="invalid package name"):
        library_path(tmp_path, name)


def test_resolve_hook(pm, package_dir: Path, tmp_path: Path) -> None:
    source = pm.hook.spider_resolve_package(package=NAME, package_dir=package_dir, installed_packages=True)
    assert source == PackageSource(package=NAME, kind="native", location=package_dir / NAME / f"lib{NAME}.so")
    assert pm.hook.spider_resolve_package(package="absent", package_dir=package_dir, installed_packages=True) is None
    package = pm.hook.spider_load_package(source=source)
    assert decode_values(package.execute("fibonacci", CTX, encode_values([20]))) == [6765]
    other = PackageSource(package="x", kind="other", location=tmp_path)
    assert pm.hook.spider_load_package(source=other) is None


def test_package_manager(package_dir: Path) -> None:
    manager = TdlPackageManager()
    package = manager.load(library_path(package_dir, NAME), expected_name=NAME)
    assert manager.get(NAME) is package and NAME in manager and len(manager) == 1
    assert manager.get("other") is None
    with pytest.raises(DuplicatePackage, match="already loaded"):
        manager.load(library_path(package_dir, NAME))


@pytest.mark.slow
def test_list_packages_hook(pm, package_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "libbroken.so").write_bytes(b"junk")
    found = [i for infos in pm.hook.spider_list_packages(package_dir=package_dir) for i in infos]
    assert [(i.name, i.kind, i.abi_version, i.compatible, i.error) for i in found if i.kind == "native"] == [
        (NAME, "native", "0.1.0", True, None)
    ]
    broken = [i for infos in pm.hook.spider_list_packages(package_dir=tmp_path) for i in infos if i.kind == "native"]
    assert [(i.name, i.error is not None) for i in broken] == [("broken", True)]
