"""spider's decoding rules on top of cattrs: a "conformer" per type.

Before cattrs structures a decoded value, a conformer built once per type applies rmp-serde's
strictness and leniency: scalars are type-checked (cattrs would call ``int("5")``), structs may
come as arrays, containers are walked. Types it does not know are left to cattrs
(:mod:`spider_core.sdk.convert`).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

import attrs

from spider_core.sdk.typenames import type_name

__all__ = ["Conformer", "Mismatch", "plan"]

_NoneType = type(None)

Conformer = Callable[[Any], Any]


class Mismatch(Exception):
    """A value that does not fit a type; ``path`` says where, outermost first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def at(self, segment: str) -> Mismatch:
        self.path.insert(0, segment)
        return self

    def __str__(self) -> str:
        path = "".join(self.path).removeprefix(".")
        return f"{path}: {self.message}" if path else self.message


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _struct_fields(cls: type) -> list[tuple[str, Any]] | None:
    """``(key, type)`` of each init field of an attrs class or dataclass, in order."""
    try:
        if attrs.has(cls):
            attrs.resolve_types(cls)
            return [(a.name, a.type) for a in attrs.fields(cls) if a.init]
        if dataclasses.is_dataclass(cls):
            hints = typing.get_type_hints(cls)
            return [(f.name, hints.get(f.name, Any)) for f in dataclasses.fields(cls) if f.init]
    except (NameError, TypeError):  # unresolvable annotations: let cattrs report it
        return None
    return None


def _conform_bool(value: Any) -> Any:
    if type(value) is not bool:
        raise Mismatch(f"expected bool, got {_describe(value)}")
    return value


def _conform_int(value: Any) -> Any:
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise Mismatch(f"expected int, got {_describe(value)}")
    return value


def _conform_float(value: Any) -> Any:
    if type(value) is float:
        return value
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Mismatch(f"expected float, got {_describe(value)}")
    return float(value)


