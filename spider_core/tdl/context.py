"""``TaskId`` and ``TaskContext``, encoded as rmp-serde encodes spider's types (docs/abi.md §3.5)."""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import msgpack
from attrs import Attribute, field, frozen
from attrs.validators import instance_of, optional

from spider_core.tdl.errors import EncodingError


def _u64(instance: Any, attribute: Attribute[int], value: Any) -> None:
    """An attrs validator: a u64, as rmp-serde reads one (so not a bool, not a float)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise ValueError(f"{attribute.name} must be an unsigned 64-bit integer, got {value!r:.40}")


class TaskIdKind(enum.Enum):
    """The variants of ``spider_core::types::id::TaskId``."""

    Index = 0
    Commit = 1
    Cleanup = 2


@frozen
class TaskId:
    """Which task of a job's graph runs: ``TaskId.of(3)``, ``TaskId.COMMIT`` or ``TaskId.CLEANUP``."""

    kind: TaskIdKind
    index: int | None = field(default=None, validator=optional(_u64))

    #: Set below the class.
    COMMIT: ClassVar[TaskId]
    CLEANUP: ClassVar[TaskId]

    def __attrs_post_init__(self) -> None:
        if (self.kind is TaskIdKind.Index) != (self.index is not None):
            raise ValueError("a TaskId has an index exactly when its kind is Index")

    @classmethod
    def of(cls, index: int) -> TaskId:
        return cls(TaskIdKind.Index, index)

    @property
    def is_commit(self) -> bool:
        return self.kind is TaskIdKind.Commit

    def to_primitive(self) -> dict[str, int | None] | str:
        if self.kind is TaskIdKind.Index:
            return {"Index": self.index}
        return self.kind.name

    @classmethod
    def from_primitive(cls, obj: Any) -> TaskId:
        """Accept what rmp-serde accepts: a name or an index, bare or as a one-entry map."""
        value = None
        if isinstance(obj, dict) and len(obj) == 1:
            ((obj, value),) = obj.items()
        try:
            kind = TaskIdKind[obj] if isinstance(obj, str) else TaskIdKind(obj)
        except (KeyError, ValueError, TypeError):
            raise EncodingError(f"unknown TaskId variant {obj!r}") from None
        if kind is TaskIdKind.Index:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**64:
                raise EncodingError(f"TaskId::Index needs a u64 index, got {value!r}")
            return cls.of(value)
        return cls(kind)

    def __str__(self) -> str:
        return f"Index({self.index})" if self.kind is TaskIdKind.Index else self.kind.name


TaskId.COMMIT = TaskId(TaskIdKind.Commit)
TaskId.CLEANUP = TaskId(TaskIdKind.Cleanup)

# rmp-serde writes a Vec<u8> as an array of ints: one byte below 0x80, else cc XX.
_U8_ENCODINGS = [bytes([b]) if b < 0x80 else bytes([0xCC, b]) for b in range(256)]


def _encode_u8_array(data: bytes) -> bytes:
    n = len(data)
    if n < 16:
        header = bytes([0x90 | n])
    elif n < 2**16:
        header = b"\xdc" + n.to_bytes(2, "big")
    else:
        header = b"\xdd" + n.to_bytes(4, "big")
    return header + b"".join(map(_U8_ENCODINGS.__getitem__, data))


@frozen(kw_only=True)
class TaskContext:
    """What a task learns about itself: a 5-element msgpack array.

    ``serialized_task_graph_outputs`` (the storage form of :class:`SerializedTaskOutputs`)
    is present exactly when the task is the commit task, as ``TaskContext::new`` enforces.
    """

    job_id: int = field(default=0, validator=_u64)
    task_id: TaskId = field(factory=lambda: TaskId.of(0), validator=instance_of(TaskId))
    task_instance_id: int = field(default=0, validator=_u64)
    resource_group_id: int = field(default=0, validator=_u64)
    serialized_task_graph_outputs: bytes | None = field(
        default=None, validator=optional(instance_of(bytes))
    )

    def __attrs_post_init__(self) -> None:
        has_outputs = self.serialized_task_graph_outputs is not None
        if self.task_id.is_commit and not has_outputs:
            raise ValueError("a commit task's context must carry the task-graph outputs")
        if has_outputs and not self.task_id.is_commit:
            raise ValueError(
                f"only the commit task's context carries task-graph outputs, not task {self.task_id}"
            )

    def encode(self) -> bytes:
        outputs = self.serialized_task_graph_outputs
        pack = msgpack.packb
        return b"".join(
            (
                b"\x95",  # fixarray(5)
                pack(self.job_id),
                pack(self.task_id.to_primitive()),
                pack(self.task_instance_id),
                pack(self.resource_group_id),
                b"\xc0" if outputs is None else _encode_u8_array(outputs),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> TaskContext:
        try:
            obj = msgpack.unpackb(data, strict_map_key=False)
        except msgpack.ExtraData as e:
            obj = e.unpacked
        except Exception as e:
            raise EncodingError(f"TaskContext is not valid msgpack: {e}") from None
        if isinstance(obj, dict):
            fields = [f.name for f in cls.__attrs_attrs__]
            obj = [obj.get(name) for name in fields]
        if not isinstance(obj, list) or len(obj) != 5:
            raise EncodingError(f"TaskContext must be a 5-element array, got {obj!r:.80}")
        job, task_id, instance, group, outputs = obj
        if isinstance(outputs, list):
            try:
                outputs = bytes(outputs)
            except (TypeError, ValueError):
                raise EncodingError("TaskContext outputs must be an array of u8") from None
        try:
            return cls(
                job_id=job,
                task_id=TaskId.from_primitive(task_id),
                task_instance_id=instance,
                resource_group_id=group,
                serialized_task_graph_outputs=outputs,
            )
        except (TypeError, ValueError) as e:
            if isinstance(e, EncodingError):
                raise
            raise EncodingError(f"invalid TaskContext: {e}") from None
