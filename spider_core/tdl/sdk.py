"""The Python task SDK: typed task functions on spider's wire format.

A Python task package is a module that exposes a :class:`Package`::

    from attrs import frozen

    from spider_core.tdl import Package, TaskContext, TdlError

    package = Package("complex_number")

    @frozen
    class Complex:
        re: float
        im: float

    @package.task
    def add(ctx: TaskContext, a: Complex, b: Complex) -> Complex:
        return Complex(a.re + b.re, a.im + b.im)

A task's first parameter receives the :class:`~spider_core.tdl.TaskContext`; each other
parameter takes one wire payload, msgpack-decoded and structured into the annotated type with
the project's cattrs converter (:mod:`spider_core.converter`). The return value is unstructured
with the same converter and encoded as spider's ``#[task]`` macro does: a ``tuple`` gives one
payload per element, ``None`` or ``()`` gives none, anything else gives one payload.

Supported types: ``int``, ``float``, ``bool``, ``str``, ``bytes``, ``list``/``tuple``/``set``,
``dict``, ``Optional``/unions, ``Any``, attrs classes, dataclasses, enums, and anything else the
converter knows. attrs classes and dataclasses are written as msgpack maps (cattrs' default) and
read from a map or, as rmp-serde reads a Rust struct, from an array of field values in
declaration order. Scalars are checked as strictly as rmp-serde checks them: an ``int`` never
comes from a string or a float, a ``float`` may come from an int, a ``str`` may come from
UTF-8 bin and ``bytes`` from bin or an array of u8 (rmp-serde's ``Vec<u8>``). A union of
scalars (``int | str``) takes the member of the value's own type, else the one that converts
it; a bool is never an int.

This module only encodes and decodes: user exceptions propagate out of
:meth:`Task.execute_raw`; the ``spider_pytasks`` plugin turns them into spider's errors.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from spider_core.tdl.context import TaskContext
from spider_core.tdl.errors import EncodingError, TdlError, TdlErrorKind
from spider_core.tdl.names import is_utf8, validate_package_name
from spider_core.tdl.wire import (
    EMPTY_FRAME,
    WireFormatError,
    decode_value,
    encode_value,
    frame_payloads,
    unframe_payloads,
)

__all__ = ["Package", "Task", "task", "type_name"]

_NoneType = type(None)
_MISSING = inspect.Parameter.empty


def _converter() -> Any:
    from spider_core.converter import converter  # cattrs costs tens of ms: import on first task

    return converter


# -- type names, for messages and signatures -----------------------------------------------


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


# -- spider's decoding rules on top of cattrs ---------------------------------------------
#
# Before cattrs structures a decoded value, a "conformer" built once per type applies
# rmp-serde's strictness and leniency: scalars are type-checked (cattrs would call int("5")),
# structs may come as arrays, containers are walked. Types it does not know are left to cattrs.

Conformer = Callable[[Any], Any]


class _Mismatch(Exception):
    """A value that does not fit a type; ``path`` says where, outermost first."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []

    def at(self, segment: str) -> _Mismatch:
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
        raise _Mismatch(f"expected bool, got {_describe(value)}")
    return value


def _conform_int(value: Any) -> Any:
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise _Mismatch(f"expected int, got {_describe(value)}")
    return value


def _conform_float(value: Any) -> Any:
    if type(value) is float:
        return value
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _Mismatch(f"expected float, got {_describe(value)}")
    return float(value)


def _conform_str(value: Any) -> Any:
    if type(value) is str:
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise _Mismatch("expected str, got bin that is not valid UTF-8") from None
    if not isinstance(value, str):
        raise _Mismatch(f"expected str, got {_describe(value)}")
    return value


def _conform_bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value
    if isinstance(value, list) and all(type(b) is int and 0 <= b < 256 for b in value):
        return bytes(value)
    raise _Mismatch(f"expected bytes (bin or an array of u8), got {_describe(value)}")


def _conform_none(value: Any) -> Any:
    if value is not None:
        raise _Mismatch(f"expected None, got {_describe(value)}")
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
            except _Mismatch:
                continue
        raise _Mismatch(f"expected {expected}, got {_describe(value)}")

    return conform


