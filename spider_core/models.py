"""The user-facing models: the pool's configuration, a request, and its outcomes.

All ``@frozen(kw_only=True)``: they cross threads and processes and land in logs. The
messages between pool and executor are in :mod:`spider_core.protocol`; the types hooks take
and return in :mod:`spider_core.plugin`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from signal import Signals
from types import MappingProxyType
from typing import Any, Literal, NoReturn

from attrs import field, frozen

from spider_core.errors import ExecutorCrashed, TaskFailed, TaskTimedOut
from spider_core.tdl import ExecutorError, decode_values

# -- the pool -------------------------------------------------------------------------------


class _Check:
    """A field validator that says in one sentence which field, which value, what is expected."""

    def __init__(self, expected: str, ok: Any, optional: bool = False) -> None:
        self.expected = f"{expected} or None" if optional else expected
        self.ok = ok
        self.optional = optional

    def __call__(self, instance: Any, attribute: Any, value: Any) -> None:
        if value is None and self.optional:
            return
        try:
            good = self.ok(value)
        except Exception:
            good = False
        if not good:
            raise ValueError(f"PoolConfig.{attribute.name} must be {self.expected}, got {value!r:.80}")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _seconds(optional: bool = False) -> _Check:
    return _Check("a positive, finite number of seconds", lambda v: _number(v) and 0 < v < math.inf, optional)


def _at_least(low: int, what: str = "a whole number", optional: bool = False) -> _Check:
    return _Check(f"{what} of at least {low}", lambda v: _whole(v) and v >= low, optional)


def _names(value: Any) -> Any:
    """A tuple of names from one name or an iterable of them (anything else is left for the
    validator to refuse)."""
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(value)
    except TypeError:
        return value


def _command(value: Any) -> Any:
    return None if value is None else _names(value)


def _names_check(what: str) -> _Check:
    return _Check(f"{what} (a string or a list of non-empty strings)",
                  lambda v: isinstance(v, tuple) and all(isinstance(n, str) and n for n in v))


def _path(value: Any) -> Any:
    return Path(value) if isinstance(value, str | PathLike) else value


_LOG_LEVELS = ("debug", "info", "warning", "error")


def _level(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


#: How a pool starts its executors (``PoolConfig.start_method``).
START_METHODS = ("exec", "forkserver")


@frozen(kw_only=True)
class PoolConfig:
    """How a :class:`spider_core.ProcessPool` runs its executors.

    :param slots: How many tasks run at once: one executor process per slot, each with the
        guarantees of a single-slot pool (one task running at a time, its own hard timeout,
        its own respawn). Calls wait in one first-come, first-served queue for the first free
        slot (a deep queue is sent ahead to the executors: see ``spider_core.pool.pipeline``).
    :param default_timeout: The hard timeout, in seconds, of a call that passes none (None:
        every call must pass ``hard_timeout``).
    :param package_dir: Task packages live here; exported to the executor as
        ``SPIDER_TDL_PACKAGE_DIR``. It must be a directory when the pool starts: else
        ``start()`` raises ``ExecutorCreationFailure`` naming it, before spawning anything.
        None (the default): no package directory, only installed task packages.
    :param installed_packages: Whether a package the package directory does not hold may come
        from an installed distribution (an entry point of the ``spider_core.task_packages``
        group, such as a wheel from ``spider build-package --wheel``). The package directory
        always wins; the executor reads the installed distributions once, on its first such
        package.
    :param log_dir: Each executor's stderr goes to ``<log_dir>/<em_id>-<executor_id>.log``
        (created if missing, appended to); None forwards each line to the
        ``spider_core.executor.log`` logger instead, with an ``executor_id`` attribute. A log
        file that cannot be opened falls back to that logger with a warning.
    :param em_id: The execution manager's id, in spider's terms the component that owns
        this pool; it names the pool's log files, so pools sharing a ``log_dir`` need
        different ones.
    :param inherited_env: Environment variables copied from the parent at each spawn (a
        missing one is skipped with a warning). The executor otherwise gets a clean
        environment: ``PATH`` plus spider-core's own settings.
    :param max_log_line_bytes: Longer log lines are dropped with a warning (a notice takes
        their place in the log); capture resumes at the next line.
    :param max_frame_size: Largest protocol message, in bytes, either side may send (64 MiB by
        default): larger inputs are an ``EncodeTaskInputs`` error, larger outputs the task's
        ``SerializationError``, each saying how to raise the limit (``--max-frame-size`` of
        ``spider run`` and ``spider batch``).
    :param executor_command: The executor's argv; default ``python -m spider_core.executor``
        with this interpreter.
    :param protocol: The protocol the pool speaks with its executors, by name: ``"spider-core"``
        (the default, spider-core's own executor) or ``"spider-rust"`` (spider's Rust
        ``spider-task-executor``, whose path ``executor_command`` must give), or one a plugin
        provides (the ``spider_protocol`` hook). An unknown name makes ``start()`` raise
        ``ExecutorCreationFailure`` naming the available ones.
    :param spawn_timeout: Seconds a new executor has to send ``Ready`` (for a protocol with a
        handshake; without one, an executor serves as soon as it is spawned).
    :param shutdown_grace: Seconds close() waits after ``Shutdown`` before SIGTERM, and after
        SIGTERM before SIGKILL.
    :param recycle_after: Replace the executor after this many tasks (None: never).
    :param max_executor_rss: Bytes of resident memory an executor may hold after a task;
        beyond it, the executor is replaced before its next task (exit reason ``"memory"``).
        The task that grew it keeps its outcome. None: no limit.
    :param max_spawn_failures: Consecutive spawn failures after which the pool waits the
        longest back-off between attempts.
    :param backoff_initial: First back-off after a spawn failure, doubled per failure.
    :param backoff_max: Longest back-off.
    :param disabled_plugins: Plugin names to block, in the pool and in its executors (added
        to ``SPIDER_DISABLE_PLUGINS``).
    :param plugin_autoload: Whether entry-point plugins load (None: per
        ``SPIDER_DISABLE_PLUGIN_AUTOLOAD``).
    :param standby: Keep a standby per slot: a second, idle executor ready, so that after a timeout,
        crash or recycle the next call is served at once instead of after a process start
        (about 150 ms here). It costs one idle process per slot; ``inherited_env`` is copied when the standby
        is spawned, not when it takes over.
    :param start_method: How executors start: ``"exec"`` (the default), a new process of
        ``executor_command`` each; ``"forkserver"``, one server per pool, started with that
        command once, that has imported everything an executor needs (but no task package) and
        forks each new executor in a few milliseconds: a respawn after a crash or a timeout
        is then about as fast as with ``standby``, without the idle process, and idle
        executors share the server's memory. Needs spider-core's own executor (the
        ``"spider-core"`` protocol). The ``spider_spawner`` hook implements both.
    :param spin_us: After sending a request, the caller polls for the answer for up to this
        many microseconds before it blocks, yielding the CPU after each empty read (the
        executor may be waiting for that CPU). Short tasks then return without a wake-up (much
        of a round trip on virtual machines). The spin adapts: after a poll that was not
        answered in time, the next 1, 2, 4, ... 64 calls block at once, so long tasks cost
        little spinning. The async pool polls only while one call is in flight (its event loop
        runs nothing else meanwhile); 0 (the default) never spins. The one switch for low
        latency: ``spin_us=300`` also makes the executor spin (``executor_spin_us``), and cuts
        a no-op round trip to a fraction on virtual machines, where waking a sleeping CPU
        costs hundreds of microseconds; an idle pool costs no CPU either way.
    :param executor_log_level: What the executor logs: ``"info"`` (start, packages loaded,
        errors, exit), ``"debug"`` (also one line per task), ``"warning"``, ``"error"``.
    :param executor_spin_us: After answering, the executor polls for the next request for
        up to this many microseconds before it blocks. For callers that send tasks back to
        back this cuts the round trip sharply on virtual machines. It adapts as ``spin_us``
        does: a poll that goes unanswered makes the next 1, 2, 4, ... 64 waits block at once,
        so an idle pool or a caller that pauses between tasks costs at most one window of CPU
        now and then; 0 never spins. None (the default): as ``spin_us``.
    :param metrics: Report this pool's calls and executors as Prometheus metrics (the
        ``spider_prometheus`` plugin, with the ``metrics`` extra installed; see "Observing the
        pool"). Off by default: an observer switched off costs nothing per task.
    :param shm_threshold: Task inputs and outputs of at least this many bytes cross in shared
        memory instead of the pipes (the ``spider_shm`` plugin): the pool copies the inputs
        into a ``memfd`` region the executor maps, a native task reads them where they lie,
        and only a reference crosses the pipe; the outputs come back the same way (see
        "Performance" for the copies each path takes). Each slot keeps two regions, as large
        as the largest payload it carried (never over ``max_frame_size``), until the pool
        closes; requests are then sent one at a time per slot. Needs the ``"spider-core"``
        protocol. None (the default): everything crosses the pipes. 1 MiB is a good value.
    """

    package_dir: Path | None = field(
        default=None, converter=_path, validator=_Check("a path (a string or a Path)", lambda v: isinstance(v, Path), True)
    )
    installed_packages: bool = field(default=True, validator=_Check("True or False", lambda v: isinstance(v, bool)))
    slots: int = field(default=1, validator=_at_least(1))
    default_timeout: float | None = field(default=None, validator=_seconds(optional=True))
    log_dir: Path | None = field(
        default=None, converter=_path, validator=_Check("a path (a string or a Path)", lambda v: isinstance(v, Path), True)
    )
    em_id: str = field(default="em", validator=_Check("a non-empty string", lambda v: isinstance(v, str) and v))
    inherited_env: tuple[str, ...] = field(default=(), converter=_names, validator=_names_check("variable names"))
    max_log_line_bytes: int = field(default=64 * 1024, validator=_at_least(1, "a whole number of bytes"))
    max_frame_size: int = field(default=64 * 1024 * 1024, validator=_at_least(1, "a whole number of bytes"))
    executor_command: tuple[str, ...] | None = field(
        default=None,
        converter=_command,
        validator=_Check(
            "a command (a string or a non-empty list of non-empty strings)",
            lambda v: isinstance(v, tuple) and v and all(isinstance(n, str) and n for n in v),
            optional=True,
        ),
    )
    protocol: str = field(
        default="spider-core",
        validator=_Check("a protocol name (a non-empty string)", lambda v: isinstance(v, str) and v.strip()),
    )
    spawn_timeout: float = field(default=30.0, validator=_seconds())
    shutdown_grace: float = field(default=2.0, validator=_seconds())
    recycle_after: int | None = field(default=None, validator=_at_least(1, "a whole number of tasks", optional=True))
    max_executor_rss: int | None = field(default=None, validator=_at_least(1, "a whole number of bytes", optional=True))
    max_spawn_failures: int = field(default=5, validator=_at_least(1))
    backoff_initial: float = field(default=0.1, validator=_seconds())
    backoff_max: float = field(default=30.0, validator=_seconds())
    disabled_plugins: tuple[str, ...] = field(default=(), converter=_names, validator=_names_check("plugin names"))
    plugin_autoload: bool | None = field(default=None, validator=_Check("True or False", lambda v: isinstance(v, bool), True))
    executor_spin_us: int | None = field(
        default=None, validator=_at_least(0, "a whole number of microseconds", optional=True)
    )
    standby: bool = field(default=False, validator=_Check("True or False", lambda v: isinstance(v, bool)))
    start_method: str = field(
        default="exec", validator=_Check(" or ".join(map(repr, START_METHODS)), lambda v: v in START_METHODS)
    )
    spin_us: int = field(default=0, validator=_at_least(0, "a whole number of microseconds"))
    executor_log_level: str = field(
        default="info",
        converter=_level,
        validator=_Check(f"one of {', '.join(map(repr, _LOG_LEVELS))}", lambda v: v in _LOG_LEVELS),
    )
    metrics: bool = field(default=False, validator=_Check("True or False", lambda v: isinstance(v, bool)))
    shm_threshold: int | None = field(default=None, validator=_at_least(1, "a whole number of bytes", optional=True))


def _tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(values)


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
    inputs: tuple[Any, ...] = field(default=(), converter=_tuple)
    raw_inputs: bytes | None = None
    job_id: int = 0
    task_id: Any = None  # TaskId; None means TaskId.of(0)
    task_instance_id: int = 0
    resource_group_id: int = 0
    task_graph_outputs: bytes | None = None


# -- outcomes -------------------------------------------------------------------------------
#
# ``unwrap()`` turns any outcome into values or an exception: ``Success`` returns its values,
# the others raise the matching ``spider_core.OutcomeError`` carrying the outcome.


@frozen(kw_only=True)
class Success:
    """The task returned outputs (wire format); ``values`` decodes them."""

    outputs: bytes
    elapsed_us: int
    executor_id: int | None = None

    @property
    def values(self) -> list[Any]:
        """The decoded outputs.

        :raises spider_core.tdl.WireFormatError: the task returned bytes that are not the
            wire format (a bug in the task; ``outputs`` holds them as they came).
        """
        return decode_values(self.outputs)

    def unwrap(self) -> list[Any]:
        """The decoded outputs, as ``values`` (which may raise ``WireFormatError``)."""
        return self.values


@frozen(kw_only=True)
class InTaskFailure:
    """The executor answered with an error: the task failed, or its package could not load."""

    error: ExecutorError
    elapsed_us: int
    executor_id: int | None = None

    def unwrap(self) -> NoReturn:
        """Raise :class:`spider_core.TaskFailed` carrying this outcome."""
        raise TaskFailed(self)


@frozen(kw_only=True)
class Timeout:
    """The task ran past its hard timeout; the executor was killed and replaced."""

    hard_timeout: float
    executor_id: int | None = None

    def unwrap(self) -> NoReturn:
        """Raise :class:`spider_core.TaskTimedOut` carrying this outcome."""
        raise TaskTimedOut(self)


def _to_signal(value: Signals | int | None) -> Signals | int | None:
    """A signal number as its ``signal.Signals`` member; a number with no member (a real-time
    signal above ``SIGRTMIN``, say) stays as it is."""
    if value is None or isinstance(value, Signals):
        return value
    try:
        return Signals(value)
    except ValueError:
        return value


@frozen(kw_only=True)
class ExecutorCrash:
    """The executor died or broke the protocol mid-task; it was replaced.

    ``exit_status`` is its exit code, or None if a signal ended it. ``signal`` is that signal as
    a ``signal.Signals`` (an ``IntEnum``: ``signal is signal.SIGSEGV``, ``signal.name`` is
    ``"SIGSEGV"``; a number Python has no name for stays a plain ``int``), or None.
    ``reason`` says why the pool killed it when it broke the protocol (``"the executor sent an
    undecodable frame: ..."``; its ``signal`` is then the pool's SIGKILL); None when it died by
    itself.
    """

    exit_status: int | None
    signal: Signals | None = field(converter=_to_signal)
    executor_id: int | None = None
    reason: str | None = None

    def unwrap(self) -> NoReturn:
        """Raise :class:`spider_core.ExecutorCrashed` carrying this outcome."""
        raise ExecutorCrashed(self)


Outcome = Success | InTaskFailure | Timeout | ExecutorCrash


# -- pool statistics ------------------------------------------------------------------------

#: The keys of :attr:`PoolStats.outcomes`: how calls ended (:func:`outcome_name`, and
#: ``cancelled``).
OUTCOMES = ("success", "failure", "timeout", "crash", "cancelled")
#: The keys of :attr:`PoolStats.respawns`: why executors were replaced.
RESPAWN_REASONS = ("timeout", "crash", "cancel", "recycle", "memory", "spawn-failure")

ExecutorState = Literal["idle", "busy", "starting", "standby"]

_OUTCOME_NAMES: dict[type, str] = {Success: "success", InTaskFailure: "failure", Timeout: "timeout", ExecutorCrash: "crash"}


def outcome_name(outcome: Outcome | type[Outcome]) -> str:
    """How ``outcome`` (or an outcome of this class) ended, as :attr:`PoolStats.outcomes` and
    the metrics name it: ``"success"``, ``"failure"``, ``"timeout"`` or ``"crash"``."""
    return _OUTCOME_NAMES[outcome if isinstance(outcome, type) else type(outcome)]


def _counts(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(counts))


@frozen(kw_only=True)
class ExecutorStats:
    """One executor of a pool, as ``pool.stats()`` sees it.

    :param executor_id: The pool's id of this spawn (None for a slot still ``starting``).
    :param pid: Its process id (None for a slot still ``starting``).
    :param state: ``idle`` (ready, its slot free), ``busy`` (its slot held by a call),
        ``standby`` (the idle spare of ``PoolConfig.standby``) or ``starting`` (the slot has
        no ready executor: one is being spawned, or the respawn policy waits).
    :param tasks_run: Tasks it answered.
    :param rss_bytes: Its resident memory, in bytes (0 if unknown).
    """

    executor_id: int | None
    pid: int | None
    state: ExecutorState
    tasks_run: int = 0
    rss_bytes: int = 0


@frozen(kw_only=True)
class PoolStats:
    """A snapshot of a pool, from ``pool.stats()``: its slots, how its calls ended, why its
    executors were replaced and what they hold now.

    :param slots: ``PoolConfig.slots``.
    :param busy: Slots held now (by a call, or by the pool recovering a slot).
    :param queued: Calls waiting for a slot now.
    :param outcomes: Calls finished, by how they ended: ``success``, ``failure``, ``timeout``,
        ``crash`` and ``cancelled`` (a caller cancelled while its task ran, so its executor
        was killed; a call cancelled while it waited for a slot never ran and is not counted).
    :param respawns: Executors replaced, by why: ``timeout``, ``crash`` (also one found dead
        while idle), ``cancel``, ``recycle`` (``recycle_after``), ``memory``
        (``max_executor_rss``), and ``spawn-failure`` (an executor that could not be started).
    :param executors: Each slot's executor in slot order, then each standby.
    """

    slots: int
    busy: int
    queued: int
    outcomes: Mapping[str, int] = field(converter=_counts)
    respawns: Mapping[str, int] = field(converter=_counts)
    executors: tuple[ExecutorStats, ...] = field(converter=_tuple)
