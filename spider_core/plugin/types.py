"""The types hooks take and return (re-exported by :mod:`spider_core.plugin`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from attrs import field, frozen
from attrs.validators import in_, instance_of

if TYPE_CHECKING:
    from spider_core.models import PoolConfig, PoolStats

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
    without it, soft timeouts are ignored (native packages).
    """

    name: str
    kind: str

    def execute(self, task: str, raw_ctx: bytes, raw_inputs: bytes) -> bytes:
        """Run ``task``; return wire-format outputs or raise an ``ExecutorError``."""
        ...


@frozen(kw_only=True)
class PackageInfo:
    """One package found in a package directory, as ``spider packages`` shows it.

    :param error: Why the package cannot be used (None if it can).
    :param compatible: Whether its ABI version is compatible with this host (None if unknown).
    :param tasks: Task signatures, when the package kind can tell them.
    """

    name: str
    kind: str
    location: Path
    version: str | None = None
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