def _conform_str(value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise Mismatch("expected str, got bin that is not valid UTF-8") from None
    if not isinstance(value, str):
        raise Mismatch(f"expected str, got {_describe(value)}")
    return value


def _conform_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value
    if isinstance(value, list) and all(type(b) is int and 0 <= b < 256 for b in value):
        return bytes(value)
    raise Mismatch(f"expected bytes (bin or an array of u8), got {_describe(value)}")


def _conform_none(value: Any) -> Any:
    if value is not None:
        raise Mismatch(f"expected None, got {_describe(value)}")
    return None


_SCALARS: dict[Any, Conformer] = {
    bool: _conform_bool,
    int: _conform_int,
    float: _conform_float,
    str: _conform_str,
    bytes: _conform_bytes,
    _NoneType: _conform_none,
    None: _conform_none,
}
#: ``collections.abc`` generics read from a msgpack array or map.
_SEQUENCES = frozenset({"Sequence", "MutableSequence", "Collection", "Iterable", "Set", "MutableSet"})
_MAPPINGS = frozenset({"Mapping", "MutableMapping"})


def _is_abc(container: Any, names: frozenset[str]) -> bool:
    return isinstance(container, type) and container.__module__ == "collections.abc" and container.__name__ in names


def _all_scalars(types_: tuple[Any, ...]) -> bool:
    try:
        return all(t in _SCALARS for t in types_)
    except TypeError:  # unhashable
        return False


def _scalar_union(tp: Any, members: list[Conformer]) -> Conformer:
    """``int | str`` and the like: the member of the value's own type, else the one member that
    converts it (an int to a float, bin to a str, an array of u8 to bytes); never a bool as an
    int. The order of the members does not matter: ``int | float == float | int``, so both
    share one cached conformer, and the error names the members in one canonical order."""
    exact = {_NoneType if t is None else t for t in typing.get_args(tp)}
    expected = " | ".join(type_name(t) for t in _SCALARS if t in exact)

    def conform(value: Any) -> Any:
        if type(value) in exact:
            return value
        for member in members:
            try:
                return member(value)
            except Mismatch:
                continue
        raise Mismatch(f"expected {expected}, got {_describe(value)}")

    return conform


def _optional(inner: Conformer) -> Conformer:
    def conform(value: Any) -> Any:
        return None if value is None else inner(value)

    return conform


def _array(tp: Any, item: Conformer | None) -> Conformer:
    def conform(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise Mismatch(f"expected {type_name(tp)} (an array), got {_describe(value)}")
        if item is None:
            return value
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except Mismatch as e:
                raise e.at(f"[{i}]") from None
        return out

    return conform


def _fixed_tuple(tp: Any, items: list[Conformer | None]) -> Conformer:
    def conform(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise Mismatch(f"expected {type_name(tp)} (an array), got {_describe(value)}")
        if len(value) != len(items):
            raise Mismatch(f"expected {type_name(tp)} ({len(items)} elements), got {len(value)} elements")
        out = []
        for i, (v, item) in enumerate(zip(value, items, strict=True)):
            try:
                out.append(v if item is None else item(v))
            except Mismatch as e:
                raise e.at(f"[{i}]") from None
        return out

    return conform


def _map(tp: Any, key: Conformer | None, item: Conformer | None) -> Conformer:
    def conform(value: Any) -> Any:
        if not isinstance(value, dict):
            raise Mismatch(f"expected {type_name(tp)} (a map), got {_describe(value)}")
        if key is None and item is None:
            return value
        out = {}
        for k, v in value.items():
            try:
                k2 = k if key is None else key(k)
            except Mismatch as e:
                raise e.at(f"[key {k!r}]") from None
            try:
                out[k2] = v if item is None else item(v)
            except Mismatch as e:
                raise e.at(f"[{k!r}]") from None
        return out

    return conform


def _struct(cls: type, fields: list[tuple[str, Any]]) -> Conformer:
    names = [k for k, _ in fields]
    conformers: dict[str, Conformer | None] | None = None  # built on first use: types may recurse

    def conform(value: Any) -> Any:
        nonlocal conformers
        if conformers is None:
            conformers = {k: _conformer(t) for k, t in fields}
        if isinstance(value, list | tuple):  # rmp-serde's struct form: field values in order
            if len(value) != len(names):
                raise Mismatch(
                    f"expected {type_name(cls)} as an array of {len(names)} field values "
                    f"({', '.join(names)}), got {len(value)} elements"
                )
            value = dict(zip(names, value, strict=True))
        elif not isinstance(value, dict):
            raise Mismatch(f"expected {type_name(cls)} (a map or an array), got {_describe(value)}")
        out = {}
        for k, v in value.items():
            field_conformer = conformers.get(k)
            try:
                out[k] = v if field_conformer is None else field_conformer(v)
            except Mismatch as e:
                raise e.at(f".{k}") from None
        return out

    return conform


def _build_conformer(tp: Any) -> Conformer | None:
    if tp is Any or tp is object:
        return None
    try:
        scalar = _SCALARS.get(tp)
    except TypeError:  # unhashable
        scalar = None
    if scalar is not None:
        return scalar
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _conformer(args[0])
    if isinstance(tp, typing.NewType):
        return _conformer(tp.__supertype__)
    if origin in (typing.Union, types.UnionType):
        if _all_scalars(args):
            return _scalar_union(tp, [_SCALARS[a] for a in args])
        others = [a for a in args if a is not _NoneType]
        if len(others) != 1:
            return None  # a union of structures: cattrs decides
        inner = _conformer(others[0])
        if inner is None:
            return None
        return _optional(inner) if len(others) < len(args) else inner
    container = origin or tp
    if container is tuple and args and args[-1] is not Ellipsis:
        return _fixed_tuple(tp, [_conformer(a) for a in args])
    if container in (list, set, frozenset, tuple) or _is_abc(container, _SEQUENCES):
        return _array(tp, _conformer(args[0]) if args else None)
    if container is dict or _is_abc(container, _MAPPINGS):
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        return _map(tp, _conformer(key_type), _conformer(value_type))
    if isinstance(tp, type) and origin is None:
        fields = _struct_fields(tp)
        if fields is not None:
            return _struct(tp, fields)
    return None


def _is_final(tp: Any) -> bool:
    """Whether a conformed value already is the structured value, so cattrs has nothing to do
    (scalars, and lists and dicts of them)."""
    if tp is Any or tp is object:
        return True
    try:
        if tp in _SCALARS:
            return True
    except TypeError:  # unhashable
        return False
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        return _is_final(args[0])
    if isinstance(tp, typing.NewType):
        return _is_final(tp.__supertype__)
    if origin in (typing.Union, types.UnionType):
        others = [a for a in args if a is not _NoneType]
        return _all_scalars(args) or (len(others) == 1 and _is_final(others[0]))
    container = origin or tp
    if container is list or _is_abc(container, _SEQUENCES - {"Set", "MutableSet"}):
        return not args or _is_final(args[0])
    if container is dict or _is_abc(container, _MAPPINGS):
        return not args or all(_is_final(a) for a in args)
    return False


_conformers: dict[Any, Conformer | None] = {}
_plans: dict[Any, tuple[Conformer | None, bool]] = {}


def _conformer(tp: Any) -> Conformer | None:
    """The conformer of ``tp`` (None: nothing to check), built once per type."""
    try:
        return _conformers[tp]
    except KeyError:
        conformer = _conformers[tp] = _build_conformer(tp)
        return conformer
    except TypeError:  # an unhashable annotation: build it every time
        return _build_conformer(tp)


def plan(tp: Any) -> tuple[Conformer | None, bool]:
    """``(conformer, final)`` for structuring a value as ``tp``."""
    try:
        return _plans[tp]
    except KeyError:
        found = _plans[tp] = (_conformer(tp), _is_final(tp))
        return found
    except TypeError:
        return _conformer(tp), False
