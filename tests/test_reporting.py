"""``spider_core.commands.reporting``: exit codes, JSON output and input, one-line descriptions."""

from __future__ import annotations

import signal

import pytest

import spider_core as sc
from spider_core.commands.reporting import (
    describe_error,
    outcome_exit_code,
    outcome_record,
    outcome_summary,
    parse_json,
    print_table,
    signal_name,
    to_json,
)
from spider_core.tdl import (
    IncompatibleVersion,
    InvalidLibrary,
    PackageInitError,
    TaskError,
    TdlError,
    TdlErrorKind,
    Version,
    encode_values,
)

SUCCESS = sc.Success(outputs=encode_values([55]), elapsed_us=12, executor_id=3)
BOOM = sc.InTaskFailure(error=TaskError(TdlError(TdlErrorKind.ExecutionError, "boom")), elapsed_us=7, executor_id=2)
NO_TASK = sc.InTaskFailure(error=TaskError(TdlError(TdlErrorKind.TaskNotFound, "nope")), elapsed_us=1, executor_id=1)
NO_LIBRARY = sc.InTaskFailure(error=InvalidLibrary("cannot open libx.so"), elapsed_us=0, executor_id=1)
TIMEOUT = sc.Timeout(hard_timeout=2.5, executor_id=4)
SEGFAULT = sc.ExecutorCrash(exit_status=None, signal=signal.SIGSEGV, executor_id=5)
EXIT_3 = sc.ExecutorCrash(exit_status=3, signal=None, executor_id=6)


# -- to_json -------------------------------------------------------------------------------


def test_to_json_writes_bytes_as_a_tagged_base64_object() -> None:
    assert to_json(b"\x00\xffab") == '{"$bytes": "AP9hYg=="}'


def test_to_json_writes_a_bytearray_like_bytes() -> None:
    assert to_json([bytearray(b"ab")]) == '[{"$bytes": "YWI="}]'


def test_to_json_writes_bytes_keys_as_bare_base64_strings() -> None:
    # Keys are strings in JSON, so a bytes key (here not even UTF-8) is its base64, untagged.
    assert to_json({b"\xff\xfe": 1}) == '{"//4=": 1}'


def test_to_json_tags_bytes_values_under_bytes_keys() -> None:
    assert to_json({b"k": b"v"}) == '{"aw==": {"$bytes": "dg=="}}'


def test_to_json_spells_out_non_finite_floats() -> None:
    value = {"a": float("nan"), "b": [float("inf"), float("-inf")], "c": 1.5}
    assert to_json(value) == '{"a": {"$float": "nan"}, "b": [{"$float": "inf"}, {"$float": "-inf"}], "c": 1.5}'


def test_to_json_spells_out_a_non_finite_float_at_the_top_level() -> None:
    assert to_json(float("-inf")) == '{"$float": "-inf"}'


def test_to_json_writes_keys_json_cannot_hold_as_their_json_text() -> None:
    # A tuple key sends the value through the fallback, which also renders the int and None keys.
    assert to_json({(1, 2): "pair", 1: "int", None: "none"}) == '{"[1, 2]": "pair", "1": "int", "null": "none"}'


def test_to_json_keeps_non_ascii_text_as_it_is() -> None:
    assert to_json({"name": "café", "n": [1, 2.5, None, True]}) == '{"name": "café", "n": [1, 2.5, null, true]}'


def test_to_json_escapes_everything_when_a_lone_surrogate_cannot_be_utf8() -> None:
    assert to_json(["\ud800", "é"]) == '["\\ud800", "\\u00e9"]'


def test_to_json_output_is_strict_json_that_parse_json_reads_back() -> None:
    text = to_json({"x": float("nan"), "b": b"\x01", (1,): 2})
    assert parse_json(text) == {"x": {"$float": "nan"}, "b": {"$bytes": "AQ=="}, "[1]": 2}


def test_to_json_refuses_a_value_json_cannot_describe() -> None:
    with pytest.raises(TypeError, match="^object is not JSON serializable$"):
        to_json({"x": object()})


