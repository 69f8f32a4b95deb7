"""What a plugin author imports, and nothing else: ``from spider_core.plugin import hookimpl,
...``. It holds :data:`hookimpl` (for the hooks of :mod:`spider_core.plugin.spec`, registered
under the ``spider_core`` entry-point group), every type those hooks take and return (the
request and outcomes ``spider_task_finished`` gets included), the framing and executor
protocol interfaces, the helpers a launcher or an inspector calls, and :class:`PluginError` for
a plugin to refuse with; the host's side (the manager, the default plugins, what a manager
registered) is :mod:`spider_core.plugin.manager`. The default plugins in ``plugins/`` import
only from here, ``spider_core``, ``spider_core.tdl`` and ``spider_core.sdk``, as any
third-party plugin can. Each name is imported on first use, so the executor, whose plugins
import from here, never pays for the user-facing models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Each name once, as `X as X`, served lazily by spider_core._lazy (see spider_core/__init__.py).
    # isort: off
    from spider_core.models import (
        ExecuteRequest as ExecuteRequest,
        ExecutorCrash as ExecutorCrash,
        InTaskFailure as InTaskFailure,
        Outcome as Outcome,
        PoolConfig as PoolConfig,
        Success as Success,
        outcome_name as outcome_name,
        Timeout as Timeout,
    )
    from spider_core.plugin.spec import hookimpl as hookimpl
    from spider_core.plugin.types import (
        PluginError as PluginError,
        ExecutorHandle as ExecutorHandle,
        TASK_PACKAGE_GROUP as TASK_PACKAGE_GROUP,
        ExitReason as ExitReason,
        InstalledPackage as InstalledPackage,
        LaunchSpec as LaunchSpec,
        PackageInfo as PackageInfo,
        PackageOrigin as PackageOrigin,
        PackageSource as PackageSource,
        PoolView as PoolView,
        RespawnDecision as RespawnDecision,
        RespawnState as RespawnState,
        SpawnReason as SpawnReason,
        Spawner as Spawner,
        TaskPackage as TaskPackage,
    )
    from spider_core.protocol import (
        CORE_PROTOCOL as CORE_PROTOCOL,
        CoreProtocol as CoreProtocol,
        ENV_FORK_SERVER as ENV_FORK_SERVER,
        ENV_PACKAGE_DIR as ENV_PACKAGE_DIR,
        ExecutorProtocol as ExecutorProtocol,
        Frame as Frame,
        FrameDecoder as FrameDecoder,
        Framing as Framing,
        FramingError as FramingError,
        LengthDelimitedDecoder as LengthDelimitedDecoder,
        ProtocolError as ProtocolError,
        die_with_parent as die_with_parent,
        execute_fields as execute_fields,
        execute_primitive as execute_primitive,
    )
    # isort: on
else:
    from spider_core._lazy import attach

    __getattr__, __dir__ = attach(__name__)
