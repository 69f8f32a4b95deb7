"""The Python task SDK, for writing a Python task package: a :class:`Package` of typed task
functions on spider's wire format. A task's first parameter receives the
:class:`~spider_core.tdl.TaskContext`; each other parameter takes one wire payload, decoded
into its annotated type with the SDK's converter (:mod:`spider_core.sdk.convert` lists the
types and spider's rules), and its return value is encoded as spider's ``#[task]`` macro does
(:mod:`spider_core.sdk.task`); a call's ``soft_timeout`` raises :class:`SoftTimeout` inside it.
The SDK only encodes and decodes: the ``spider_pytasks`` plugin loads packages and turns a
task's exceptions into spider's errors.
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
