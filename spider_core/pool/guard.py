"""The guard: a tiny process per pool that outlives it, so that what tasks left running dies
with the pool even when the pool cannot clean up (it was SIGKILLed, say).

Executors die with the pool by themselves (``PR_SET_PDEATHSIG``), but a process a task
forked does not: a fork does not inherit the parent-death signal. Each executor leads its own
process group, and the pool kills that group when it reaps the executor; if the pool dies
first, nobody would. The guard knows every live executor's group (the pool writes ``+pgid``
and ``-pgid`` lines to its stdin); when its stdin reaches end of file, because the pool closed
it or died, it SIGKILLs every group it still knows and exits.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys

logger = logging.getLogger("spider_core.pool")

# Runs with -S -I: nothing but the interpreter's own modules, started in a few milliseconds.
# It ignores the signals a terminal or a supervisor sends a whole session or group.
_SCRIPT = """\
import os, signal
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
groups, rest = set(), b""
while True:
    try:
        data = os.read(0, 65536)
    except InterruptedError:
        continue
    if not data:
        break
    *lines, rest = (rest + data).split(b"\\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class Guard:
    """The pool's guard process; :meth:`watch` and :meth:`forget` executors' process groups."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-S", "-I", "-c", _SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            start_new_session=True,  # out of reach of signals sent to the pool's group
        )
        self._fd = self.proc.stdin.fileno()  # type: ignore[union-attr]  # a pipe
        self._broken = False

    def watch(self, pgid: int) -> None:
        """Kill group ``pgid`` if the pool dies before :meth:`forget`."""
        self._write(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        """Group ``pgid`` is reaped: its id may be reused."""
        self._write(b"-%d\n" % pgid)

    def _write(self, line: bytes) -> None:
        if self._broken:
            return
        try:
            os.write(self._fd, line)  # a few bytes to a pipe the guard keeps draining
        except OSError as e:
            self._broken = True
            logger.warning("the pool's guard process is gone (%s): tasks' leftovers may outlive a killed pool", e)

    def forsake(self) -> None:
        """In a forked child: close the child's copy of the guard's pipe (the guard must see
        end of file when the parent's pool closes it), and write nothing more."""
        self._broken = True
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.returncode = 0  # the parent's child: never waited for here

    def close(self) -> None:
        """Stop the guard (every group it knows is killed: call after the executors are
        reaped) and reap it."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # type: ignore[union-attr]
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
