"""Running tasks in the executor: each package resolved and loaded through the plugin hooks on
first use, each task run with its soft timeout, each outcome turned into the reply's payload.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from spider_core.executor import logs
from spider_core.plugin.manager import PluginError, SpiderPluginManager
from spider_core.plugin.types import PackageSource, TaskPackage
from spider_core.protocol import ENV_PACKAGE_DIR
from spider_core.tdl.errors import ExecutorError, InvalidLibrary, TaskError, TdlError, TdlErrorKind
from spider_core.tdl.names import InvalidPackageName, validate_package_name
from spider_core.tdl.timeout import SoftTimeout


class SoftTimer:
    """Raises :class:`SoftTimeout` inside an interruptible task at its soft deadline, from
    ``SIGALRM``. Its handler is installed on first use, so native packages that use alarms
    themselves are left alone unless a call asks for a soft timeout on a Python task."""

    def __init__(self) -> None:
        self.armed = False
        self.seconds = 0.0
        self._installed = False

    def arm(self, soft_timeout_us: int) -> None:
        if not self._installed:
            signal.signal(signal.SIGALRM, self._fire)
            self._installed = True
        self.seconds = soft_timeout_us / 1e6
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def disarm(self) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)

    def _fire(self, signum: int, frame: Any) -> None:
        if self.armed:  # a late alarm after the task returned is ignored
            self.armed = False
            raise SoftTimeout(self.seconds)


class Executor:
    """Resolves, loads and runs packages for the requests of one protocol channel."""

    def __init__(self, pm: SpiderPluginManager, package_dir: Path | None, installed_packages: bool = True) -> None:
        self.pm = pm
        self.package_dir = package_dir
        self.installed_packages = installed_packages
        self.packages: dict[str, TaskPackage] = {}
        self.soft_timer = SoftTimer()

    def package(self, name: str) -> TaskPackage:
        """The loaded package ``name``, resolving and loading it on first use."""
        package = self.packages.get(name)
        if package is None:
            package = self.packages[name] = self._load(name)
        return package

    def _load(self, name: str) -> TaskPackage:
        try:
            validate_package_name(name)
        except InvalidPackageName as e:
            raise InvalidLibrary(str(e)) from None
        if self.package_dir is None and not self.installed_packages:
            raise InvalidLibrary(
                f"cannot locate package {name!r}: {ENV_PACKAGE_DIR} is not set and installed packages are off"
            )
        logs.setup_logging_if_imported()
        try:
            self.pm.require("spider_resolve_package")
            source = self.pm.hook.spider_resolve_package(
                package=name, package_dir=self.package_dir, installed_packages=self.installed_packages
            )
            if source is None:
                raise InvalidLibrary(self.pm.no_such_package(name, self.package_dir, self.installed_packages))
            if isinstance(source, Path):
                source = PackageSource(package=name, kind="native", location=source)
            if source.kind != "native":  # Python code may log while it loads
                logs.setup_logging()
            self.pm.require("spider_load_package")
            package: TaskPackage | None = self.pm.hook.spider_load_package(source=source)
        except (ExecutorError, PluginError) as e:
            if isinstance(e, PluginError):
                raise InvalidLibrary(str(e)) from None
            raise
        except Exception as e:
            logs.logger().exception("plugin failure", extra={"fields": {"package": name}})
            raise InvalidLibrary(
                f"a plugin failed while loading package {name!r}: {type(e).__name__}: {e}"
            ) from None
        finally:
            logs.setup_logging_if_imported()  # what the package imported may log from its tasks
        if package is None:
            raise InvalidLibrary(
                f"no plugin can load package {name!r} of kind {source.kind!r} at {source.location}"
            )
        if package.name != name:
            raise InvalidLibrary(
                f"{source.location} declares package name {package.name!r} but was requested as {name!r}"
            )
        logs.log("package loaded", package=name, kind=package.kind, location=str(source.location))
        return package

    def execute(
        self, package_name: str, task: str, raw_ctx: bytes, raw_inputs: bytes, soft_timeout_us: int = 0
    ) -> tuple[bool, bytes | memoryview, int]:
        """Run one task: ``(ok, payload, elapsed_us)``, the payload being the outputs or an
        encoded ``ExecutorError``. ``elapsed_us`` covers the package call only. A soft timeout
        applies to packages that declare ``interruptible = True``."""
        start = 0
        try:
            package = self.package(package_name)
            if (raw_inputs.__class__ is not bytes or raw_ctx.__class__ is not bytes) and not getattr(
                package, "accepts_buffers", False
            ):  # fields in shared memory, for a package that wants bytes
                raw_ctx, raw_inputs = bytes(raw_ctx), bytes(raw_inputs)
            if soft_timeout_us and getattr(package, "interruptible", False):
                return self._execute_interruptible(package, task, raw_ctx, raw_inputs, soft_timeout_us)
            start = time.perf_counter_ns()
            outputs = package.execute(task, raw_ctx, raw_inputs)
            return True, outputs, (time.perf_counter_ns() - start) // 1000
        except ExecutorError as e:
            elapsed_us = _since(start)
            return False, e.encode(), elapsed_us
        except Exception as e:
            elapsed_us = _since(start)
            logs.logger().exception("task raised", extra={"fields": {"package": package_name, "task": task}})
            error = TaskError(TdlError(TdlErrorKind.ExecutionError, f"{type(e).__name__}: {e}"))
            return False, error.encode(), elapsed_us


    def _execute_interruptible(
        self, package: TaskPackage, task: str, raw_ctx: bytes, raw_inputs: bytes, soft_timeout_us: int
    ) -> tuple[bool, bytes | memoryview, int]:
        start = time.perf_counter_ns()
        try:
            self.soft_timer.arm(soft_timeout_us)
            try:
                outputs = package.execute(task, raw_ctx, raw_inputs)
            finally:
                self.soft_timer.disarm()
        except ExecutorError as e:
            return False, e.encode(), _since(start)
        except SoftTimeout as e:  # fired after the package returned, before the alarm was off
            error = TaskError(TdlError(TdlErrorKind.ExecutionError, f"SoftTimeout: {e}"))
            return False, error.encode(), _since(start)
        return True, outputs, _since(start)


def _since(start_ns: int) -> int:
    """Microseconds since ``start_ns``; 0 if the task never started."""
    return (time.perf_counter_ns() - start_ns) // 1000 if start_ns else 0
