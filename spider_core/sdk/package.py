"""A Python task package: a name, its tasks and an optional init function."""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from spider_core.sdk.task import Task
from spider_core.tdl.errors import TdlError, TdlErrorKind
from spider_core.tdl.names import validate_package_name

__all__ = ["Package"]


class Package:
    """A Python task package: its name, tasks and optional init function.

    The package module exposes it as ``package``; the declared ``name`` must equal the name
    the package is requested by::

        from attrs import frozen

        from spider_core.sdk import Package, TaskContext

        package = Package("complex_number")

        @frozen
        class Complex:
            re: float
            im: float

        @package.task
        def add(ctx: TaskContext, a: Complex, b: Complex) -> Complex:
            return Complex(a.re + b.re, a.im + b.im)

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
