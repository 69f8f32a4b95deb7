"""A task: a typed function run on spider's wire format (spider-tdl's ``TaskHandlerImpl``).

:class:`Task` decodes a call's inputs into the function's annotated parameter types, calls it
with the :class:`~spider_core.tdl.TaskContext`, and encodes its return value as spider's
``#[task]`` macro does: a ``tuple`` gives one payload per element, ``None`` or ``()`` gives
none, anything else gives one payload. User exceptions propagate; the ``spider_pytasks`` plugin turns them
into spider's errors.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any

from spider_core.sdk.convert import structure, unstructure
from spider_core.sdk.typenames import type_name
from spider_core.tdl.context import TaskContext
from spider_core.tdl.errors import EncodingError, TdlError, TdlErrorKind
from spider_core.tdl.names import is_utf8
from spider_core.tdl.wire import (
    EMPTY_FRAME,
    WireFormatError,
    decode_value,
    encode_value_parts,
    frame_payload_parts,
    payload_views,
)

__all__ = ["Task", "task"]

_MISSING = inspect.Parameter.empty


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
        # mypy reads type(function).__name__ as MethodType's __name__ property, not type.__name__
        self.function_name: str = getattr(function, "__name__", None) or type(function).__name__  # type: ignore[assignment]
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
            payloads = payload_views(raw_inputs)
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
                payloads.append(encode_value_parts(unstructure(value)))
            except Exception as e:
                what = f"output {i}" if type(result) is tuple else "the output"
                raise TdlError(
                    TdlErrorKind.SerializationError,
                    f"task {self.name!r}: cannot serialize {what} ({type(value).__name__}): {e}",
                ) from None
        try:
            return frame_payload_parts(payloads)
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
