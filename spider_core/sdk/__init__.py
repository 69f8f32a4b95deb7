"""The Python task SDK: typed task functions on spider's wire format.

A Python task package is a module that exposes a :class:`Package`::

    from attrs import frozen

    from spider_core.sdk import Package, TaskContext, TdlError

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
the SDK's cattrs converter (:mod:`spider_core.sdk.convert`). The return value is unstructured
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

A call's ``soft_timeout`` raises :class:`SoftTimeout` inside the running task; catch it to
clean up and return early (an escaped one makes the call an ``InTaskFailure`` saying so).

This package only encodes and decodes: user exceptions propagate out of
:meth:`Task.execute_raw`; the ``spider_pytasks`` plugin turns them into spider's errors.

Modules: :mod:`~spider_core.sdk.package` (:class:`Package`), :mod:`~spider_core.sdk.task`
(:class:`Task`, :func:`task`), :mod:`~spider_core.sdk.convert` (the converter,
:func:`structure`, :func:`unstructure`), :mod:`~spider_core.sdk.conform` (spider's decoding
rules), :mod:`~spider_core.sdk.typenames` (:func:`type_name`).
"""

from spider_core.sdk.convert import structure, unstructure
from spider_core.sdk.package import Package
from spider_core.sdk.task import Task, task
from spider_core.sdk.typenames import type_name
from spider_core.tdl import SoftTimeout, TaskContext, TdlError, TdlErrorKind

__all__ = [
    "Package",
    "SoftTimeout",
    "Task",
    "TaskContext",
    "TdlError",
    "TdlErrorKind",
    "structure",
    "task",
    "type_name",
    "unstructure",
]
