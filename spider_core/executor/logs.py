"""The executor's log: JSON lines on stderr, one per event, at the level the pool asked for.

Events (:func:`log`) are written straight to fd 2; ``logging`` (for plugins, packages and the
executor's error paths) is imported and pointed at the same stream only once something may
use it (:func:`setup_logging`), since a native package never does.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from spider_core.protocol import ENV_LOG_LEVEL

if TYPE_CHECKING:
    import logging

#: ``logging``'s level numbers and names, without importing it (see :func:`setup_logging`).
_LEVELS = {"CRITICAL": 50, "FATAL": 50, "ERROR": 40, "WARN": 30, "WARNING": 30, "INFO": 20, "DEBUG": 10, "NOTSET": 0}
_LEVEL_NAMES = {50: "critical", 40: "error", 30: "warning", 20: "info", 10: "debug", 0: "notset"}
DEBUG, INFO, ERROR = 10, 20, 40


def _json_line(level: int, event: str, fields: dict[str, Any]) -> str:
    line = {"ts": round(time.time(), 6), "level": _LEVEL_NAMES.get(level, f"level {level}"), "event": event}
    line.update(fields)
    return json.dumps(line, default=str)


def log(event: str, level: int = INFO, **fields: Any) -> None:
    """One event line on stderr: written directly, since one is written per task. Best
    effort: a task may have closed fd 2."""
    if level >= _threshold:
        with contextlib.suppress(OSError):
            os.write(2, (_json_line(level, event, fields) + "\n").encode())


_threshold = INFO
#: Whether the root logger writes JSON lines to stderr yet (:func:`setup_logging`).
_logging_ready = False


def read_log_level() -> None:
    """Take the executor's level from its environment."""
    global _threshold
    name = os.environ.get(ENV_LOG_LEVEL, "INFO").upper()
    _threshold = _LEVELS.get(name, INFO)


def debugging() -> bool:
    """Whether debug events are written."""
    return _threshold <= DEBUG


def setup_logging() -> None:
    """Send ``logging`` records (of plugins, packages and the executor's error paths) to
    stderr as JSON lines, at the executor's level.

    ``logging`` costs a few milliseconds to import, and a native package never uses it, so it
    is set up only once something may log: at start if plugins other than the defaults (or
    hook tracing) are on, when a plugin or a package imported it, before a package of another
    kind than ``"native"`` loads, and on an error path.
    """
    global _logging_ready
    if _logging_ready:
        return
    import logging

    class JsonLineFormatter(logging.Formatter):
        """Plugins' and packages' ``logging`` records, in the same JSON-line shape as events."""

        def format(self, record: logging.LogRecord) -> str:
            fields = dict(getattr(record, "fields", {}))
            if record.exc_info:
                fields["traceback"] = self.formatException(record.exc_info)
            return _json_line(record.levelno, record.getMessage(), fields)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_threshold)
    _logging_ready = True


def setup_logging_if_imported() -> None:
    """:func:`setup_logging`, if a plugin or a package imported ``logging``."""
    if not _logging_ready and "logging" in sys.modules:
        setup_logging()


def logger() -> logging.Logger:
    """The executor's logger, for error paths (with ``logging`` set up)."""
    setup_logging()
    import logging

    return logging.getLogger("spider_core.executor")
