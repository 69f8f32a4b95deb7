"""Hook specifications: every swappable piece of spider-core.

Implement any of these in a plugin module or class decorated with
:data:`spider_core.plugin.hookimpl`, and register it through the ``spider_core`` entry-point
group. Implementations may accept fewer arguments than the spec lists. Hooks grow by gaining
arguments; none is ever renamed or removed. Each section says in which process its hooks
run; the executor child builds its plugin manager from the same settings as the pool and
registers the same plugins (the pool hands it the list its manager loaded, so the child does
not scan the entry points again).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from spider_core.models import ExecuteRequest, Outcome, PoolConfig
    from spider_core.plugin.types import (
        ExitReason,
        LaunchSpec,
        PackageInfo,
        PackageSource,
        PoolView,
        RespawnDecision,
        RespawnState,
        Spawner,
        TaskPackage,
    )
    from spider_core.protocol import ExecutorProtocol, Framing

PROJECT_NAME = "spider_core"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# -------------------------------------------------------------------------------------------
# package resolution and loading (in the executor child; resolution also in the parent)
# -------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def spider_resolve_package(
    package: str, package_dir: Path | None, installed_packages: bool
) -> PackageSource | Path | None:
    """Locate the task package named ``package``.

    :param package: Name from the request, already validated (no separators, ``.``/``..``,
        NUL or absolute paths).
    :param package_dir: Root directory of the task packages (``SPIDER_TDL_PACKAGE_DIR``), or
        None when none is set (then only installed packages can be found).
    :param installed_packages: Whether installed task packages (entry points of the
        ``spider_core.task_packages`` group) may be used (``PoolConfig.installed_packages``).
    :return: Where the package lives: a :class:`~spider_core.plugin.PackageSource`, or a
        :class:`pathlib.Path` to a native ``lib<name>.so`` (treated as a source of kind
        ``"native"``); None if this plugin does not know the package, to let another try.

    First non-None result wins. Called in the executor child before a package's first task,
    and in the parent by ``spider run`` to check that the package exists. If it raises, in
    the executor: an ``ExecutorError`` becomes the call's ``InTaskFailure``, anything else an
    ``InvalidLibrary`` failure naming the plugin's error (traceback in the executor's log),
    and the next call tries again; in ``spider run``: an ``ExecutorError`` or ``OSError`` is
    a usage error (exit 2), anything else a plugin failure (exit 5). Default:
    ``spider_pytasks`` (``<dir>/<pkg>/__init__.py``), then ``spider_libso``
    (``<dir>/<pkg>/lib<pkg>.so``), then ``spider_installed`` (installed distributions, only
    when the package directory has no such package).
    """


@hookspec(firstresult=True)
def spider_load_package(source: PackageSource) -> TaskPackage | None:
    """Load (and initialise) a resolved package.

    :param source: What ``spider_resolve_package`` returned; check ``source.kind``.
    :return: A :class:`~spider_core.plugin.TaskPackage` whose declared name equals
        ``source.package``; None if this plugin cannot load sources of this kind. Raise an
        ``ExecutorError`` (``InvalidLibrary``, ``IncompatibleVersion``, ``PackageInitError``,
        ...) if it can but the package is broken.

    First non-None result wins. Called in the executor child only; the executor caches the
    result by name for its lifetime. If it raises, the call fails as for
    ``spider_resolve_package`` and nothing is cached, so the next call tries again. Default:
    ``spider_libso`` (sources of kind ``"native"``, loaded with ctypes) and
    ``spider_pytasks`` (sources of kind ``"python"``).
    """


@hookspec
def spider_list_packages(package_dir: Path | None) -> list[PackageInfo] | None:
    """List the packages this plugin finds (``spider packages``).

    :param package_dir: Root directory of the task packages, or None when none is set.
    :return: One :class:`~spider_core.plugin.PackageInfo` per package found, broken ones
        included with ``error`` set; an empty list (or None) if there are none.

    All implementations are called; their lists are concatenated. Called in the parent
    process: never run package code here (inspect packages in a child process that calls
    :func:`~spider_core.plugin.die_with_parent`). If one raises, ``spider packages`` fails:
    an ``OSError`` as an unreadable directory (exit 2), anything else as a plugin failure
    (exit 5). Default: ``spider_libso`` (every ``<dir>/<name>/lib<name>.so``),
    ``spider_pytasks`` (every ``<dir>/<name>/__init__.py``) and ``spider_installed`` (every
    installed task package, with its distribution and version).
    """


@hookspec(firstresult=True)
def spider_inspect_package(source: PackageSource) -> PackageInfo | None:
    """Describe one package without running its code in this process.

    :param source: The package to describe; its ``location`` may be a temporary file name
        (``spider build-package`` checks a library before moving it into place).
    :return: A :class:`~spider_core.plugin.PackageInfo` whose ``name`` is the name the package
        declares, with ``error`` set if it cannot be used; None if this plugin does not
        understand sources of this kind.

    First non-None result wins. Called in the parent process, by ``spider build-package`` and
    :func:`spider_core.build_package` (sources of kind ``"native"``), and by
    ``spider_installed`` to list installed packages (either kind); read the package in a
    child process. If no plugin answers, the build is not checked; if one raises, the build
    fails naming the error. Default: ``spider_libso`` (sources of kind ``"native"``) and
    ``spider_pytasks`` (installed sources of kind ``"python"``).
    """


# -------------------------------------------------------------------------------------------
# framing (called in the pool and in the executor child; both must agree)
# -------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def spider_framing(max_frame_size: int, environment: dict[str, str]) -> Framing | None:
    """Provide the framing that carries protocol messages over the executor's pipes.

    :param max_frame_size: Largest frame body, in bytes, either side may send or accept.
    :param environment: The settings the pool chose for its executors, in the executor's
        terms: in the executor, its environment (which holds the protocol's
        ``ExecutorProtocol.environment``); in the pool, empty: a framing that depends on the
        pool's configuration is chosen there by its plugin's ``spider_protocol``, which
        passes the setting on in its ``environment``. Added for ``spider_shm``
        (``PoolConfig.shm_threshold``).
    :return: A :class:`~spider_core.plugin.Framing`; None to let another plugin answer.

    First non-None result wins; called once per pool (when it starts) and once per executor
    process. Return a new framing for each call: each is then used from one thread only, so it
    may keep state (a reusable packer). If it raises in the pool, ``start()`` raises
    ``ExecutorCreationFailure`` naming the error; in the executor, the executor exits before it is ready (the pool's start or
    respawn then fails with ``ExecutorCreationFailure``). Default: ``spider_shm`` (in an
    executor whose environment has ``SPIDER_SHM_THRESHOLD``: large fields in shared memory),
    then ``spider_msgpack`` (4-byte big-endian length prefix and a msgpack body).
    """


# -------------------------------------------------------------------------------------------
# protocol (called in the pool): the whole conversation with the executor
# -------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def spider_protocol(name: str, config: PoolConfig) -> ExecutorProtocol | None:
    """Provide the protocol the pool speaks with its executors: how requests and replies are
    encoded and framed, whether the executor greets first, how a reply is matched to its
    request, and how to ask the executor to stop.

    :param name: The protocol ``PoolConfig.protocol`` names (``"spider-core"`` by default).
    :param config: The pool's :class:`~spider_core.PoolConfig` (``max_frame_size``,
        ``executor_command``, ...).
    :return: A :class:`~spider_core.plugin.ExecutorProtocol` if this plugin implements the
        protocol called ``name``; None to let another plugin answer.

    First non-None result wins; called once per slot when the pool starts, never per task.
    Return a new protocol for each call: each slot uses its own, from one thread. If no plugin
    answers, ``"spider-core"`` is the built-in :class:`~spider_core.protocol.CoreProtocol` over
    the ``spider_framing`` hook's framing, and any other name makes ``start()`` raise
    ``ExecutorCreationFailure`` naming the protocols ``spider_protocol_names`` lists. If it
    raises, ``start()`` raises ``ExecutorCreationFailure``: with the message alone for a
    :class:`~spider_core.plugin.PluginError` (a configuration the protocol cannot serve),
    naming the error otherwise. Default: ``spider_rustexec`` answers ``"spider-rust"``
    (spider's own ``spider-task-executor``: bincode, no handshake, no sequence numbers);
    ``spider_shm`` answers ``"spider-core"`` when ``PoolConfig.shm_threshold`` is set
    (shared memory for large fields, and refuses any other protocol then); otherwise
    ``"spider-core"`` is built in.
    """


@hookspec
def spider_protocol_names() -> list[str] | None:
    """Name the protocols this plugin's ``spider_protocol`` implements.

    :return: Protocol names, such as ``["spider-rust"]``; None or an empty list for none.

    All implementations are called; their lists are concatenated (after the built-in
    ``"spider-core"``) for the error on an unknown ``PoolConfig.protocol`` and for
    ``spider plugins``. Default: ``spider_rustexec`` (``"spider-rust"``).
    """


# -------------------------------------------------------------------------------------------
# spawn (called in the pool)
# -------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def spider_launcher(config: PoolConfig, executor_id: int, env: dict[str, str]) -> LaunchSpec | None:
    """Say how to start one executor process.

    :param config: The pool's :class:`~spider_core.PoolConfig`.
    :param executor_id: The id the new executor will have.
    :param env: The environment the pool prepared (``inherited_env``, ``PATH``,
        ``SPIDER_TDL_PACKAGE_DIR`` and spider-core's settings); extend it, do not drop names.
    :return: A :class:`~spider_core.plugin.LaunchSpec` (argv, env, cwd); None to let
        another plugin answer.

    First non-None result wins; called at every spawn (the standby's too), never per task.
    The process must speak the pool's protocol (``PoolConfig.protocol``; spider-core's own,
    :mod:`spider_core.protocol`, by default) on its stdin/stdout and log to stderr. If it raises, the spawn fails: the caller of ``start()``
    or ``execute()`` gets ``ExecutorCreationFailure`` naming the error, and the failure
    counts toward the respawn back-off. Default: ``spider_supervisor``
    (``PoolConfig.executor_command``, else ``python -m spider_core.executor``).
    """


@hookspec(firstresult=True)
def spider_spawner(config: PoolConfig) -> Spawner | None:
    """Provide what starts this pool's executor processes.

    :param config: The pool's :class:`~spider_core.PoolConfig` (``start_method``, ...).
    :return: A :class:`~spider_core.plugin.Spawner`: its ``spawn(executor_id, spec)`` starts
        the process a ``spider_launcher`` spec describes and returns a started
        :class:`~spider_core.plugin.ExecutorHandle` (pid, pipes, optional pidfd, ``wait()``
        for the exit status); its ``close()`` runs when the pool closes. None to let another
        plugin answer.

    First non-None result wins; called once per pool, when it starts (the spawner may keep
    per-pool state, such as a server process). If it raises, ``start()`` raises
    ``ExecutorCreationFailure``: with the message alone for a ``PluginError`` (a configuration
    the spawner cannot serve), naming the error otherwise. If ``spawn`` raises, that spawn fails
    as for ``spider_launcher``. Default: ``spider_supervisor``: ``start_method="exec"``, a new
    process per executor (``subprocess.Popen``); ``"forkserver"``, one server per pool,
    started with the launcher's command and environment, that forks each executor.
    """


# -------------------------------------------------------------------------------------------
# respawn policy (called in the pool)
# -------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def spider_respawn_decision(config: PoolConfig, state: RespawnState) -> RespawnDecision | None:
    """Decide whether the pool may spawn an executor now.

    :param config: The pool's :class:`~spider_core.PoolConfig`.
    :param state: A :class:`~spider_core.plugin.RespawnState`: why an executor is needed,
        consecutive spawn failures and when the last one happened.
    :return: A :class:`~spider_core.plugin.RespawnDecision`: spawn now (optionally capping
        the new executor's task count for recycling), or not yet (calls then get
        ``NotRunning``); None to let another plugin answer.

    First non-None result wins; called before every spawn (the standby's too), never per
    task. If it raises, the caller of ``start()`` or ``execute()`` gets ``NotRunning``
    naming the error. Default: ``spider_supervisor`` (at once; exponential back-off after
    failed spawns, the longest back-off after ``max_spawn_failures``; ``recycle_after`` from
    the config).
    """


# -------------------------------------------------------------------------------------------
# lifecycle events (called in the pool; notifications only)
#
# If an implementation raises, the pool logs it as a warning of the ``spider_core.plugins``
# logger naming the plugin (with the traceback attached, the first time per pool and hook; then
# at debug level) and carries on: a metrics plugin never breaks a call.
# -------------------------------------------------------------------------------------------


@hookspec
def spider_pool_started(pool: PoolView) -> bool | None:
    """A pool has started: its executors are ready (or retrying), and calls are served.

    :param pool: The pool, as a :class:`~spider_core.plugin.PoolView`: the
        :class:`~spider_core.ProcessPool` (for a :class:`~spider_core.SyncProcessPool`, the
        ``ProcessPool`` it runs). Read its ``config`` and, whenever you like (at a scrape,
        say), its ``stats()``. Keep it weakly, or drop it at ``spider_pool_closed``.
    :return: False if this plugin does not observe this pool: its ``spider_task_finished``
        is then not called for the pool's calls, so an observer switched off costs nothing
        per task; None (or True) otherwise.

    All implementations are called, each on its own (so that each answer is its plugin's),
    in the event loop of the pool (for a sync pool, its thread), once per pool, at the end of
    ``start()``. Added for the observability
    plugins (a gauge read at scrape time needs the pool; a metrics plugin is switched on per
    pool by ``PoolConfig.metrics``). Default: ``spider_prometheus`` (False unless
    ``PoolConfig.metrics``) and ``spider_otel`` (False unless a tracer provider is
    configured), each registered only when its library is installed.
    """


@hookspec
def spider_pool_closed(pool: PoolView) -> None:
    """A pool has closed: its executors are stopped and reaped.

    :param pool: The pool ``spider_pool_started`` was given.

    All implementations are called, in the pool's event loop, once per pool that started.
    Default: ``spider_prometheus`` (stops reporting the pool's executors).
    """


@hookspec
def spider_executor_started(executor_id: int, pid: int, log_path: Path | None, pool: PoolView) -> None:
    """An executor process is up: it has sent ``Ready`` (or, for a protocol without a
    handshake, it was spawned).

    :param executor_id: The pool's monotonic id of this spawn.
    :param pid: The executor's process id.
    :param log_path: Where its log goes, or None when forwarded to ``logging``.
    :param pool: The pool (as ``spider_pool_started`` has it; executor ids are the pool's own).

    All implementations are called. Default: none.
    """


@hookspec
def spider_executor_exited(
    executor_id: int, pid: int, reason: ExitReason, exit_status: int | None, signal: int | None, pool: PoolView
) -> None:
    """An executor process is gone and reaped.

    :param executor_id: The pool's id of this spawn.
    :param pid: Its process id.
    :param reason: One of :data:`~spider_core.plugin.ExitReason`: ``"timeout"``, ``"crash"``,
        ``"cancelled"``, ``"recycle"``, ``"memory"`` or ``"shutdown"``.
    :param exit_status: Its exit code, or None if a signal killed it.
    :param signal: The signal that killed it, or None.
    :param pool: The pool (as ``spider_pool_started`` has it).

    All implementations are called. Default: none.
    """


@hookspec
def spider_task_finished(
    request: ExecuteRequest,
    outcome: Outcome,
    executor_id: int,
    queue_wait: float,
    execution_time: float,
    pool: PoolView,
) -> None:
    """A call to ``ProcessPool.execute`` produced an outcome.

    :param request: The :class:`spider_core.ExecuteRequest`.
    :param outcome: ``Success``, ``InTaskFailure``, ``Timeout`` or ``ExecutorCrash``.
    :param executor_id: The executor that ran it.
    :param queue_wait: Seconds spent waiting for a free slot.
    :param execution_time: Seconds from holding the slot to the outcome.
    :param pool: The pool (as ``spider_pool_started`` has it).

    All implementations are called (less those whose ``spider_pool_started`` answered False
    for this pool), in the caller's context: on the async pool in the calling task
    (``map``: in a lane task created from the task iterating the map, so its context
    variables are the iterating task's), on the sync pool in the thread that made the call
    (``submit`` and ``map``: a task on the pool's thread, without the caller's context
    variables), so implementations used with a sync pool called from several threads must be
    thread-safe. A call cancelled while its task ran produces no outcome, so no call of this
    hook (``spider_executor_exited`` reports its executor with reason ``"cancelled"``).
    Default: ``spider_prometheus`` and ``spider_otel``, when enabled.
    """
