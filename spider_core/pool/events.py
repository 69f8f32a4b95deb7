"""Lifecycle events: the pool's calls of the broadcast hooks (pool started and closed, executor
started and exited, task finished), and the counts behind ``pool.stats()`` they keep on the
way (:class:`~spider_core.pool.stats.Tally`). A failing plugin is logged as a warning of the ``spider_core.plugins`` logger
(with the traceback attached, for handlers that show it), never fatal: a metrics plugin must
not break a call."""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spider_core.models import ExecuteRequest, Outcome
from spider_core.pool.stats import Tally

if TYPE_CHECKING:
    from spider_core.plugin import ExitReason, PoolView
    from spider_core.plugin.manager import SpiderPluginManager

logger = logging.getLogger("spider_core.plugins")

#: The arguments of ``spider_task_finished``, in the order :meth:`Events.task_finished` has them.
_TASK_FINISHED_ARGS = ("request", "outcome", "executor_id", "queue_wait", "execution_time", "pool")
#: A ``spider_task_finished`` implementation called directly: the function, and what picks
#: its arguments (the ones it names) from a tuple in ``_TASK_FINISHED_ARGS`` order.
_Listener = tuple[Callable[..., object], Callable[[tuple[Any, ...]], tuple[Any, ...]]]


def _listeners(caller: Any, traced: bool) -> list[_Listener] | None:
    """The implementations of ``caller`` (a ``spider_task_finished`` hook caller) to call
    directly, in pluggy's order (last registered first): a pluggy call costs several
    microseconds, as much as the observers' own work on a no-op task. None if pluggy itself
    must call them: its hook calls are traced (``SPIDER_TRACE_HOOKS``), or one wraps the others."""
    impls = caller.get_hookimpls()
    if traced or any(impl.hookwrapper or impl.wrapper for impl in impls):
        return None
    return [(impl.function, _picker([_TASK_FINISHED_ARGS.index(name) for name in impl.argnames])) for impl in reversed(impls)]


def _picker(where: list[int]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """What picks the items at ``where`` from a tuple, as a tuple (``itemgetter`` gives a
    single item bare)."""
    if len(where) > 1:
        return operator.itemgetter(*where)
    return lambda values: tuple(values[i] for i in where)


class Events:
    """Calls the lifecycle hooks of one pool."""

    def __init__(self, pm: SpiderPluginManager, pool: PoolView) -> None:
        self.pm = pm
        #: The pool whose events these are (passed to the hooks as ``pool``).
        self.pool = pool
        #: The counts of ``pool.stats()``.
        self.tally = Tally()
        #: The ``spider_task_finished`` implementations this pool calls: all of them, less the
        #: plugins that said at ``spider_pool_started`` that they do not observe this pool.
        self._task_finished = pm.hook.spider_task_finished
        #: Whether any plugin listens to ``spider_task_finished`` (checked once: the hot path
        #: then skips building the call).
        self.wants_task_finished = bool(self._task_finished.get_hookimpls())
        #: The same implementations to call directly, as registered when the pool started
        #: (:func:`_listeners`; None: through pluggy).
        self._listeners: list[_Listener] | None = None
        self._failed: set[str] = set()  # hooks whose failure was logged in full

    def pool_started(self) -> None:
        """Call each ``spider_pool_started`` implementation; leave the plugins that answer
        False out of this pool's ``spider_task_finished`` calls."""
        idle = []
        for impl in self.pm.hook.spider_pool_started.get_hookimpls():
            try:
                if impl.function(**{name: self.pool for name in impl.argnames}) is False:
                    idle.append(impl.plugin)
            except Exception as e:
                self._failed_hook("spider_pool_started", e)
        if idle:
            self._task_finished = self.pm.subset_hook_caller("spider_task_finished", idle)
            self.wants_task_finished = bool(self._task_finished.get_hookimpls())
        self._listeners = _listeners(self._task_finished, self.pm.settings.trace)

    def pool_closed(self) -> None:
        try:
            self.pm.hook.spider_pool_closed(pool=self.pool)
        except Exception as e:
            self._failed_hook("spider_pool_closed", e)

    def executor_started(self, executor_id: int, pid: int, log_path: Path | None) -> None:
        try:
            self.pm.hook.spider_executor_started(executor_id=executor_id, pid=pid, log_path=log_path, pool=self.pool)
        except Exception as e:
            self._failed_hook("spider_executor_started", e)

    def executor_exited(
        self, executor_id: int, pid: int, reason: ExitReason, status: int | None, signum: int | None
    ) -> None:
        self.tally.exited(reason)
        try:
            self.pm.hook.spider_executor_exited(
                executor_id=executor_id, pid=pid, reason=reason, exit_status=status, signal=signum, pool=self.pool
            )
        except Exception as e:
            self._failed_hook("spider_executor_exited", e)

    def task_finished(self, request: ExecuteRequest, outcome: Outcome, executor_id: int, wait: float, run: float) -> None:
        """Count a call's outcome; tell the plugins that listen."""
        self.tally.finished(outcome)
        if not self.wants_task_finished:
            return
        try:
            listeners = self._listeners
            if listeners is None:
                self._task_finished(
                    request=request, outcome=outcome, executor_id=executor_id, queue_wait=wait, execution_time=run,
                    pool=self.pool,
                )
            else:
                values = (request, outcome, executor_id, wait, run, self.pool)
                for function, pick in listeners:
                    function(*pick(values))
        except Exception as e:
            self._failed_hook("spider_task_finished", e)

    def _failed_hook(self, hook: str, error: Exception) -> None:
        """Log a failing lifecycle hook: a warning naming the plugin, with the traceback attached,
        the first time, then at debug level (a metrics plugin that fails on every task must not
        flood the log)."""
        reason = " ".join(f"{type(error).__name__}: {error}".split("\n"))
        plugin = self._culprit(hook, error)
        if hook in self._failed:
            logger.debug("a %s hook failed again%s: %s", hook, f" (plugin {plugin!r})" if plugin else "", reason)
            return
        self._failed.add(hook)
        if plugin is None:
            logger.warning("a %s hook failed (logged once per pool): %s", hook, reason, exc_info=error)
        elif plugin in self._installed():
            logger.warning(
                "a %s hook failed (plugin %r; logged once per pool; SPIDER_DISABLE_PLUGINS=%s disables it): %s",
                hook, plugin, plugin, reason, exc_info=error,
            )
        else:  # registered by the program itself
            logger.warning("a %s hook failed (plugin %r; logged once per pool): %s", hook, plugin, reason, exc_info=error)

    def _installed(self) -> set[str]:
        """The names of the default and entry-point plugins (``SPIDER_DISABLE_PLUGINS`` can
        block those, not one the program registered itself)."""
        try:
            return {info.name for info in self.pm.plugin_infos()}
        except Exception:  # a manager of another kind: no names to offer
            return set()

    def _culprit(self, hook: str, error: Exception) -> str | None:
        """The name of the plugin whose implementation of ``hook`` raised ``error``, if its
        function is in the traceback."""
        plugins: dict[Any, str] = {}
        for impl in getattr(self.pm.hook, hook).get_hookimpls():
            code = getattr(impl.function, "__code__", None)
            if code is not None:
                plugins[code] = impl.plugin_name
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code in plugins:
                return plugins[tb.tb_frame.f_code]
            tb = tb.tb_next
        return None
