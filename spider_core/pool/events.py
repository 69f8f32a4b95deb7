"""Lifecycle events: the pool's calls of the broadcast hooks (pool started and closed, executor
started and exited, task finished), and the counts behind ``pool.stats()`` they keep on the
way (:class:`~spider_core.pool.stats.Tally`). A failing plugin is logged as a warning of the ``spider_core.plugins`` logger
(with the traceback attached, for handlers that show it), never fatal: a metrics plugin must
not break a call."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spider_core.models import ExecuteRequest, Outcome
from spider_core.pool.stats import Tally

if TYPE_CHECKING:
    from spider_core.plugin import ExitReason, PoolView
    from spider_core.plugin.manager import SpiderPluginManager

logger = logging.getLogger("spider_core.plugins")


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
            self._task_finished(
                request=request, outcome=outcome, executor_id=executor_id, queue_wait=wait, execution_time=run,
                pool=self.pool,
            )
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
