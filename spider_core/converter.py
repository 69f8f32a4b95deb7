"""The project's one cattrs converter: models to msgpack-ready primitives and back."""

from __future__ import annotations

import enum
import typing
from typing import Any

from cattrs.preconf.msgpack import MsgpackConverter, make_converter
from cattrs.strategies import configure_tagged_union

from spider_core.models import Execute, Message, Outcome, Ready, Result, Shutdown
from spider_core.tdl import ExecutorError

#: Key naming a message's or outcome's class in its primitive form.
TAG = "type"


def _strict(name: str, types: tuple[type, ...], convert: Any = None) -> Any:
    """A structure hook that accepts exactly these types, as rmp-serde does: no ``"5"`` for an
    int, no ``True`` for 1, no ``5.7`` truncated to 5."""

    def hook(value: Any, _: Any) -> Any:
        if type(value) not in types:
            raise TypeError(f"expected {name}, got {type(value).__name__} {value!r:.40}")
        return convert(value) if convert else value

    return hook


def _literal(tp: Any) -> Any:
    allowed = typing.get_args(tp)

    def hook(value: Any, _: Any) -> Any:
        for option in allowed:
            if type(value) is type(option) and value == option:
                return option
        raise ValueError(f"expected one of {', '.join(map(repr, allowed))}, got {value!r:.40}")

    return hook


def _enum(tp: type[enum.Enum]) -> Any:
    def hook(value: Any, _: Any) -> Any:
        for member in tp:
            if type(value) is type(member.value) and value == member.value:
                return member
        raise ValueError(f"expected a value of {tp.__name__} ({', '.join(repr(m.value) for m in tp)}), got {value!r:.40}")

    return hook


def _make() -> MsgpackConverter:
    converter = make_converter(forbid_extra_keys=True)
    converter.register_structure_hook(int, _strict("int", (int,)))
    converter.register_structure_hook(float, _strict("float", (float, int), float))
    converter.register_structure_hook(bool, _strict("bool", (bool,)))
    converter.register_structure_hook(str, _strict("str", (str,)))
    converter.register_structure_hook(bytes, _strict("bytes", (bytes,)))  # not bytes(0) == b""
    converter.register_structure_hook_factory(lambda tp: typing.get_origin(tp) is typing.Literal, _literal)
    converter.register_structure_hook_factory(
        lambda tp: isinstance(tp, type) and issubclass(tp, enum.Enum), _enum
    )
    # spider's own encodings stay in their explicit functions (ABI.md); the converter only
    # delegates to them.
    converter.register_unstructure_hook(ExecutorError, ExecutorError.to_primitive)
    converter.register_structure_hook(ExecutorError, lambda obj, _: ExecutorError.from_primitive(obj))
    configure_tagged_union(Message, converter, tag_name=TAG)
    configure_tagged_union(Outcome, converter, tag_name=TAG)
    return converter


converter = _make()

# The protocol messages cross the pipes once per task in each direction: resolve the
# converter's hooks for them once, instead of dispatching on the union every time.
_MESSAGES = (Execute, Shutdown, Result, Ready)
_unstructure = {cls: converter.get_unstructure_hook(cls) for cls in _MESSAGES}
_structure = {cls.__name__: (cls, converter.get_structure_hook(cls)) for cls in _MESSAGES}


def message_to_primitive(message: Message) -> dict[str, Any]:
    """``converter.unstructure(message, Message)``, without the union dispatch."""
    primitive = _unstructure[type(message)](message)
    primitive[TAG] = type(message).__name__
    return primitive


# The two messages of every call, Execute and Result, also have hand-written fast paths: a
# cattrs hook costs a function call per field, and after each wake-up every microsecond of
# Python here costs several. They accept exactly the well-formed messages (the right keys, the
# exact types) and leave everything else to the converter, which gives the verdict and the
# error; tests check that both agree.
_EXECUTE_KEYS = {TAG, "seq", "package", "task", "raw_ctx", "raw_inputs"}
_RESULT_KEYS = {TAG, "seq", "ok", "payload", "elapsed_us"}


def execute_fields(primitive: Any) -> tuple[int, str, str, bytes, bytes] | None:
    """``(seq, package, task, raw_ctx, raw_inputs)`` of a well-formed Execute primitive;
    None for anything else (then :func:`message_from_primitive` decides)."""
    if type(primitive) is dict and primitive.keys() == _EXECUTE_KEYS and primitive[TAG] == "Execute":
        fields = (
            primitive["seq"],
            primitive["package"],
            primitive["task"],
            primitive["raw_ctx"],
            primitive["raw_inputs"],
        )
        seq, package, task, raw_ctx, raw_inputs = fields
        if type(seq) is int and type(package) is str and type(task) is str and type(raw_ctx) is bytes:
            if type(raw_inputs) is bytes:
                return fields
    return None


def result_fields(primitive: Any) -> tuple[int, bool, bytes, int] | None:
    """``(seq, ok, payload, elapsed_us)`` of a well-formed Result primitive; None for anything
    else (then :func:`message_from_primitive` decides)."""
    if type(primitive) is dict and primitive.keys() == _RESULT_KEYS and primitive[TAG] == "Result":
        fields = primitive["seq"], primitive["ok"], primitive["payload"], primitive["elapsed_us"]
        seq, ok, payload, elapsed_us = fields
        if type(seq) is int and type(ok) is bool and type(payload) is bytes and type(elapsed_us) is int:
            return fields
    return None


def result_primitive(seq: int, ok: bool, payload: bytes, elapsed_us: int) -> dict[str, Any]:
    """``message_to_primitive(Result(...))``, without building the Result."""
    return {"seq": seq, "ok": ok, "payload": payload, "elapsed_us": elapsed_us, TAG: "Result"}


def message_from_primitive(primitive: Any) -> Message:
    """``converter.structure(primitive, Message)``, without the union dispatch.

    :raises ValueError: not a message (the dict is consumed either way).
    """
    if type(primitive) is not dict:
        raise ValueError(f"a message must be a map, got {type(primitive).__name__}")
    tag = primitive.pop(TAG, None)
    entry = _structure.get(tag) if isinstance(tag, str) else None
    if entry is None:
        raise ValueError(f"unknown message type {tag!r}")
    cls, hook = entry
    try:
        return hook(primitive, cls)
    except Exception as e:
        raise ValueError(f"invalid {cls.__name__} message: {e}") from None
