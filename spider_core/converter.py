"""The project's one cattrs converter: models to msgpack-ready primitives and back."""

from __future__ import annotations

from typing import Any

from cattrs.preconf.msgpack import MsgpackConverter, make_converter
from cattrs.strategies import configure_tagged_union

from spider_core.models import Execute, Message, Outcome, Ready, Result, Shutdown
from spider_core.tdl import ExecutorError

#: Key naming a message's or outcome's class in its primitive form.
TAG = "type"


def _make() -> MsgpackConverter:
    converter = make_converter(forbid_extra_keys=True)
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
