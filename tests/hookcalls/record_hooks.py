"""Which spider_core hooks ran during the test session, for ``test_every_hook_has_a_test``.

Every plugin manager of the ``spider_core`` project registers its plugins through
``pluggy.PluginManager.register``; :func:`record_hook_calls` wraps it so that each hook
implementation registered there notes its hook's name in a file the first time it runs in this
process. The pool calls most hooks through pluggy, and ``spider_pool_started`` implementation
by implementation: wrapping the implementations sees both.

The test session records in its own process (tests/conftest.py) and, through this directory's
``sitecustomize`` (on ``PYTHONPATH``), in every Python child that inherits its environment:
the ``spider`` commands the tests run, executors started by ``tests/helpers.ExecutorProcess``
or with ``PoolConfig.inherited_env``, Dask workers. This module imports nothing at start: the
children's imports stay theirs.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing would cost every child of the session
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: The file hook names are appended to, one a line (set by the test session for its children).
ENV = "TEST_SPIDER_HOOK_CALLS"
#: The pluggy project name of spider_core's plugin managers (``spider_core.plugin.spec``).
PROJECT = "spider_core"


class Recorded:
    """A hook implementation that notes its hook's name when it is called.

    ``__code__`` is the implementation's own: the pool names a failing plugin by finding its
    implementation's code in the traceback.
    """

    def __init__(self, function: Callable[..., Any], hook: str, note: Callable[[str], None]) -> None:
        self.function = function
        self.hook = hook
        self.note = note

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.note(self.hook)
        return self.function(*args, **kwargs)

    @property
    def __code__(self) -> Any:
        return self.function.__code__


def appender(path: str) -> Callable[[str], None]:
    """A note that appends each hook name to ``path`` once per process."""
    seen: set[str] = set()

    def note(hook: str) -> None:
        if hook not in seen:
            seen.add(hook)
            with open(path, "a") as out:  # one short write: whole lines from concurrent processes
                out.write(hook + "\n")

    return note


def record_hook_calls(manager_class: Any, note: Callable[[str], None]) -> Callable[[], None]:
    """Make the spider_core managers of ``manager_class`` (``pluggy.PluginManager``) record
    the hooks their implementations run; return what undoes it."""
    register = manager_class.register

    def recording_register(self: Any, plugin: Any, name: str | None = None) -> str | None:
        plugin_name = register(self, plugin, name)
        if plugin_name is not None and self.project_name == PROJECT:
            for caller in self.get_hookcallers(plugin) or ():
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin and not isinstance(impl.function, Recorded):
                        impl.function = Recorded(impl.function, caller.name, note)
        return plugin_name

    manager_class.register = recording_register

    def undo() -> None:
        manager_class.register = register

    return undo


class _PatchPluggyOnImport:
    """A ``sys.meta_path`` finder that lets ``pluggy`` import as usual, then records its
    managers' hook calls: a child that never imports pluggy imports nothing more."""

    def __init__(self, path: str) -> None:
        self.path = path

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "pluggy":
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_record(module: Any) -> None:
            exec_module(module)
            record_hook_calls(module.PluginManager, appender(self.path))

        spec.loader.exec_module = exec_and_record  # type: ignore[method-assign]
        return spec


def record_in_child() -> None:
    """In a child of the test session (``sitecustomize``): record into the session's file."""
    path = os.environ.get(ENV)
    if path:
        sys.meta_path.insert(0, _PatchPluggyOnImport(path))
