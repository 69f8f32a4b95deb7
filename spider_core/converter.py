"""The project's one cattrs converter: models to msgpack-ready primitives and back."""

from __future__ import annotations

from cattrs.preconf.msgpack import make_converter
from cattrs.strategies import configure_tagged_union

from spider_core.models import Message, Outcome
from spider_core.tdl import ExecutorError

#: Key naming a message's class in its primitive form.
TAG = "type"


def _make() -> object:
    converter = make_converter(forbid_extra_keys=True)
    # spider's own encodings stay in their explicit functions (ABI.md); the converter only
    # delegates to them.
    converter.register_unstructure_hook(ExecutorError, ExecutorError.to_primitive)
    converter.register_structure_hook(ExecutorError, lambda obj, _: ExecutorError.from_primitive(obj))
    configure_tagged_union(Message, converter, tag_name=TAG)
    configure_tagged_union(Outcome, converter, tag_name=TAG)
    return converter


converter = _make()
