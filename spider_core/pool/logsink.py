"""The executor's log: its stderr, split into lines, to a per-spawn file or to ``logging``."""

from __future__ import annotations

import logging
from pathlib import Path

logger = logging.getLogger("spider_core.pool")
#: Executor log lines when ``PoolConfig.log_dir`` is None; each record has ``executor_id``.
executor_logger = logging.getLogger("spider_core.executor.log")


class LogSink:
    """Splits an executor's stderr into lines, drops over-long ones, writes the rest to a
    per-spawn file or to ``logging``."""

    def __init__(self, executor_id: int, max_line: int, path: Path | None) -> None:
        self.executor_id = executor_id
        self.max_line = max_line
        self.path = path
        self.last_line = b""
        self._file = None
        self._partial = b""
        self._dropping = False
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()
            except OSError as e:
                logger.warning(
                    "cannot write executor log %s (%s); forwarding executor %d's log to logging",
                    path,
                    e.strerror,
                    executor_id,
                )
                self.path = None

    def feed(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        kept = []
        for line in lines:
            if self._dropping:  # the rest of a line already reported as dropped
                self._dropping = False
            elif len(line) > self.max_line:
                kept.append(self._dropped(len(line)))
            else:
                kept.append(line)
        if len(self._partial) > self.max_line:
            if not self._dropping:
                kept.append(self._dropped(len(self._partial), partial=True))
            self._dropping = True
            self._partial = b""
        if kept:
            self._emit(kept)

    def _dropped(self, size: int, partial: bool = False) -> bytes:
        """Warn about a dropped line; return the notice that takes its place in the log."""
        size_text = f"at least {size}" if partial else str(size)
        message = (
            f"spider-core: dropped a log line of {size_text} bytes from executor {self.executor_id} "
            f"(max_log_line_bytes is {self.max_line})"
        )
        logger.warning(message)
        return message.encode()

    def _emit(self, lines: list[bytes]) -> None:
        self.last_line = lines[-1]
        if self._file is not None:
            lines.append(b"")
            self._file.write(b"\n".join(lines))  # unbuffered: one write per chunk read
        else:
            for line in lines:
                executor_logger.info(line.decode("utf-8", "replace"), extra={"executor_id": self.executor_id})

    def close(self) -> None:
        if self._partial and not self._dropping:
            self._emit([self._partial])
        self._partial = b""
        if self._file is not None:
            self._file.close()
            self._file = None

    def forsake(self) -> None:
        """In a forked child: close the child's copy of the log file, writing nothing."""
        self._partial = b""
        if self._file is not None:
            self._file.close()
            self._file = None
