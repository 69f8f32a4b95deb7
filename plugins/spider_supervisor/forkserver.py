"""``PoolConfig.start_method = "forkserver"``: one fork server per pool forks its executors.

The server is the launcher's command (``python -m spider_core.executor`` by default) started
once, with the executor's environment plus ``SPIDER_FORK_SERVER`` naming its end of a control
socket: it sets up what an executor needs, then forks an executor per request
(:mod:`spider_core.executor.forkserver` on its side says what travels on the socket). The
pool hands each executor its pipes over the socket and gets back its pid and a pidfd, then its
exit status once the server reaped it. A server that died is started again at the next spawn;
its executors died with it (their status is then unknown: None).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import weakref
from typing import TYPE_CHECKING

from spider_core.plugin import CORE_PROTOCOL, ENV_FORK_SERVER, PluginError

if TYPE_CHECKING:
    from spider_core.plugin import LaunchSpec, PoolConfig

#: The largest message on the control socket.
_MESSAGE_SIZE = 64


#: The running servers of this process, so that a forked child can let go of them.
_servers: weakref.WeakSet[_Server] = weakref.WeakSet()


def _after_fork() -> None:
    """In a forked child: close the child's copies of the servers' control sockets (a server
    must see end of file when the parent's pool closes it), and never reap them here."""
    for server in list(_servers):
        server.gone = True
        server.sock.close()
        server.proc.returncode = 0  # the parent's child: never waited for here


os.register_at_fork(after_in_child=_after_fork)


class _Server:
    """One running fork server, its control socket, and the exits it reported."""

    def __init__(self, spec: LaunchSpec, timeout: float) -> None:
        self.command = spec.argv[0]
        #: What it runs: a fork can only be of this command (the environment is the one it was
        #: started with, too).
        self.started_as = (spec.argv, spec.cwd)
        self.exits: dict[int, int] = {}  # pid -> wait status, until the handle asks
        self.gone = False  # the control socket broke: no more reports
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        err_r, err_w = os.pipe()
        env = dict(spec.env, **{ENV_FORK_SERVER: str(theirs.fileno())})
        try:
            self.proc = subprocess.Popen(
                list(spec.argv),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err_w,
                env=env,
                cwd=spec.cwd,
                pass_fds=(theirs.fileno(),),
                start_new_session=True,
            )
        except OSError:
            ours.close()
            os.close(err_r)
            raise
        finally:
            theirs.close()
            os.close(err_w)
        self.sock = ours
        ours.settimeout(timeout)
        try:
            ready = self._reply()[0] == b"ready"
        except TimeoutError:
            ready = False
        if not ready:
            self.proc.kill()
            status = self.proc.wait()
            ended = f"exit status {status}" if status >= 0 else f"signal {-status}"
            line = _last_line(err_r)
            ours.close()
            raise PluginError(
                f"the fork server {self.command!r} did not start ({ended})" + (f": {line}" if line else "")
            )
        os.close(err_r)  # it is quiet from now on; its executors log to their own pipes
        _servers.add(self)

    @property
    def alive(self) -> bool:
        return not self.gone and self.proc.poll() is None

    def _receive(self) -> tuple[bytes, list[int]]:
        """The next message (an exit report is also kept in ``exits``); empty once the socket
        is closed. Raises ``TimeoutError`` if none comes in time."""
        try:
            message, fds, _, _ = socket.recv_fds(self.sock, _MESSAGE_SIZE, 1)
        except TimeoutError:  # the caller decides
            raise
        except OSError:  # the socket broke: the server is gone
            message, fds = b"", []
        if not message:
            self.gone = True
        elif message.startswith(b"exited "):
            _, pid, status = message.split()
            self.exits[int(pid)] = int(status)
        return message, fds

    def _reply(self) -> tuple[bytes, list[int]]:
        """The next message that is not an exit report."""
        while True:
            message, fds = self._receive()
            if not message.startswith(b"exited "):
                return message, fds

    def spawn(self) -> ForkedHandle:
        """Ask for one executor; its handle."""
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            try:
                socket.send_fds(self.sock, [b"spawn"], [in_r, out_w, err_w])
            finally:
                for fd in (in_r, out_w, err_w):
                    os.close(fd)
            message, fds = self._reply()
            word, _, pid = message.partition(b" ")
            if word != b"spawned" or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise OSError(f"the fork server {self.command!r} did not fork an executor")
        except OSError:
            for fd in (in_w, out_r, err_r):
                os.close(fd)
            self.gone = True
            raise
        return ForkedHandle(self, int(pid), in_w, out_r, err_r, fds[0])

    def status(self, pid: int) -> int | None:
        """The wait status ``pid`` ended with, once the server reports it; None if the server
        is gone without reporting it."""
        while pid not in self.exits and not self.gone:
            try:
                self._receive()
            except TimeoutError:
                self.gone = True
        raw = self.exits.pop(pid, None)
        return None if raw is None else os.waitstatus_to_exitcode(raw)

    def close(self) -> None:
        """Close the control socket (the server exits, and its executors with it); reap it."""
        self.gone = True
        self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _last_line(fd: int) -> str:
    """The last non-empty line of what is left to read on ``fd`` (then closed)."""
    with os.fdopen(fd, "rb") as stream:
        lines = [line for line in stream.read().decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


class ForkedHandle:
    """An executor the fork server forked: the server is its parent and reports its exit."""

    def __init__(self, server: _Server, pid: int, stdin: int, stdout: int, stderr: int, pidfd: int) -> None:
        self.server = server
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.pidfd: int | None = pidfd
        self._fds = (stdin, stdout, stderr, pidfd)

    def wait(self) -> int | None:
        return self.server.status(self.pid)  # the server SIGKILLs its group before the reap

    def close(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)


class ForkServerSpawner:
    """The pool's fork server, started at the first spawn and again after it died."""

    def __init__(self, config: PoolConfig) -> None:
        if config.protocol != CORE_PROTOCOL:
            raise PluginError(
                f"PoolConfig.start_method 'forkserver' needs spider-core's own executor, but protocol "
                f"{config.protocol!r} runs another one: use start_method 'exec'"
            )
        self.timeout = config.spawn_timeout
        self.server: _Server | None = None

    def spawn(self, executor_id: int, spec: LaunchSpec) -> ForkedHandle:
        try:
            return self._running(spec).spawn()
        except OSError:  # it died just now: once more, with a new one
            return self._running(spec).spawn()

    def _running(self, spec: LaunchSpec) -> _Server:
        server = self.server
        if server is None or not server.alive:
            if server is not None:
                server.close()
            server = self.server = _Server(spec, self.timeout)
        elif (spec.argv, spec.cwd) != server.started_as:
            raise PluginError(
                f"the fork server runs {' '.join(server.started_as[0])!r}, but the launcher asks for "
                f"{' '.join(spec.argv)!r}: a launcher whose command changes needs start_method 'exec'"
            )
        return server

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