def _optional(inner: Conformer) -> Conformer:
    def conform(value: Any) -> Any:
        return None if value is None else inner(value)

    return conform


def _array(tp: Any, item: Conformer | None) -> Conformer:
    def conform(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _Mismatch(f"expected {type_name(tp)} (an array), got {_describe(value)}")
        if item is None:
            return value
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except _Mismatch as e:
                raise e.at(f"[{i}]") from None
        return out

    return conform


def _fixed_tuple(tp: Any, items: list[Conformer | None]) -> Conformer:
    def conform(value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise _Mismatch(f"expected {type_name(tp)} (an array), got {_describe(value)}")
        if len(value) != len(items):
            raise _Mismatch(f"expected {type_name(tp)} ({len(items)} elements), got {len(value)} elements")
        out = []
        for i, (v, item) in enumerate(zip(value, items, strict=True)):
            try:
                out.append(v if item is None else item(v))
            except _Mismatch as e:
                raise e.at(f"[{i}]") from None
        return out

    return conform


def _map(tp: Any, key: Conformer | None, item: Conformer | None) -> Conformer:
    def conform(value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Mismatch(f"expected {type_name(tp)} (a map), got {_describe(value)}")
        if key is None and item is None:
            return value
        out = {}
        for k, v in value.items():
            try:
                k2 = k if key is None else key(k)
            except _Mismatch as e:
                raise e.at(f"[key {k!r}]") from None
            try:
                out[k2] = v if item is None else item(v)
            except _Mismatch as e:
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
                raise _Mismatch(
                    f"expected {type_name(cls)} as an array of {len(names)} field values "
                    f"({', '.join(names)}), got {len(value)} elements"
                )
            value = dict(zip(names, value, strict=True))
        elif not isinstance(value, dict):
            raise _Mismatch(f"expected {type_name(cls)} (a map or an array), got {_describe(value)}")
        out = {}
        for k, v in value.items():
            field_conformer = conformers.get(k)
            try:
                out[k] = v if field_conformer is None else field_conformer(v)
            except _Mismatch as e:
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


def _plan(tp: Any) -> tuple[Conformer | None, bool]:
    """``(conformer, final)`` for structuring a value as ``tp``."""
    try:
        return _plans[tp]
    except KeyError:
        plan = _plans[tp] = (_conformer(tp), _is_final(tp))
        return plan
    except TypeError:
        return _conformer(tp), False


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
    """Structure a decoded msgpack value as ``tp`` with spider's rules and the project converter.

    :raises ValueError: the value does not fit the type; the message says where and why.
    """
    conformer, final = _plan(tp)
    try:
        if conformer is not None:
            value = conformer(value)
        return value if final else _converter().structure(value, tp)
    except _Mismatch as e:
        raise ValueError(str(e)) from None
    except Exception as e:
        raise ValueError(_cattrs_detail(e)) from None


_PRIMITIVES = frozenset({int, float, str, bytes, bool, _NoneType})


def unstructure(value: Any) -> Any:
    """Turn a task's return value into msgpack-ready primitives (the project converter;
    scalars, and lists and dicts of scalars, are already primitives)."""
    kind = type(value)
    if kind in _PRIMITIVES:
        return value
    if kind is list and all(type(v) in _PRIMITIVES for v in value):
        return value
    if kind is dict and all(type(k) in _PRIMITIVES and type(v) in _PRIMITIVES for k, v in value.items()):
        return value
    return _converter().unstructure(value)


# -- tasks ---------------------------------------------------------------------------------


class Task:
    """A typed task function; calling the task calls the function.

    :param function: ``fn(ctx: TaskContext, param: Type, ...) -> Return``.
    :param name: The task's name in its package; defaults to the function's ``__name__``.
    :raises TypeError: the function cannot be a task (no context parameter, ``*args``,
        ``**kwargs`` or keyword-only parameters).
    """

    def __init__(self, function: Callable[..., Any], name: str | None = None) -> None:
        if not (inspect.isfunction(function) or inspect.ismethod(function)):
            raise TypeError(
                f"a task must be a function (def or lambda), got {type(function).__name__} {function!r:.60}; "
                f"wrap it: def task(ctx, ...): return obj(...)"
            )
        if inspect.iscoroutinefunction(function):
            raise TypeError(f"task {name or function.__name__!r}: async functions cannot be tasks; define it with def")
        functools.update_wrapper(self, function, updated=())  # __name__, __doc__, ... for tools
        self.function = function
        self.function_name: str = getattr(function, "__name__", None) or type(function).__name__
        self.name: str = name if name is not None else self.function_name
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a task name must be a non-empty string, got {self.name!r}")
        if not self.name.isprintable() or not is_utf8(self.name):
            raise TypeError(f"task name {self.name!r} must be printable UTF-8 text, as spider's task names are")
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError) as e:
            raise TypeError(f"task {self.name!r}: cannot read the signature of {function!r}: {e}") from None
        params = list(signature.parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        bad = [p.name for p in params if p.kind not in positional]
        if bad:
            raise TypeError(
                f"task {self.name!r}: parameter {bad[0]!r} must be positional; a task takes the "
                f"TaskContext and then one positional parameter per input payload"
            )
        if not params:
            raise TypeError(
                f"task {self.name!r}: the first parameter must receive the TaskContext, "
                f"e.g. def {self.function_name}(ctx: TaskContext, ...)"
            )
        self._signature = signature
        self._resolved: tuple[tuple[tuple[str, Any], ...], Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def resolve(self) -> tuple[tuple[tuple[str, Any], ...], Any]:
        """``((name, type), ...)`` of the input parameters, and the return annotation
        (``inspect.Parameter.empty`` if there is none). Annotations are resolved on first use.

        :raises TypeError: an annotation names something that does not exist, or the first
            parameter is annotated with something other than ``TaskContext``.
        """
        if self._resolved is None:
            try:
                hints = typing.get_type_hints(self.function)
            except Exception as e:
                raise TypeError(
                    f"task {self.name!r}: cannot resolve the annotations of {self.function_name}: "
                    f"{type(e).__name__}: {e}"
                ) from None
            ctx, *params = self._signature.parameters
            ctx_type = hints.get(ctx, TaskContext)
            if ctx_type is not TaskContext and ctx_type is not Any:
                raise TypeError(
                    f"task {self.name!r}: the first parameter ({ctx}) receives the TaskContext "
                    f"but is annotated {type_name(ctx_type)}"
                )
            self._resolved = (
                tuple((p, hints.get(p, Any)) for p in params),
                hints.get("return", _MISSING),
            )
        return self._resolved

    @property
    def parameters(self) -> tuple[tuple[str, Any], ...]:
        """``(name, type)`` of each input parameter (the context excluded)."""
        return self.resolve()[0]

    def signature(self) -> str:
        """``add(a: Complex, b: Complex) -> Complex``: the task name and its typed inputs."""
        params, returns = self.resolve()
        text = f"{self.name}({', '.join(f'{p}: {type_name(t)}' for p, t in params)})"
        return text if returns is _MISSING else f"{text} -> {type_name(returns)}"

    # -- the task handler (spider-tdl's TaskHandlerImpl::execute_raw) ----------------------

    def decode_inputs(self, raw_inputs: bytes) -> list[Any]:
        """Unframe, decode and structure the inputs; errors are ``DeserializationError``."""
        params = self.parameters
        where = f"`__{self.function_name}_params`"
        try:
            payloads = unframe_payloads(raw_inputs)
        except WireFormatError as e:
            raise TdlError(TdlErrorKind.DeserializationError, f"{where}: {e}") from None
        if len(payloads) != len(params):
            raise TdlError(
                TdlErrorKind.DeserializationError,
                f"{where}: expected {len(params)} payloads, got {len(payloads)}",
            )
        values = []
        for i, ((name, tp), payload) in enumerate(zip(params, payloads, strict=True)):
            try:
                values.append(structure(decode_value(payload), tp))
            except (ValueError, EncodingError) as e:
                raise TdlError(
                    TdlErrorKind.DeserializationError,
                    f"{where}: failed to deserialize parameter `{name}` (payload {i}) as {type_name(tp)}: {e}",
                ) from None
        return values

    def encode_outputs(self, result: Any) -> bytes:
        """Encode a return value as spider does; errors are ``SerializationError``."""
        if result is None:
            return EMPTY_FRAME
        values = result if type(result) is tuple else (result,)
        if not values:
            return EMPTY_FRAME
        payloads = []
        for i, value in enumerate(values):
            try:
                payloads.append(encode_value(unstructure(value)))
            except Exception as e:
                what = f"output {i}" if type(result) is tuple else "the output"
                raise TdlError(
                    TdlErrorKind.SerializationError,
                    f"task {self.name!r}: cannot serialize {what} ({type(value).__name__}): {e}",
                ) from None
        try:
            return frame_payloads(payloads)
        except WireFormatError as e:
            raise TdlError(TdlErrorKind.SerializationError, f"task {self.name!r}: {e}") from None

    def execute_raw(self, raw_ctx: bytes, raw_inputs: bytes) -> bytes:
        """Decode the context, then the inputs, call the function and encode its outputs.

        :raises TdlError: a decoding or encoding failure, or one the task raised.
        :raises Exception: whatever else the task raised, unchanged.
        """
        try:
            ctx = TaskContext.decode(raw_ctx)
        except EncodingError as e:
            raise TdlError(TdlErrorKind.DeserializationError, f"failed to deserialize `TaskContext`: {e}") from None
        inputs = self.decode_inputs(raw_inputs)
        return self.encode_outputs(self.function(ctx, *inputs))


def task(function: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Make a function a :class:`Task`: ``@task`` or ``@task(name="other")``."""
    if function is None:
        return lambda fn: Task(fn, name)
    return Task(function, name)


# -- packages ------------------------------------------------------------------------------


class Package:
    """A Python task package: its name, tasks and optional init function.

    The package module exposes it as ``package``; the declared ``name`` must equal the name
    the package is requested by.

    :param name: The package name (validated like every package name).
    :param tasks: Tasks (or plain functions, made tasks) to register now; more can be added
        with :meth:`task` or :meth:`add`.
    :param init: Called once with no arguments when an executor loads the package; raising
        makes the load fail with ``PackageInitError`` (a ``TdlError`` raised is kept as is).
    :raises ValueError: a bad package name, or two tasks with the same name.
    """

    def __init__(
        self,
        name: str,
        tasks: Iterable[Task | Callable[..., Any]] = (),
        init: Callable[[], object] | None = None,
    ) -> None:
        self.name = validate_package_name(name)
        if init is not None and not callable(init):
            raise TypeError(f"package {name!r}: init must be callable, got {init!r}")
        self.init = init
        self._tasks: dict[str, Task] = {}
        for item in tasks:
            self.add(item)

    def __repr__(self) -> str:
        return f"<Package {self.name}: {', '.join(self._tasks) or 'no tasks'}>"

    @property
    def tasks(self) -> Mapping[str, Task]:
        """The registered tasks by name (read-only)."""
        return types.MappingProxyType(self._tasks)

    def add(self, item: Task | Callable[..., Any]) -> Task:
        """Register a task (a plain function is made one); return it."""
        new = item if isinstance(item, Task) else Task(item)
        if new.name in self._tasks:
            raise ValueError(f"package {self.name!r} already has a task named {new.name!r}")
        self._tasks[new.name] = new
        return new

    def task(self, function: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
        """Decorator registering a task: ``@package.task`` or ``@package.task(name="x")``."""
        if function is None:
            return lambda fn: self.add(Task(fn, name))
        return self.add(Task(function, name))

    def validate(self) -> None:
        """Resolve every task's annotations now.

        :raises TypeError: naming the task whose annotations cannot be resolved.
        """
        for item in self._tasks.values():
            item.resolve()

    def initialize(self) -> None:
        """Run the init function, if any."""
        if self.init is not None:
            self.init()

    def execute_raw(self, task: str, raw_ctx: bytes, raw_inputs: bytes) -> bytes:
        """Run task ``task`` on wire-format inputs; return wire-format outputs.

        :raises TdlError: ``TaskNotFound``, a decoding or encoding failure, or one the task
            raised.
        :raises Exception: whatever else the task raised, unchanged.
        """
        found = self._tasks.get(task)
        if found is None:
            raise TdlError(TdlErrorKind.TaskNotFound, task)
        return found.execute_raw(raw_ctx, raw_inputs)
