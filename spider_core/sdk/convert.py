"""The SDK's own cattrs converter, and structuring and unstructuring with spider's rules.

:func:`structure` first applies spider's conformers (:mod:`spider_core.sdk.conform`), then
cattrs for whatever is left; :func:`unstructure` turns a task's return value into msgpack-ready
primitives. The converter rejects extra keys and checks scalars, ``Literal`` and enums as
strictly as rmp-serde does. It is built on first use: importing cattrs costs tens of ms, which
an executor that never runs a Python task should not pay.

Supported types: ``int``, ``float``, ``bool``, ``str``, ``bytes``, ``list``/``tuple``/``set``,
``dict``, ``Optional``/unions, ``Any``, attrs classes, dataclasses, enums, and anything else the
converter knows. attrs classes and dataclasses are written as msgpack maps (cattrs' default) and
read from a map or, as rmp-serde reads a Rust struct, from an array of field values in
declaration order. Scalars are checked as strictly as rmp-serde checks them: an ``int`` never
comes from a string or a float, a ``float`` may come from an int, a ``str`` may come from
UTF-8 bin and ``bytes`` from bin or an array of u8 (rmp-serde's ``Vec<u8>``). A union of
scalars (``int | str``) takes the member of the value's own type, else the one that converts
it; a bool is never an int.
"""

from __future__ import annotations

import enum
import functools
import typing
from typing import TYPE_CHECKING, Any

from spider_core.sdk.conform import Mismatch, plan

if TYPE_CHECKING:
    from cattrs.preconf.msgpack import MsgpackConverter

__all__ = ["converter", "structure", "unstructure"]

_NoneType = type(None)


# -- the converter -------------------------------------------------------------------------


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


@functools.cache
def converter() -> MsgpackConverter:
    """The SDK's converter, built (and cattrs imported) on the first call."""
    from cattrs.preconf.msgpack import make_converter

    built = make_converter(forbid_extra_keys=True)
    built.register_structure_hook(int, _strict("int", (int,)))
    built.register_structure_hook(float, _strict("float", (float, int), float))
    built.register_structure_hook(bool, _strict("bool", (bool,)))
    built.register_structure_hook(str, _strict("str", (str,)))
    built.register_structure_hook(bytes, _strict("bytes", (bytes,)))  # not bytes(0) == b""
    # get_origin(Any) matches typeshed's first overload (-> ParamSpec), hence the ignore
    built.register_structure_hook_factory(lambda tp: typing.get_origin(tp) is typing.Literal, _literal)  # type: ignore[comparison-overlap]
    built.register_structure_hook_factory(lambda tp: isinstance(tp, type) and issubclass(tp, enum.Enum), _enum)
    return built


# -- structuring and unstructuring ---------------------------------------------------------


def _cattrs_detail(error: Exception) -> str:
    import cattrs

    if not isinstance(error, cattrs.BaseValidationError):
        return f"{type(error).__name__}: {error}"
    messages = [
        m.replace(" @ .", " at ").replace(" @ ", " at ").removesuffix(" at ")
        for m in cattrs.transform_error(error, path="")
    ]
    return "; ".join(messages) or str(error)


def structure(value: Any, tp: Any) -> Any:
    """Structure a decoded msgpack value as ``tp`` with spider's rules and the SDK's converter.

    :raises ValueError: the value does not fit the type; the message says where and why.
    """
    conformer, final = plan(tp)
    try:
        if conformer is not None:
            value = conformer(value)
        return value if final else converter().structure(value, tp)
    except Mismatch as e:
        raise ValueError(str(e)) from None
    except Exception as e:
        raise ValueError(_cattrs_detail(e)) from None


_PRIMITIVES = frozenset({int, float, str, bytes, bool, _NoneType})


def unstructure(value: Any) -> Any:
    """Turn a task's return value into msgpack-ready primitives (the SDK's converter;
    scalars, and lists and dicts of scalars, are already primitives)."""
    kind = type(value)
    if kind in _PRIMITIVES:
        return value
    if kind is list and all(type(v) in _PRIMITIVES for v in value):
        return value
    if kind is dict and all(type(k) in _PRIMITIVES and type(v) in _PRIMITIVES for k, v in value.items()):
        return value
    return converter().unstructure(value)
