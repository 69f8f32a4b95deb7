"""The project's one cattrs converter: models to msgpack-ready primitives and back."""

from __future__ import annotations

import enum
import typing
from typing import Any

import attrs
from cattrs.preconf.msgpack import MsgpackConverter, make_converter
from cattrs.strategies import configure_tagged_union

from spider_core.models import Execute, Message, Outcome, Ready, Result, Shutdown
from spider_core.tdl import ExecutorError

#: Key naming an outcome's class in its primitive form.
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
    configure_tagged_union(Outcome, converter, tag_name=TAG)
    return converter


converter = _make()

# -- protocol messages ----------------------------------------------------------------------
#
# A protocol message is a msgpack array: the class name, then the fields in declaration order
# (how rmp-serde writes a struct). An array, not a map: no key strings to write and read on
# each side of every call. Each field goes through the converter's (strict) hook for its type.

_MESSAGES = {cls.__name__: cls for cls in (Execute, Shutdown, Result, Ready)}
_FIELDS: dict[type, tuple[tuple[str, Any, Any], ...]] = {}
for _cls in _MESSAGES.values():
    attrs.resolve_types(_cls)
    _FIELDS[_cls] = tuple((a.name, a.type, converter.get_structure_hook(a.type)) for a in attrs.fields(_cls))


def message_to_primitive(message: Message) -> list[Any]:
    """``[class name, field, ...]``, each field unstructured by the converter."""
    return [type(message).__name__, *converter.unstructure_attrs_astuple(message)]


def message_from_primitive(primitive: Any) -> Message:
    """The message an array from :func:`message_to_primitive` stands for.

    :raises ValueError: not a message: not an array, an unknown class name, the wrong number
        of fields, or a field of the wrong type.
    """
    if type(primitive) is not list or not primitive:
        raise ValueError(f"a message must be a non-empty array, got {type(primitive).__name__} {primitive!r:.40}")
    tag, *values = primitive
    cls = _MESSAGES.get(tag) if type(tag) is str else None
    if cls is None:
        raise ValueError(f"unknown message type {tag!r:.40}")
    fields = _FIELDS[cls]
    if len(values) != len(fields):
        names = ", ".join(name for name, _, _ in fields) or "none"
        raise ValueError(f"invalid {tag} message: {len(values)} fields, expected {len(fields)} ({names})")
    kwargs = {}
    for (name, tp, hook), value in zip(fields, values, strict=True):
        try:
            kwargs[name] = hook(value, tp)
        except Exception as e:
            raise ValueError(f"invalid {tag} message: {name}: {e}") from None
    return cls(**kwargs)


# The two messages of every call, Execute and Result, also have hand-written fast paths: the
# general path costs a hook call per field, and after each wake-up every microsecond of Python
# here costs several. They accept exactly the well-formed messages (the right length, the
# exact types) and leave everything else to message_from_primitive, which gives the verdict
# and the error; tests check that both agree.


def execute_fields(primitive: Any) -> tuple[int, str, str, bytes, bytes] | None:
    """``(seq, package, task, raw_ctx, raw_inputs)`` of a well-formed Execute primitive;
    None for anything else (then :func:`message_from_primitive` decides)."""
    if type(primitive) is list and len(primitive) == 6 and primitive[0] == "Execute":
        _, seq, package, task, raw_ctx, raw_inputs = primitive
        if type(seq) is int and type(package) is str and type(task) is str and type(raw_ctx) is bytes:
            if type(raw_inputs) is bytes:
                return seq, package, task, raw_ctx, raw_inputs
    return None


def result_fields(primitive: Any) -> tuple[int, bool, bytes, int] | None:
    """``(seq, ok, payload, elapsed_us)`` of a well-formed Result primitive; None for anything
    else (then :func:`message_from_primitive` decides)."""
    if type(primitive) is list and len(primitive) == 5 and primitive[0] == "Result":
        _, seq, ok, payload, elapsed_us = primitive
        if type(seq) is int and type(ok) is bool and type(payload) is bytes and type(elapsed_us) is int:
            return seq, ok, payload, elapsed_us
    return None


def execute_primitive(seq: int, package: str, task: str, raw_ctx: bytes, raw_inputs: bytes) -> list[Any]:
    """``message_to_primitive(Execute(...))``, without building the Execute."""
    return ["Execute", seq, package, task, raw_ctx, raw_inputs]


def result_primitive(seq: int, ok: bool, payload: bytes, elapsed_us: int) -> list[Any]:
    """``message_to_primitive(Result(...))``, without building the Result."""
    return ["Result", seq, ok, payload, elapsed_us]
