"""attrs models: the executor protocol messages and package sources.

Everything that crosses a process boundary is ``@frozen(kw_only=True)``; the single cattrs
converter (:mod:`spider_core.converter`) turns these into primitives and back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from attrs import field, frozen
from attrs.validators import ge, in_, instance_of

from spider_core.tdl import ExecutorError, decode_values

# -- executor protocol ----------------------------------------------------------------------


@frozen(kw_only=True)
class Execute:
    """Run ``task`` of ``package``; the executor answers with a :class:`Result` echoing ``seq``."""

    seq: int
    package: str
    task: str
    raw_ctx: bytes
    raw_inputs: bytes


@frozen(kw_only=True)
class Shutdown:
    """Ask the executor to exit 0."""


@frozen(kw_only=True)
class Result:
    """The answer to :class:`Execute`.

    ``ok``: ``payload`` is the wire-format outputs; otherwise it is a msgpack ``ExecutorError``.
    ``elapsed_us`` covers the package call only.
    """

    seq: int
    ok: bool
    payload: bytes
    elapsed_us: int


@frozen(kw_only=True)
class Ready:
    """Sent once by the executor when it is ready for requests."""

    pid: int
    abi_version: str


Request = Execute | Shutdown
Response = Result | Ready
Message = Execute | Shutdown | Result | Ready

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
    """A loaded package, as ``spider_load_package`` returns it."""

    name: str
    kind: str

    def execute(self, task: str, raw_ctx: bytes, raw_inputs: bytes) -> bytes:
        """Run ``task``; return wire-format outputs or raise an ``ExecutorError``."""
        ...




# -- the pool -------------------------------------------------------------------------------


def _positive(instance: Any, attribute: Any, value: float | int | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@frozen(kw_only=True)
class PoolConfig:
    """How a :class:`spider_core.ProcessPool` runs its executor.

    :param package_dir: Task packages live here; exported to the executor as
        ``SPIDER_TDL_PACKAGE_DIR``.
    :param log_dir: Each executor's stderr goes to ``<log_dir>/<em_id>-<executor_id>.log``
        (created if missing, appended to); None forwards each line to the
        ``spider_core.executor.log`` logger instead.
    :param em_id: Names this pool's log files.
    :param inherited_env: Environment variables copied from the parent at each spawn (a
        missing one is skipped with a warning). The executor otherwise gets a clean
        environment: ``PATH`` plus spider-core's own settings.
    :param max_log_line_bytes: Longer log lines are dropped with a warning.
    :param max_frame_size: Largest protocol message either side may send.
    :param executor_command: The executor's argv; default ``python -m spider_core.executor``
        with this interpreter.
    :param spawn_timeout: Seconds a new executor has to send ``Ready``.
    :param shutdown_grace: Seconds close() waits after ``Shutdown`` before SIGTERM, and after
        SIGTERM before SIGKILL.
    :param recycle_after: Replace the executor after this many tasks (None: never).
    :param max_spawn_failures: Consecutive spawn failures after which the pool waits the
        longest back-off between attempts.
    :param backoff_initial: First back-off after a spawn failure, doubled per failure.
    :param backoff_max: Longest back-off.
    :param disabled_plugins: Plugin names to block, in the pool and in its executors (added
        to ``SPIDER_DISABLE_PLUGINS``).
    :param plugin_autoload: Whether entry-point plugins load (None: per
        ``SPIDER_DISABLE_PLUGIN_AUTOLOAD``).
    :param standby: Keep a second, idle executor ready, so that after a timeout, crash or
        recycle the next call is served at once instead of after a process start (about
        150 ms here). It costs one idle process; ``inherited_env`` is copied when the standby
        is spawned, not when it takes over.
    :param spin_us: After sending a request, the pool polls for the answer for up to this
        many microseconds before it waits on the event loop, yielding the CPU after each empty
        read (the executor may be waiting for that CPU). Short tasks then return without a
        wake-up (much of a round trip on virtual machines), but the event loop runs nothing
        else meanwhile; 0 (the default) never spins.
    :param executor_log_level: What the executor logs: ``"info"`` (start, packages loaded,
        errors, exit), ``"debug"`` (also one line per task), ``"warning"``, ``"error"``.
    :param executor_spin_us: After answering, the executor polls for the next request for
        this many microseconds before it blocks. For callers that send tasks back to back
        this cuts the round trip sharply on virtual machines, at the price of that much CPU
        after every task; 0 (the default) never spins.
    """

    package_dir: Path = field(converter=Path)
    log_dir: Path | None = field(default=None, converter=lambda v: None if v is None else Path(v))
    em_id: str = field(default="em", validator=instance_of(str))
    inherited_env: tuple[str, ...] = field(default=(), converter=_names)
    max_log_line_bytes: int = field(default=64 * 1024, validator=[instance_of(int), _positive])
    max_frame_size: int = field(default=64 * 1024 * 1024, validator=[instance_of(int), _positive])
    executor_command: tuple[str, ...] | None = field(
        default=None, converter=lambda v: None if v is None else _names(v)
    )
    spawn_timeout: float = field(default=30.0, validator=_positive)
    shutdown_grace: float = field(default=2.0, validator=_positive)
    recycle_after: int | None = field(default=None, validator=_positive)
    max_spawn_failures: int = field(default=5, validator=_positive)
    backoff_initial: float = field(default=0.1, validator=_positive)
    backoff_max: float = field(default=30.0, validator=_positive)
    disabled_plugins: tuple[str, ...] = field(default=(), converter=_names)
    plugin_autoload: bool | None = None
    executor_spin_us: int = field(default=0, validator=[instance_of(int), ge(0)])
    standby: bool = field(default=False, validator=instance_of(bool))
    spin_us: int = field(default=0, validator=[instance_of(int), ge(0)])
    executor_log_level: str = field(
        default="info", validator=in_(("debug", "info", "warning", "error")), converter=str.lower
    )


@frozen(kw_only=True)
class ExecuteRequest:
    """One task to run.

    :param package: Task package name.
    :param task: Task name within the package.
    :param inputs: One msgpack-able value per task parameter.
    :param raw_inputs: Wire-format inputs already encoded (as spider's storage holds them);
        used instead of ``inputs``.
    :param job_id: ``TaskContext`` ids, passed to the task as spider passes them.
    :param task_id: Which task of the job graph: ``TaskId.of(i)``, ``TaskId.COMMIT`` or
        ``TaskId.CLEANUP``.
    :param task_graph_outputs: For the commit task: the job's outputs in spider's stored
        form (``SerializedTaskOutputs.raw``); the commit task gets an empty input frame.
    """

    package: str
    task: str
    inputs: tuple[Any, ...] = field(default=(), converter=tuple)
    raw_inputs: bytes | None = None
    job_id: int = 0
    task_id: Any = None  # TaskId; None means TaskId.of(0)
    task_instance_id: int = 0
    resource_group_id: int = 0
    task_graph_outputs: bytes | None = None


# -- outcomes -------------------------------------------------------------------------------


@frozen(kw_only=True)
class Success:
    """The task returned outputs (wire format); ``values`` decodes them."""

    outputs: bytes
    elapsed_us: int
    executor_id: int | None = None

    @property
    def values(self) -> list[Any]:
        return decode_values(self.outputs)


@frozen(kw_only=True)
class InTaskFailure:
    """The executor answered with an error: the task failed, or its package could not load."""

    error: ExecutorError
    elapsed_us: int
    executor_id: int | None = None


@frozen(kw_only=True)
class Timeout:
    """The task ran past its hard timeout; the executor was killed and replaced."""

    hard_timeout: float
    executor_id: int | None = None


@frozen(kw_only=True)
class ExecutorCrash:
    """The executor died or broke the protocol mid-task; it was replaced.

    ``exit_status`` is its exit code, or None if a signal (``signal``) ended it.
    """

    exit_status: int | None
    signal: int | None
    executor_id: int | None = None


Outcome = Success | InTaskFailure | Timeout | ExecutorCrash


# -- spawn and respawn policy ---------------------------------------------------------------


@frozen(kw_only=True)
class LaunchSpec:
    """How to start one executor: what ``spider_launcher`` returns."""

    argv: tuple[str, ...] = field(converter=_names)
    env: dict[str, str]
    cwd: Path | None = None


@frozen(kw_only=True)
class RespawnState:
    """What the respawn policy knows when the pool needs an executor.

    :param reason: Why: ``"start"``, ``"timeout"``, ``"crash"``, ``"cancelled"``,
        ``"recycle"``, ``"retry"`` (a call found no executor after failed spawns).
    :param consecutive_failures: Spawn attempts that failed since the last success.
    :param last_failure: ``time.monotonic()`` of the last failed attempt, or None.
    :param now: ``time.monotonic()`` now.
    """

    reason: str
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
