"""The project's one cattrs converter: models to msgpack-ready primitives and back."""

from __future__ import annotations

from cattrs.preconf.msgpack import make_converter
from cattrs.strategies import configure_tagged_union

from spider_core.models import Message

#: Key naming a message's class in its primitive form.
TAG = "type"


def _make() -> object:
    converter = make_converter(forbid_extra_keys=True)
    configure_tagged_union(Message, converter, tag_name=TAG)
    return converter


converter = _make()
