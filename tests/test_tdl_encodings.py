"""Every hex vector of docs/abi.md §3-5, byte for byte, in both directions."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spider_core.tdl import (
    EMPTY_FRAME,
    HOST_VERSION,
    DuplicatePackage,
    EncodingError,
    ErrorPayloadDeserializationFailure,
    ExecutorError,
    IncompatibleVersion,
    InvalidLibrary,
    InvalidUtf8,
    PackageInitError,
    SerializedTaskOutputs,
    TaskContext,
    TaskError,
    TaskId,
    TdlError,
    TdlErrorKind,
    Version,
    WireFormatError,
    decode_values,
    encode_value,
    encode_values,
    frame_payloads,
    unframe_payloads,
)


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


def s(text: str) -> str:
    """msgpack fixstr bytes of ``text`` as hex."""
    return bytes([0xA0 | len(text)]).hex() + text.encode().hex()


# -- §3.3 TdlError ---------------------------------------------------------------------------

TDL_ERROR_VECTORS = [
    (TdlError("ExecutionError", "boom"), h("81 ae 45 78 65 63 75 74 69 6f 6e 45 72 72 6f 72 a4 62 6f 6f 6d")),
    (TdlError("TaskNotFound", "boom"), h("81 ac 54 61 73 6b 4e 6f 74 46 6f 75 6e 64 a4 62 6f 6f 6d")),
    (TdlError("Custom", "boom"), h("81 a6 43 75 73 74 6f 6d a4 62 6f 6f 6d")),
    (
        TdlError("DeserializationError", "boom"),
        h("81 b4 44 65 73 65 72 69 61 6c 69 7a 61 74 69 6f 6e 45 72 72 6f 72 a4 62 6f 6f 6d"),
    ),
]


@pytest.mark.parametrize(("error", "data"), TDL_ERROR_VECTORS, ids=lambda v: getattr(v, "kind", None) and v.kind.name)
def test_tdl_error_vectors(error: TdlError, data: bytes) -> None:
    assert error.encode() == data
    assert TdlError.decode(data) == error
    assert len(TDL_ERROR_VECTORS[0][1]) == 21


def test_tdl_error_long_message_uses_str8() -> None:
    message = "m" * 32
    assert TdlError("ExecutionError", message).encode() == h("81" + s("ExecutionError") + "d9 20") + message.encode()


def test_tdl_error_decodes_variant_index_like_rmp() -> None:
    assert TdlError.decode(msgpack.packb({3: "boom"})) == TdlError(TdlErrorKind.ExecutionError, "boom")


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", msgpack.packb("ExecutionError"), msgpack.packb({"Nope": "x"}), msgpack.packb({"Custom": 3}),
     msgpack.packb({"Custom": "a", "TaskNotFound": "b"}), msgpack.packb({9: "x"})],
)
def test_tdl_error_rejects_invalid_bytes(data: bytes) -> None:
    with pytest.raises(EncodingError):
        TdlError.decode(data)


# -- §3.4 ExecutorError -------------------------------------------------------------------

EXECUTOR_ERROR_VECTORS = [
    (
        IncompatibleVersion(package=Version(0, 2, 0), executor=Version(0, 1, 0)),
        h("81" + "b3" + b"IncompatibleVersion".hex() + "96 00 02 00 00 01 00"),
    ),
    (
        TaskError(TdlError("ExecutionError", "boom")),
        h("81 a9" + b"TaskError".hex() + "81 ae" + b"ExecutionError".hex() + "a4" + b"boom".hex()),
    ),
    (
        PackageInitError(TdlError("Custom", "i")),
        h("81 b0" + b"PackageInitError".hex() + "81 a6" + b"Custom".hex() + "a1 69"),
    ),
    (InvalidLibrary("x"), h("81 ae" + b"InvalidLibrary".hex() + "a1 78")),
    (
        ErrorPayloadDeserializationFailure("d"),
        h("81 d9 22" + b"ErrorPayloadDeserializationFailure".hex() + "a1 64"),
    ),
    (DuplicatePackage("p"), h("81" + s("DuplicatePackage") + s("p"))),
    (InvalidUtf8("u"), h("81" + s("InvalidUtf8") + s("u"))),
]


@pytest.mark.parametrize(("error", "data"), EXECUTOR_ERROR_VECTORS, ids=lambda v: type(v).__name__)
def test_executor_error_vectors(error: ExecutorError, data: bytes) -> None:
    assert error.encode() == data
    decoded = ExecutorError.decode(data)
    assert type(decoded) is type(error)
    assert decoded == error


def test_executor_error_python_views() -> None:
    assert msgpack.unpackb(EXECUTOR_ERROR_VECTORS[0][1]) == {"IncompatibleVersion": [0, 2, 0, 0, 1, 0]}
    assert msgpack.unpackb(EXECUTOR_ERROR_VECTORS[1][1]) == {"TaskError": {"ExecutionError": "boom"}}


def test_executor_error_decodes_indices_and_struct_maps_like_rmp() -> None:
    assert ExecutorError.decode(msgpack.packb({4: {3: "boom"}})) == TaskError(TdlError("ExecutionError", "boom"))
    fields = ["package_major", "package_minor", "package_patch", "executor_major", "executor_minor", "executor_patch"]
    as_map = msgpack.packb({"IncompatibleVersion": dict(zip(fields, [0, 2, 0, 0, 1, 0], strict=False))})
    decoded = ExecutorError.decode(as_map)
    assert isinstance(decoded, IncompatibleVersion)
    assert (decoded.package, decoded.executor) == (Version(0, 2, 0), Version(0, 1, 0))


def test_executor_error_variant_indices_follow_spider() -> None:
    order = ["InvalidLibrary", "IncompatibleVersion", "DuplicatePackage", "InvalidUtf8", "TaskError",
             "PackageInitError", "ErrorPayloadDeserializationFailure"]
    assert sorted(ExecutorError.variants, key=lambda n: ExecutorError.variants[n].variant_index) == order
    assert [ExecutorError.variants[n].variant_index for n in order] == list(range(7))


@pytest.mark.parametrize(
    "obj",
    [{"IncompatibleVersion": [0, 2, 0]}, {"TaskError": "boom"}, {"Nope": "x"}, {"InvalidLibrary": 1}, ["x"]],
)
def test_executor_error_rejects_invalid_values(obj: object) -> None:
    with pytest.raises(EncodingError):
        ExecutorError.decode(msgpack.packb(obj))


# -- §3.5 TaskId and TaskContext ----------------------------------------------------------

TASK_ID_VECTORS = [
    (TaskId.of(0), h("81 a5 49 6e 64 65 78 00")),
    (TaskId.of(300), h("81 a5" + b"Index".hex() + "cd 01 2c")),
    (TaskId.COMMIT, h("a6 43 6f 6d 6d 69 74")),
    (TaskId.CLEANUP, h("a7" + b"Cleanup".hex())),
]


@pytest.mark.parametrize(("task_id", "data"), TASK_ID_VECTORS, ids=str)
def test_task_id_vectors(task_id: TaskId, data: bytes) -> None:
    assert msgpack.packb(task_id.to_primitive()) == data
    assert TaskId.from_primitive(msgpack.unpackb(data)) == task_id


def test_task_id_decodes_indices_like_rmp() -> None:
    assert TaskId.from_primitive({0: 7}) == TaskId.of(7)
    assert TaskId.from_primitive(1) == TaskId.COMMIT
    assert TaskId.from_primitive(2) == TaskId.CLEANUP


CONTEXT_VECTORS = [
    (
        TaskContext(job_id=1, task_id=TaskId.of(0), task_instance_id=13, resource_group_id=2),
        h("95 01 81 a5 49 6e 64 65 78 00 0d 02 c0"),
    ),
    (
        TaskContext(job_id=0x0123456789ABCDEF, task_id=TaskId.of(5), task_instance_id=1000, resource_group_id=70000),
        h("95 cf 01 23 45 67 89 ab cd ef 81 a5 49 6e 64 65 78 05 cd 03 e8 ce 00 01 11 70 c0"),
    ),
    (
        TaskContext(
            job_id=42,
            task_id=TaskId.COMMIT,
            task_instance_id=1,
            resource_group_id=7,
            serialized_task_graph_outputs=h("00 02 00 00 00 01 00 00 00 03 01 00 00 00 fd"),
        ),
        h("95 2a a6 43 6f 6d 6d 69 74 01 07 9f 00 02 00 00 00 01 00 00 00 03 01 00 00 00 cc fd"),
    ),
]


@pytest.mark.parametrize(("context", "data"), CONTEXT_VECTORS, ids=["index0", "big-ids", "commit"])
def test_task_context_vectors(context: TaskContext, data: bytes) -> None:
    assert context.encode() == data
    assert TaskContext.decode(data) == context


def test_task_context_matches_plain_msgpack_view() -> None:
    assert CONTEXT_VECTORS[0][1] == msgpack.packb([1, {"Index": 0}, 13, 2, None])


def test_task_context_accepts_outputs_as_bin() -> None:
    raw = h("00 00 00 00 00")
    data = msgpack.packb([42, "Commit", 1, 7, raw])
    assert TaskContext.decode(data).serialized_task_graph_outputs == raw


def test_task_context_long_outputs_use_array16_and_array32() -> None:
    for size, header in [(16, "dc 00 10"), (70000, "dd 00 01 11 70")]:
        outputs = bytes(range(256)) * (size // 256) + bytes(size % 256)
        ctx = TaskContext(task_id=TaskId.COMMIT, serialized_task_graph_outputs=outputs)
        encoded = ctx.encode()
        assert encoded == msgpack.packb([0, "Commit", 0, 0, list(outputs)])
        assert h(header) in encoded[:20]
        assert TaskContext.decode(encoded) == ctx


def test_task_context_enforces_commit_outputs_invariant() -> None:
    with pytest.raises(ValueError, match="commit task's context must carry"):
        TaskContext(task_id=TaskId.COMMIT)
    with pytest.raises(ValueError, match="only the commit task"):
        TaskContext(task_id=TaskId.of(1), serialized_task_graph_outputs=b"\x00")


@pytest.mark.parametrize(
    "obj",
    [[1, {"Index": 0}, 13, 2], [1, {"Index": 0}, 13, 2, None, None], [-1, {"Index": 0}, 1, 1, None],
     [1, {"Index": -1}, 1, 1, None], [1, "Bogus", 1, 1, None], [1, "Commit", 1, 1, [256]], "ctx"],
)
def test_task_context_rejects_invalid_arrays(obj: object) -> None:
    with pytest.raises(EncodingError):
        TaskContext.decode(msgpack.packb(obj))


@given(
    job=st.integers(0, 2**64 - 1),
    instance=st.integers(0, 2**64 - 1),
    group=st.integers(0, 2**64 - 1),
    task=st.one_of(st.integers(0, 2**64 - 1).map(TaskId.of), st.just(TaskId.CLEANUP)),
)
def test_task_context_round_trip(job: int, instance: int, group: int, task: TaskId) -> None:
    ctx = TaskContext(job_id=job, task_id=task, task_instance_id=instance, resource_group_id=group)
    data = ctx.encode()
    assert data == msgpack.packb([job, task.to_primitive(), instance, group, None])
    assert TaskContext.decode(data) == ctx


@given(outputs=st.binary(max_size=600))
def test_commit_context_round_trip(outputs: bytes) -> None:
    ctx = TaskContext(task_id=TaskId.COMMIT, serialized_task_graph_outputs=outputs)
    assert ctx.encode() == msgpack.packb([0, "Commit", 0, 0, list(outputs)])
    assert TaskContext.decode(ctx.encode()) == ctx


# -- §4 wire format -----------------------------------------------------------------------

WIRE_VECTORS = [
    ([10], h("01 00 00 00 | 01 00 00 00 | 0a")),
    ([], h("00 00 00 00")),
    ([["a", "bc"]], h("01 00 00 00 | 06 00 00 00 | 92 a1 61 a2 62 63")),
    ([[]], h("01 00 00 00 | 01 00 00 00 | 90")),
    ([55], h("01 00 00 00 01 00 00 00 37")),
    ([7, "hello", -42], h("03 00 00 00 | 01 00 00 00 07 | 06 00 00 00 a5 68 65 6c 6c 6f | 02 00 00 00 d0 d6")),
]


@pytest.mark.parametrize(("values", "data"), WIRE_VECTORS, ids=["u64", "none", "vec-str", "empty-vec", "55", "tuple3"])
def test_wire_vectors(values: list, data: bytes) -> None:
    assert encode_values(values) == data
    assert decode_values(data) == values


def test_empty_frame_constant() -> None:
    assert EMPTY_FRAME == h("00 00 00 00") == encode_values([])


@pytest.mark.parametrize(
    ("value", "data"),
    [(0, "00"), (127, "7f"), (128, "cc 80"), (256, "cd 01 00"), (65536, "ce 00 01 00 00"),
     (2**32, "cf 00 00 00 01 00 00 00 00"), (-1, "ff"), (-32, "e0"), (-33, "d0 df"), (-129, "d1 ff 7f"),
     (-32769, "d2 ff ff 7f ff"), (-(2**31) - 1, "d3 ff ff ff ff 7f ff ff ff"), (True, "c3"), (False, "c2"),
     (None, "c0"), (1.5, "cb 3f f8 00 00 00 00 00 00"), ("x" * 32, "d9 20" + "78" * 32), (b"\x01", "c4 01 01")],
)
def test_value_encodings_follow_rmp(value: object, data: str) -> None:
    assert encode_value(value) == h(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too small for the 4-byte payload count"),
        (h("01 00"), "too small"),
        (h("01 00 00 00"), "claims 1 payloads but holds only 4 bytes"),
        (h("02 00 00 00 01 00 00 00 0a 00 00 00"), "truncated in the length of payload 1"),
        (h("01 00 00 00 05 00 00 00 0a"), "payload 0 claims 5 bytes but only 1 remain"),
        (h("ff ff ff ff 00 00 00 00"), "claims 4294967295 payloads"),
    ],
)
def test_unframe_rejects_short_and_truncated_buffers(data: bytes, message: str) -> None:
    with pytest.raises(WireFormatError, match=message):
        unframe_payloads(data)


def test_unframe_ignores_trailing_bytes_like_spider() -> None:
    assert decode_values(h("01 00 00 00 02 00 00 00 0a ff | ee dd")) == [10]


def test_undecodable_payload_is_a_clear_error() -> None:
    with pytest.raises(WireFormatError, match="not valid msgpack"):
        decode_values(h("01 00 00 00 01 00 00 00 c1"))


def test_unencodable_value_names_its_position() -> None:
    with pytest.raises(WireFormatError, match="value 1: cannot encode object value"):
        encode_values([1, object()])


def test_oversized_payload_is_refused() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return 2**32

    with pytest.raises(WireFormatError, match="at most 4294967295 bytes"):
        frame_payloads([Huge()])


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)


@given(values=st.lists(msgpack_values, max_size=6))
def test_wire_round_trip(values: list) -> None:
    frame = encode_values(values)
    assert decode_values(frame) == values
    assert unframe_payloads(frame) == [encode_value(v) for v in values]


@given(payloads=st.lists(st.binary(max_size=40), max_size=8))
def test_frame_round_trip(payloads: list[bytes]) -> None:
    assert unframe_payloads(frame_payloads(payloads)) == payloads


# -- §4.1 SerializedTaskOutputs -----------------------------------------------------------


def test_serialized_outputs_vectors() -> None:
    assert SerializedTaskOutputs.from_frame(encode_values([])).raw == h("00 00 00 00 00")
    raw = h("00 02 00 00 00 01 00 00 00 03 01 00 00 00 fd")
    assert SerializedTaskOutputs.from_frame(encode_values([3, -3])).raw == raw
    assert SerializedTaskOutputs(raw).values() == [3, -3]


def test_serialized_outputs_errors() -> None:
    with pytest.raises(EncodingError, match="empty"):
        SerializedTaskOutputs(b"").frame()
    with pytest.raises(EncodingError, match="unknown serialized task outputs option 7"):
        SerializedTaskOutputs(b"\x07").frame()


def test_zstd_outputs_round_trip_or_clear_error() -> None:
    frame = encode_values(["x" * 2000])
    try:
        import zstandard  # noqa: F401
    except ImportError:
        with pytest.raises(EncodingError, match=r"pip install 'spider-core-pool\[zstd\]'"):
            SerializedTaskOutputs(b"\x01" + frame).frame()
    else:
        stored = SerializedTaskOutputs.from_frame(frame, compress=True)
        assert stored.raw[0] == 1 and len(stored.raw) < len(frame)
        assert stored.values() == ["x" * 2000]


# -- §5 version compatibility -------------------------------------------------------------


@pytest.mark.parametrize(
    ("executor", "package", "ok"),
    [((0, 1, 0), (0, 1, 0), True), ((0, 1, 0), (0, 1, 9), True), ((0, 1, 0), (0, 2, 0), False),
     ((0, 1, 0), (1, 1, 0), False), ((1, 2, 0), (1, 99, 0), True), ((1, 99, 0), (1, 2, 3), True),
     ((1, 0, 0), (2, 0, 0), False), ((1, 0, 0), (0, 0, 0), False)],
)
def test_version_compatibility(executor: tuple, package: tuple, ok: bool) -> None:
    assert Version(*executor).is_compatible_with(Version(*package)) is ok


def test_host_version_is_spider_tdl_0_1_0() -> None:
    assert HOST_VERSION == Version(0, 1, 0)
