"""The types hooks take and return, and the error a plugin raises (re-exported by
:mod:`spider_core.plugin`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from attrs import field, frozen
from attrs.validators import in_, instance_of

if TYPE_CHECKING:
    from spider_core.models import PoolConfig, PoolStats

class PluginError(Exception):
    """A plugin could not be loaded, no plugin provides a required hook, or a plugin refuses a
    configuration it cannot serve."""


#: Why the pool needs an executor, as :class:`RespawnState` tells the respawn policy:
#: ``"start"`` (the pool starts), ``"timeout"``, ``"crash"``, ``"cancelled"`` (the executor
#: in use was killed), ``"recycle"`` (it ran ``recycle_after`` tasks), ``"retry"`` (a call
#: found no executor after failed spawns), ``"standby"`` (the idle executor of ``PoolConfig.standby``),
#: ``"memory"`` (it held more than ``max_executor_rss``).
SpawnReason = Literal["start", "timeout", "crash", "cancelled", "recycle", "retry", "standby", "memory"]
SPAWN_REASONS: tuple[str, ...] = SpawnReason.__args__  # type: ignore[attr-defined]  # not in typeshed

#: Why an executor went away, as ``spider_executor_exited`` reports it: ``"timeout"`` (killed at
#: its hard timeout), ``"crash"`` (it died or broke the protocol, also while idle or as a
#: standby), ``"cancelled"`` (killed because its caller was cancelled), ``"recycle"``
#: (replaced after ``recycle_after`` tasks), ``"memory"`` (replaced because it held more than
#: ``max_executor_rss`` after a task), ``"shutdown"`` (the pool closed).
ExitReason = Literal["timeout", "crash", "cancelled", "recycle", "memory", "shutdown"]
EXIT_REASONS: tuple[str, ...] = ExitReason.__args__  # type: ignore[attr-defined]  # not in typeshed


# -- task packages --------------------------------------------------------------------------


@frozen(kw_only=True)
class PackageSource:
    """Where a task package lives, as ``spider_resolve_package`` reports it.

    :param package: The requested package name.
    :param kind: Which loader understands it: ``"native"`` for a ``lib<name>.so``; plugins
        may add their own kinds.
    :param location: The file or directory holding the package.
    :param details: Anything else the matching loader needs.
    """

    package: str = field(validator=instance_of(str))
    kind: str = field(validator=instance_of(str))
    location: Path = field(converter=Path)
    details: Any = None


@runtime_checkable
class TaskPackage(Protocol):
    """A loaded package, as ``spider_load_package`` returns it.

    A package may also set ``interruptible = True``: its tasks can be interrupted by a Python
    exception, so a call's soft timeout raises ``SoftTimeout`` inside them (Python packages);
    without it, soft timeouts are ignored (native packages). And ``accepts_buffers = True``:
    ``execute`` may get ``raw_ctx`` and ``raw_inputs`` as a writable ``memoryview`` (of the
    shared memory the inputs came in, ``PoolConfig.shm_threshold``), valid during the call
    only; without it, they are always ``bytes`` (copied out of the shared memory first).
    """

    name: str
    kind: str

    def execute(self, task: str, raw_ctx: bytes, raw_inputs: bytes) -> bytes | memoryview:
        """Run ``task``; return wire-format outputs (``bytes``, or a ``memoryview`` of a buffer
        the package lends until the view is released) or raise an ``ExecutorError``."""
        ...


#: The entry-point group of installed task packages: ``<package name> = module`` (native: the
#: module's directory holds ``lib<name>.so``) or ``module:attribute`` (a Python package).
TASK_PACKAGE_GROUP = "spider_core.task_packages"


@frozen(kw_only=True)
class InstalledPackage:
    """Where an installed task package comes from: ``PackageSource.details`` of a package found
    by its entry point in the ``spider_core.task_packages`` group.

    :param entry_point: The entry point's value: ``module`` (a native package: the module's
        directory holds ``lib<name>.so``) or ``module:attribute`` (a Python package).
    :param distribution: The distribution that declares it (None if unknown).
    :param version: That distribution's version.
    """

    entry_point: str
    distribution: str | None = None
    version: str | None = None

    def describe(self) -> str:
        """``entry point MODULE from DIST VERSION``, for messages."""
        dist = f"{self.distribution} {self.version}" if self.distribution else "an unknown distribution"
        return f"entry point {self.entry_point} from {dist}"


#: Where ``spider packages`` found a package: in the package directory, or installed (a
#: distribution's entry point).
PackageOrigin = Literal["directory", "installed"]


@frozen(kw_only=True)
class PackageInfo:
    """One package, as ``spider packages`` shows it.

    :param source: ``"directory"`` (in the package directory) or ``"installed"`` (found by its
        entry point in an installed distribution).
    :param distribution: The installed distribution that provides it (None for a directory).
    :param version: That distribution's version (None for a directory).
    :param abi_version: The spider-tdl ABI version a native package declares.
    :param compatible: Whether its ABI version is compatible with this host (None if unknown).
    :param tasks: Task signatures, when the package kind can tell them.
    :param error: Why the package cannot be used (None if it can).
    """

    name: str
    kind: str
    location: Path
    source: PackageOrigin = "directory"
    distribution: str | None = None
    version: str | None = None
    abi_version: str | None = None
    compatible: bool | None = None
    tasks: tuple[str, ...] = ()
    error: str | None = None


# -- spawn and respawn policy ---------------------------------------------------------------


def _argv(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@frozen(kw_only=True)
class LaunchSpec:
    """How to start one executor: what ``spider_launcher`` returns."""

    argv: tuple[str, ...] = field(converter=_argv)
    env: dict[str, str]
    cwd: Path | None = None


class ExecutorHandle(Protocol):
    """A started executor process, as a :class:`Spawner` hands it to the pool.

    ``stdin``, ``stdout`` and ``stderr`` are the pool's ends of the executor's pipes (file
    descriptors: the pool writes requests to ``stdin``, reads answers from ``stdout`` and the
    log from ``stderr``). The executor leads its own process group (``pid`` is its group id), so
    that what its tasks leave running can be killed with it. The handle owns its descriptors
    until :meth:`close`.
    """

    pid: int
    stdin: int
    stdout: int
    stderr: int
    #: A pidfd of the process (the pool watches and signals it through it), or None for the
    #: pool to open one itself (``os.pidfd_open(pid)``: safe while the process is unreaped).
    pidfd: int | None

    def wait(self) -> int | None:
        """Reap the process, which has ended or was SIGKILLed, after SIGKILLing what is left
        in its process group; return its status as ``Popen.returncode`` does (negative: the
        signal that ended it), or None if nobody can tell any more (its parent died)."""
        ...

    def close(self) -> None:
        """Release the descriptors; called once, after :meth:`wait` (or, in a process forked
        from the pool's, without it: the process is not that child's to wait for)."""
        ...


class Spawner(Protocol):
    """How one pool starts its executor processes: what ``spider_spawner`` returns."""

    def spawn(self, executor_id: int, spec: LaunchSpec) -> ExecutorHandle:
        """Start the executor ``spec`` (from ``spider_launcher``) describes, with pipes for
        stdin, stdout and stderr, in its own session. Raise a ``PluginError`` (its message
        becomes the ``ExecutorCreationFailure``) or an ``OSError`` if it cannot start."""
        ...

    def close(self) -> None:
        """The pool closed (after every executor was reaped): release what the spawner holds.

        Not called in a process forked from the pool's: a spawner that holds descriptors of its
        own lets go of the child's copies itself (``os.register_at_fork``), as the fork server
        does."""
        ...


@frozen(kw_only=True)
class RespawnState:
    """What the respawn policy knows when the pool needs an executor.

    :param reason: Why: one of :data:`SpawnReason`.
    :param consecutive_failures: Spawn attempts that failed since the last success (a
        standby's failures do not count).
    :param last_failure: ``time.monotonic()`` of the last failed attempt, or None.
    :param now: ``time.monotonic()`` now.
    """

    reason: SpawnReason = field(validator=in_(SPAWN_REASONS))
    consecutive_failures: int
    last_failure: float | None
    now: float


@frozen(kw_only=True)
class RespawnDecision:
    """The policy's answer: spawn now, or not before ``retry_at`` (then calls get
    ``NotRunning`` with ``message``). ``recycle_after`` caps the new executor's task count."""

    spawn: bool
    retry_at: float | None = None
    message: str = ""
    recycle_after: int | None = None


# -- observing a pool -----------------------------------------------------------------------


class PoolView(Protocol):
    """A pool as the lifecycle hooks hand it to observers (a :class:`~spider_core.ProcessPool`)."""

    @property
    def config(self) -> PoolConfig:
        """The pool's :class:`~spider_core.PoolConfig` (``em_id`` names it; ``metrics``)."""

    def stats(self) -> PoolStats:
        """A :class:`~spider_core.PoolStats` snapshot: cheap, no I/O, from any thread."""
