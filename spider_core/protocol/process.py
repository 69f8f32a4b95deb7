"""The executor process contract: the environment the pool sets (``ENV_*``), the exit statuses
the executor uses (``EXIT_*``), and :func:`die_with_parent`, its tie to the pool.
"""

from __future__ import annotations

import ctypes
import os
import signal

# The executor speaks the protocol on its stdin and stdout and logs JSON lines to stderr. It
# gets a clean environment: PATH, PoolConfig.inherited_env, the plugin settings
# (spider_core.plugin.PluginSettings.to_env) and the names below.

#: Root of the task packages (spider's own name for it).
ENV_PACKAGE_DIR = "SPIDER_TDL_PACKAGE_DIR"
#: The pool's pid: an executor whose parent is already another process exits at once.
ENV_PARENT_PID = "SPIDER_EXECUTOR_PARENT_PID"
#: Set for a fork server (``PoolConfig.start_method = "forkserver"``): the descriptor of its
#: control socket (``AF_UNIX``, ``SOCK_SEQPACKET``). The executor command then serves forks
#: (:mod:`spider_core.executor.forkserver` says how) instead of requests.
ENV_FORK_SERVER = "SPIDER_FORK_SERVER"
#: ``PoolConfig.max_frame_size``.
ENV_MAX_FRAME_SIZE = "SPIDER_MAX_FRAME_SIZE"
#: ``PoolConfig.executor_log_level``.
ENV_LOG_LEVEL = "SPIDER_EXECUTOR_LOG_LEVEL"
#: ``PoolConfig.executor_spin_us``.
ENV_SPIN_US = "SPIDER_EXECUTOR_SPIN_US"
#: ``PoolConfig.installed_packages``: ``"0"`` turns the installed-package lookup off.
ENV_INSTALLED_PACKAGES = "SPIDER_INSTALLED_PACKAGES"

#: ``Shutdown``, end of input, or the parent gone.
EXIT_OK = 0
#: A request the executor could not decode, or a task broke the protocol channel.
EXIT_PROTOCOL_ERROR = 3
#: Setup failed: no framing, or a malformed setting.
EXIT_SETUP_ERROR = 4


def executor_environment(
    *, package_dir: str | None, installed_packages: bool, max_frame_size: int, spin_us: int, log_level: str
) -> dict[str, str]:
    """The spider-core settings the pool passes to each executor (see the ``ENV_*`` names);
    without a package directory, ``SPIDER_TDL_PACKAGE_DIR`` is left out."""
    env = {
        ENV_INSTALLED_PACKAGES: "1" if installed_packages else "0",
        ENV_PARENT_PID: str(os.getpid()),
        ENV_MAX_FRAME_SIZE: str(max_frame_size),
        ENV_SPIN_US: str(spin_us),
        ENV_LOG_LEVEL: log_level,
    }
    if package_dir is not None:
        env[ENV_PACKAGE_DIR] = package_dir
    return env


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Get SIGKILL when the parent dies: for the executor and for any helper process a plugin
    starts (an inspector, a listing child). Call it first thing in the child."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: EOF on the protocol channel still ends us
        pass
    expected = os.environ.get(ENV_PARENT_PID)
    if expected and os.getppid() != int(expected):
        os._exit(EXIT_OK)  # the parent died before prctl took effect