# -- parse_json ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("NaN", "NaN is not valid JSON"),
        ("Infinity", "Infinity is not valid JSON"),
        ("-Infinity", "-Infinity is not valid JSON"),
        ("[1, NaN]", "NaN is not valid JSON"),
        ("1e999", "1e999 is out of range for a float"),
        ("-1e999", "-1e999 is out of range for a float"),
        ('{"x": [2.5, 1e999]}', "1e999 is out of range for a float"),
    ],
)
def test_parse_json_refuses_non_finite_numbers(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_json(text)
    assert str(info.value) == message


def test_parse_json_reports_a_syntax_error_with_its_position() -> None:
    with pytest.raises(ValueError) as info:
        parse_json('{"a" 1}')  # json words this the same on 3.11-3.13 (not so a trailing comma)
    assert str(info.value) == "not valid JSON: Expecting ':' delimiter (at character 5)"


def test_parse_json_refuses_input_nested_too_deeply() -> None:
    with pytest.raises(ValueError) as info:
        parse_json("[" * 100_000)
    assert str(info.value) == "nested too deeply"


def test_parse_json_reads_ordinary_json() -> None:
    assert parse_json('{"a": [1, 2.5, "x", null, true], "b": -1e308}') == {"a": [1, 2.5, "x", None, True], "b": -1e308}


# -- signal_name and describe_error --------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "name"),
    [(9, "SIGKILL"), (11, "SIGSEGV"), (None, None), (200, "signal 200")],
)
def test_signal_name(number: int | None, name: str | None) -> None:
    assert signal_name(number) == name


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (TaskError(TdlError(TdlErrorKind.ExecutionError, "boom")), "ExecutionError: boom"),
        (TaskError(TdlError(TdlErrorKind.TaskNotFound, "nope")), "the package has no task named 'nope'"),
        (InvalidLibrary("cannot open libx.so"), "InvalidLibrary: cannot open libx.so"),
        (PackageInitError(TdlError("Custom", "bad init")), "PackageInitError: package init failed: Custom: bad init"),
        (ValueError("not an executor error"), "ValueError: not an executor error"),
    ],
)
def test_describe_error(error: Exception, line: str) -> None:
    assert describe_error(error) == line


# -- outcomes ------------------------------------------------------------------------------


def test_outcome_record_of_a_success() -> None:
    assert outcome_record(SUCCESS) == {"outcome": "success", "values": [55], "elapsed_us": 12, "executor_id": 3}


def test_outcome_record_of_a_task_failure() -> None:
    assert outcome_record(BOOM) == {
        "outcome": "task_failure",
        "error": {"TaskError": {"ExecutionError": "boom"}},
        "message": "ExecutionError: boom",
        "elapsed_us": 7,
        "executor_id": 2,
    }


def test_outcome_record_of_a_timeout() -> None:
    assert outcome_record(TIMEOUT) == {"outcome": "timeout", "hard_timeout": 2.5, "executor_id": 4}


def test_outcome_record_of_a_crash_names_the_signal() -> None:
    assert outcome_record(SEGFAULT) == {"outcome": "crash", "exit_status": None, "signal": "SIGSEGV", "executor_id": 5,
                                        "reason": None}


def test_outcome_record_of_a_crash_with_an_exit_status() -> None:
    assert outcome_record(EXIT_3) == {"outcome": "crash", "exit_status": 3, "signal": None, "executor_id": 6,
                                      "reason": None}


def test_outcome_record_of_a_protocol_violation_says_why() -> None:
    killed = sc.ExecutorCrash(exit_status=None, signal=9, executor_id=7, reason="the executor sent a message nobody asked for")
    assert outcome_record(killed) == {"outcome": "crash", "exit_status": None, "signal": "SIGKILL", "executor_id": 7,
                                      "reason": "the executor sent a message nobody asked for"}
    assert outcome_summary(killed) == (
        "the executor broke the protocol and was killed: the executor sent a message nobody asked for"
    )


def test_outcome_record_as_json() -> None:
    expected = '{"outcome": "crash", "exit_status": null, "signal": "SIGSEGV", "executor_id": 5, "reason": null}'
    assert to_json(outcome_record(SEGFAULT)) == expected


def test_outcome_record_refuses_what_is_not_an_outcome() -> None:
    with pytest.raises(TypeError, match=r"^not an outcome: 'done'$"):
        outcome_record("done")


@pytest.mark.parametrize(
    ("outcome", "code"),
    [(SUCCESS, 0), (BOOM, 1), (NO_LIBRARY, 2), (NO_TASK, 2), (TIMEOUT, 3), (SEGFAULT, 4), (EXIT_3, 4), ("done", 5),
     (sc.InTaskFailure(error=IncompatibleVersion(Version(0, 2, 0), Version(0, 1, 0)), elapsed_us=0), 2),
     (sc.InTaskFailure(error=PackageInitError(TdlError(TdlErrorKind.ExecutionError, "init")), elapsed_us=0), 1)],
)
def test_outcome_exit_code(outcome: object, code: int) -> None:
    assert outcome_exit_code(outcome) == code


@pytest.mark.parametrize(
    ("outcome", "summary"),
    [
        (BOOM, "ExecutionError: boom"),
        (NO_TASK, "the package has no task named 'nope'"),
        (TIMEOUT, "the task did not finish within its hard timeout of 2.5s"),
        (sc.Timeout(hard_timeout=30.0), "the task did not finish within its hard timeout of 30s"),
        (SEGFAULT, "the executor crashed (signal SIGSEGV)"),
        (EXIT_3, "the executor crashed (exit status 3)"),
    ],
)
def test_outcome_summary(outcome: object, summary: str) -> None:
    assert outcome_summary(outcome) == summary


# -- print_table ---------------------------------------------------------------------------


def test_print_table_aligns_columns_and_strips_trailing_blanks(capsys: pytest.CaptureFixture[str]) -> None:
    print_table([["NAME", "KIND", "TASKS"], ["integration_test_tasks", "native", "12"], ["x", "python", ""]])
    assert capsys.readouterr().out == (
        "NAME                    KIND    TASKS\n"
        "integration_test_tasks  native  12\n"
        "x                       python\n"
    )
