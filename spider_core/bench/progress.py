"""The benchmark's progress line: a ``\\r`` counter on stderr, shown only on a terminal."""

from __future__ import annotations

import sys
import time

_PROGRESS_INTERVAL = 0.2  # seconds between progress line updates


class Progress:
    """A one-line ``\\r`` counter on stderr, redrawn at most every 0.2 s."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._last = 0.0

    def show(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self._last < _PROGRESS_INTERVAL:
            return
        self._last = now
        sys.stderr.write(f"\rspider bench: {phase} {done}/{total}\033[K")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
