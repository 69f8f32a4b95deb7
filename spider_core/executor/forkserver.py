"""The fork server: the executor command, run with ``SPIDER_FORK_SERVER`` set, serving forks.

A pool with ``PoolConfig.start_method = "forkserver"`` starts one per pool. It imports and sets
up everything an executor needs (the plugin list, the framing) but loads no task package,
stays single-threaded, and forks each new executor when asked, in a few milliseconds. Each
executor is its child (the server's death kills it, by ``PR_SET_PDEATHSIG``) and leads its
own session. The server dies with the pool the same way.

The control socket (``AF_UNIX``, ``SOCK_SEQPACKET``: one message per datagram) carries:

- server → pool, once set up: ``ready``;
- pool → server: ``spawn``, with the executor's stdin, stdout and stderr (``SCM_RIGHTS``);
- server → pool: ``spawned <pid>``, with a pidfd of the new executor;
- server → pool, when an executor ends: ``exited <pid> <wait status>``. The server SIGKILLs
  what is left in the executor's process group before it reaps it (the group id is still
  reserved then), as the pool does for an executor it started itself.

End of file on the socket (the pool closed it, or died) ends the server, and its executors
with it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket

from spider_core.protocol import ENV_PARENT_PID

#: The largest message on the control socket.
_MESSAGE_SIZE = 64


def serve_forks(control_fd: int) -> None:
    """Fork an executor per ``spawn`` message on ``control_fd``; report each one's exit.

    Returns only in a forked child, with the executor's pipes as its fds 0, 1 and 2 and
    nothing else of the server open; in the server it exits when the pool goes away.
    """
    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # wakes the poll below
    control.send(b"ready")
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                os.read(wake_r, 4096)
                _reap(control)
                continue
            message, fds, _, _ = socket.recv_fds(control, _MESSAGE_SIZE, 3)
            if not message:
                os._exit(0)  # the pool is gone: the executors die with this process
            if message != b"spawn" or len(fds) != 3:
                for received in fds:
                    os.close(received)
                os._exit(1)  # not our pool: nothing here can be trusted
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for own in (wake_r, wake_w):
                    os.close(own)
                control.close()
                _become_executor(fds)
                return
            for received in fds:
                os.close(received)
            pidfd = os.pidfd_open(pid)
            try:
                socket.send_fds(control, [b"spawned %d" % pid], [pidfd])
            finally:
                os.close(pidfd)


def _become_executor(fds: list[int]) -> None:
    """In the forked child: its own session, the pipes as fds 0-2, the server as its parent."""
    os.setsid()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    os.environ[ENV_PARENT_PID] = str(os.getppid())  # die_with_parent checks it


def _reap(control: socket.socket) -> None:
    """Report every ended child, after SIGKILLing what its tasks left in its group."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(info.si_pid, signal.SIGKILL)
        pid, status = os.waitpid(info.si_pid, 0)
        with contextlib.suppress(OSError):  # the pool may be gone: then so is this server
            control.send(b"exited %d %d" % (pid, status))
