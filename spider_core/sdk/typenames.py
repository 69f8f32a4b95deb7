"""Short, readable names of type annotations, for task signatures and error messages."""

from __future__ import annotations

import types
import typing
from typing import Any

__all__ = ["type_name"]

_NoneType = type(None)


def type_name(tp: Any) -> str:
    """A short, readable name for a type annotation: ``list[Complex]``, ``int | None``."""
    if tp is _NoneType or tp is None:
        return "None"
    if tp is Any:
        return "Any"
    if isinstance(tp, str):
        return tp
    if isinstance(tp, typing.ForwardRef):
        return tp.__forward_arg__
    if isinstance(tp, typing.NewType):
        return tp.__name__
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        name = type_name(origin)
        return f"{name}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]" if args else name
    if isinstance(tp, type):
        return tp.__name__ if "<locals>" in tp.__qualname__ else tp.__qualname__
    return str(tp).replace("typing.", "")
