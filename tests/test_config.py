"""``PoolConfig``: every bad field is refused with one sentence naming the field, the value and
what is expected."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

import spider_core as sc

SECONDS = "a positive, finite number of seconds"
BAD = [
    ("metrics", 1, "True or False"),
    ("package_dir", 5, "a path (a string or a Path) or None"),
    ("installed_packages", "yes", "True or False"),
    ("installed_packages", None, "True or False"),
    ("slots", 0, "a whole number of at least 1"),
    ("slots", True, "a whole number of at least 1"),
    ("slots", 1.5, "a whole number of at least 1"),
    ("slots", "2", "a whole number of at least 1"),
    ("default_timeout", 0, f"{SECONDS} or None"),
    ("default_timeout", float("inf"), f"{SECONDS} or None"),
    ("default_timeout", float("nan"), f"{SECONDS} or None"),
    ("default_timeout", "5", f"{SECONDS} or None"),
    ("log_dir", 3, "a path (a string or a Path) or None"),
    ("em_id", "", "a non-empty string"),
    ("em_id", 7, "a non-empty string"),
    ("inherited_env", 5, "variable names (a string or a list of non-empty strings)"),
    ("inherited_env", ["HOME", 3], "variable names (a string or a list of non-empty strings)"),
    ("max_log_line_bytes", 0, "a whole number of bytes of at least 1"),
    ("max_frame_size", 1.5, "a whole number of bytes of at least 1"),
    ("executor_command", [], "a command (a string or a non-empty list of non-empty strings) or None"),
    ("executor_command", ["python", None], "a command (a string or a non-empty list of non-empty strings) or None"),
    ("protocol", "", "a protocol name (a non-empty string)"),
    ("protocol", 5, "a protocol name (a non-empty string)"),
    ("protocol", None, "a protocol name (a non-empty string)"),
    ("spawn_timeout", "5", SECONDS),
    ("spawn_timeout", float("inf"), SECONDS),
    ("spawn_timeout", -1, SECONDS),
    ("shutdown_grace", 0, SECONDS),
    ("recycle_after", 1.5, "a whole number of tasks of at least 1 or None"),
    ("recycle_after", 0, "a whole number of tasks of at least 1 or None"),
    ("max_executor_rss", 1.5, "a whole number of bytes of at least 1 or None"),
    ("max_spawn_failures", 0, "a whole number of at least 1"),
    ("backoff_initial", float("inf"), SECONDS),
    ("backoff_max", "30", SECONDS),
    ("disabled_plugins", 3, "plugin names (a string or a list of non-empty strings)"),
    ("plugin_autoload", "yes", "True or False or None"),
    ("executor_spin_us", -1, "a whole number of microseconds of at least 0 or None"),
    ("executor_spin_us", 2.5, "a whole number of microseconds of at least 0 or None"),
    ("standby", 1, "True or False"),
    ("start_method", "spawn", "'exec' or 'forkserver'"),
    ("spin_us", "300", "a whole number of microseconds of at least 0"),
    ("executor_log_level", "loud", "one of 'debug', 'info', 'warning', 'error'"),
    ("executor_log_level", 10, "one of 'debug', 'info', 'warning', 'error'"),
    ("shm_threshold", 0, "a whole number of bytes of at least 1 or None"),
    ("shm_threshold", 1.5, "a whole number of bytes of at least 1 or None"),
]


@pytest.mark.parametrize(("name", "value", "expected"), BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_a_bad_field_is_one_sentence(name: str, value: object, expected: str) -> None:
    kwargs = {"package_dir": "."} | {name: value}
    with pytest.raises(ValueError) as info:
        sc.PoolConfig(**kwargs)
    assert str(info.value) == f"PoolConfig.{name} must be {expected}, got {value!r}" or (
        isinstance(value, list) and str(info.value).startswith(f"PoolConfig.{name} must be {expected}, got (")
    )


def test_every_field_has_a_bad_value_tested() -> None:
    assert {a.name for a in attrs.fields(sc.PoolConfig)} == {name for name, _, _ in BAD}


def test_good_values_are_taken_and_normalised(tmp_path: Path) -> None:
    config = sc.PoolConfig(
        package_dir=str(tmp_path), log_dir=str(tmp_path / "logs"), inherited_env="HOME", disabled_plugins=["a"],
        executor_command="my-executor", executor_log_level="DEBUG", spawn_timeout=5, default_timeout=1,
    )
    assert config.package_dir == tmp_path and config.log_dir == tmp_path / "logs"
    assert config.inherited_env == ("HOME",) and config.disabled_plugins == ("a",)
    assert config.executor_command == ("my-executor",) and config.executor_log_level == "debug"
    assert config.spawn_timeout == 5 and config.default_timeout == 1


def test_fields_are_checked_on_evolve_too() -> None:
    with pytest.raises(ValueError, match=r"^PoolConfig.slots must be a whole number of at least 1, got 0$"):
        attrs.evolve(sc.PoolConfig(package_dir="."), slots=0)
