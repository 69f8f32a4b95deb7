"""The executor process: ``python -m spider_core.executor`` (``spider-task-executor``).

It reads framed requests from its protocol channel, runs one task at a time and answers each
with a framed result. At start it moves the protocol off fds 0 and 1 onto private descriptors
and points fd 1 at stderr, so whatever a task prints only adds log lines. It dies with its
parent and exits 0 on ``Shutdown`` or end of input; an undecodable request is logged and makes
it exit with :data:`~spider_core.protocol.EXIT_PROTOCOL_ERROR`, which the pool treats as a
crash. What it reads, writes, expects in its environment and exits with is defined in
:mod:`spider_core.protocol`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import select
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spider_core.errors import SoftTimeout
from spider_core.plugin.manager import PluginError, PluginSettings, SpiderPluginManager, get_plugin_manager
from spider_core.plugin.types import PackageSource, TaskPackage
from spider_core.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    ENV_FORK_SERVER,
    ENV_INSTALLED_PACKAGES,
    ENV_LOG_LEVEL,
    ENV_MAX_FRAME_SIZE,
    ENV_PACKAGE_DIR,
    ENV_SPIN_US,
    EXIT_OK,
    EXIT_PROTOCOL_ERROR,
    EXIT_SETUP_ERROR,
    Frame,
    FrameDecoder,
    Framing,
    FramingError,
    ProtocolError,
    Ready,
    Shutdown,
    decode_request,
    die_with_parent,
    frame_size,
    message_to_primitive,
    read_into,
    result_primitive,
    widen_pipe,
    write_all,
)
from spider_core.spin import AdaptiveSpin
from spider_core.tdl.errors import ExecutorError, InvalidLibrary, TaskError, TdlError, TdlErrorKind
from spider_core.tdl.names import InvalidPackageName, validate_package_name
from spider_core.tdl.version import HOST_VERSION

if TYPE_CHECKING:
    import logging

#: ``logging``'s level numbers and names, without importing it (see :func:`_setup_logging`).
_LEVELS = {"CRITICAL": 50, "FATAL": 50, "ERROR": 40, "WARN": 30, "WARNING": 30, "INFO": 20, "DEBUG": 10, "NOTSET": 0}
_LEVEL_NAMES = {50: "critical", 40: "error", 30: "warning", 20: "info", 10: "debug", 0: "notset"}
_DEBUG, _INFO, _ERROR = 10, 20, 40


def _json_line(level: int, event: str, fields: dict[str, Any]) -> str:
    line = {"ts": round(time.time(), 6), "level": _LEVEL_NAMES.get(level, f"level {level}"), "event": event}
    line.update(fields)
    return json.dumps(line, default=str)


def _log(event: str, level: int = _INFO, **fields: Any) -> None:
    """One event line on stderr: written directly, since one is written per task. Best
    effort: a task may have closed fd 2."""
    if level >= _log_threshold:
        with contextlib.suppress(OSError):
            os.write(2, (_json_line(level, event, fields) + "\n").encode())


_log_threshold = _INFO
#: Whether the root logger writes JSON lines to stderr yet (:func:`_setup_logging`).
_logging_ready = False


def _setup_logging() -> None:
    """Send ``logging`` records (of plugins, packages and this module's error paths) to
    stderr as JSON lines, at the executor's level.

    ``logging`` costs a few milliseconds to import, and a native package never uses it, so it
    is set up only once something may log: at start if plugins other than the defaults (or
    hook tracing) are on, when a plugin or a package imported it, before a package of another
    kind than ``"native"`` loads, and on an error path.
    """
    global _logging_ready
    if _logging_ready:
        return
    import logging

    class JsonLineFormatter(logging.Formatter):
        """Plugins' and packages' ``logging`` records, in the same JSON-line shape as events."""

        def format(self, record: logging.LogRecord) -> str:
            fields = dict(getattr(record, "fields", {}))
            if record.exc_info:
                fields["traceback"] = self.formatException(record.exc_info)
            return _json_line(record.levelno, record.getMessage(), fields)

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_log_threshold)
    _logging_ready = True


def _setup_logging_if_imported() -> None:
    if not _logging_ready and "logging" in sys.modules:
        _setup_logging()


def _logger() -> logging.Logger:
    """The executor's logger, for error paths (with ``logging`` set up)."""
    _setup_logging()
    import logging

    return logging.getLogger("spider_core.executor")


#: Protocol descriptors go at or above this number, out of the way of tasks that open files
#: or clean up low descriptors (``os.closerange(3, 64)``).
_PROTOCOL_FD_FLOOR = 200


def _move_high(fd: int) -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    floor = max(3, min(_PROTOCOL_FD_FLOOR, soft - 16))
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)


def _take_protocol_fds() -> tuple[int, int]:
    """Move the protocol to private, high, close-on-exec descriptors; fd 0 becomes
    /dev/null and fd 1 stderr, so whatever a task prints only adds log lines."""
    in_fd, out_fd = _move_high(0), _move_high(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a TextIOWrapper; typeshed says TextIO
    return in_fd, out_fd


class _Channel:
    """Guards the protocol descriptors against what a task does to the process."""

    def __init__(self, in_fd: int, out_fd: int) -> None:
        self.forked = False
        self.fds = (in_fd, out_fd)
        self.out_fd = out_fd
        self.identity = self._identity(out_fd)
        # A task that forks (without exec) must not leave a second reader and writer.
        os.register_at_fork(after_in_child=self._close_in_child)

    @staticmethod
    def _identity(fd: int) -> tuple[int, int] | None:
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _close_in_child(self) -> None:
        self.forked = True
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def problem(self) -> str | None:
        """Why the channel can no longer be trusted after a task ran, if it cannot. (Only the
        reply side is checked per task: a replaced request side yields garbage, which is
        already a protocol error.)"""
        if self.forked:
            return "forked"
        try:
            st = os.fstat(self.out_fd)
        except OSError:
            return _REPLACED
        if (st.st_dev, st.st_ino) != self.identity:
            return _REPLACED
        return None


_REPLACED = "a task closed or replaced the executor's protocol descriptors"


class _Input:
    """The request channel. With ``spin_us``, a read first polls for up to that long before
    it blocks, as an :class:`~spider_core.spin.AdaptiveSpin` allows: a pool that sends
    calls back to back then finds the executor awake (a cross-CPU wake-up costs far more than
    the spin on some virtual machines), and one that pauses costs no spinning. Each empty
    poll yields the CPU, which the pool may be waiting for when the scheduler put both on one
    CPU."""

    def __init__(self, fd: int, spin_us: int) -> None:
        self.fd = fd
        self.spin = AdaptiveSpin(spin_us) if spin_us else None
        if self.spin is not None:
            os.set_blocking(fd, False)
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN)

    def read_into(self, decoder: FrameDecoder) -> int:
        """Read the next bytes of the request channel into ``decoder``; 0 at end of input."""
        spin = self.spin
        if spin is None:
            return read_into(self.fd, decoder)
        budget = spin.budget()
        if budget:
            deadline = time.perf_counter_ns() + budget
            while True:
                try:
                    count = read_into(self.fd, decoder)
                except BlockingIOError:
                    if time.perf_counter_ns() > deadline:
                        spin.answered(False)
                        break
                    os.sched_yield()
                    continue
                spin.answered(True)
                return count
        while True:
            self._poller.poll()
            try:
                return read_into(self.fd, decoder)
            except BlockingIOError:
                continue


class _SoftTimer:
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


class _Output:
    """The reply channel: writes whole frames, after widening the pipe for one larger than it
    holds (:func:`~spider_core.protocol.widen_pipe`)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pipe_size = 64 * 1024  # a fresh pipe's

    def write(self, frame: Frame) -> None:
        size = frame_size(frame)
        if size > self.pipe_size:
            self.pipe_size = widen_pipe(self.fd, size)
        write_all(self.fd, frame)


class Executor:
    """Resolves, loads and runs packages for the requests of one protocol channel."""

    def __init__(self, pm: SpiderPluginManager, package_dir: Path | None, installed_packages: bool = True) -> None:
        self.pm = pm
        self.package_dir = package_dir
        self.installed_packages = installed_packages
        self.packages: dict[str, TaskPackage] = {}
        self.soft_timer = _SoftTimer()

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
        _setup_logging_if_imported()
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
                _setup_logging()
            self.pm.require("spider_load_package")
            package: TaskPackage | None = self.pm.hook.spider_load_package(source=source)
        except (ExecutorError, PluginError) as e:
            if isinstance(e, PluginError):
                raise InvalidLibrary(str(e)) from None
            raise
        except Exception as e:
            _logger().exception("plugin failure", extra={"fields": {"package": name}})
            raise InvalidLibrary(
                f"a plugin failed while loading package {name!r}: {type(e).__name__}: {e}"
            ) from None
        finally:
            _setup_logging_if_imported()  # what the package imported may log from its tasks
        if package is None:
            raise InvalidLibrary(
                f"no plugin can load package {name!r} of kind {source.kind!r} at {source.location}"
            )
        if package.name != name:
            raise InvalidLibrary(
                f"{source.location} declares package name {package.name!r} but was requested as {name!r}"
            )
        _log("package loaded", package=name, kind=package.kind, location=str(source.location))
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
            _logger().exception("task raised", extra={"fields": {"package": package_name, "task": task}})
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


def _encode_result(framing: Framing, seq: int, ok: bool, payload: bytes | memoryview, elapsed_us: int) -> Frame:
    try:
        return framing.encode(result_primitive(seq, ok, payload, elapsed_us))
    except FramingError as e:
        error = TaskError(TdlError(TdlErrorKind.SerializationError, f"cannot send the task's outputs: {e}"))
        _log("result too large", _ERROR, seq=seq, error=str(e))
        return framing.encode(result_primitive(seq, False, error.encode(), elapsed_us))


def serve(channel: _Input, output: _Output, executor: Executor, framing: Framing, guard: _Channel) -> int:
    """Answer requests until ``Shutdown`` or end of input; return the exit status."""
    decoder = framing.decoder()
    ready = Ready(pid=os.getpid(), abi_version=str(HOST_VERSION))
    output.write(framing.encode(message_to_primitive(ready)))
    debug = _log_threshold <= _DEBUG
    while True:
        try:
            message = decoder.next_message()
        except FramingError as e:
            _log("bad request", _ERROR, error=str(e))
            return EXIT_PROTOCOL_ERROR
        if message is None:
            if not channel.read_into(decoder):
                if decoder.pending():
                    _log("truncated request", _ERROR, pending_bytes=decoder.pending())
                    return EXIT_PROTOCOL_ERROR
                _log("exit", reason="end of input")
                return EXIT_OK
            continue
        try:
            request = decode_request(message)
        except ProtocolError as e:
            _log("bad request", _ERROR, error=str(e))
            return EXIT_PROTOCOL_ERROR
        if request.__class__ is Shutdown:
            _log("exit", reason="shutdown")
            return EXIT_OK
        # not Shutdown: the fields of an Execute (mypy does not narrow on __class__)
        seq, package, task, raw_ctx, raw_inputs, soft_timeout_us = request  # type: ignore[misc]
        ok, payload, elapsed_us = executor.execute(package, task, raw_ctx, raw_inputs, soft_timeout_us)
        problem = guard.problem()
        if problem is not None:
            if problem == "forked":
                os._exit(EXIT_OK)  # a forked copy of the executor returned from the task: vanish
            _log("protocol channel lost", _ERROR, error=problem, package=package, task=task)
            return EXIT_PROTOCOL_ERROR
        output.write(_encode_result(framing, seq, ok, payload, elapsed_us))
        if debug:
            # A line per task costs the pool a read and a write per call, hence debug level.
            # Logged after the reply, so the pool is woken by the result, not by this line.
            _log("task done", _DEBUG, seq=seq, package=package, task=task, ok=ok, elapsed_us=elapsed_us)


def _read_log_level() -> None:
    global _log_threshold
    name = os.environ.get(ENV_LOG_LEVEL, "INFO").upper()
    _log_threshold = _LEVELS.get(name, _INFO)


def _setup() -> tuple[SpiderPluginManager, Framing] | int:
    """The plugin manager and framing this executor (or fork server) works with; the exit
    status if they cannot be set up."""
    try:
        settings = PluginSettings.from_env()
        if settings.trace or settings.plugins is None or not all(r.default for r in settings.plugins):
            _setup_logging()  # hook traces, and plugins other than the defaults, may log from the start
        pm = get_plugin_manager(settings)
        _setup_logging_if_imported()
        max_frame_size = int(os.environ.get(ENV_MAX_FRAME_SIZE) or DEFAULT_MAX_FRAME_SIZE)
        framing = pm.call_required("spider_framing", max_frame_size=max_frame_size, environment=dict(os.environ))
    except (PluginError, ValueError) as e:  # ValueError: a malformed setting
        _log("exit", _ERROR, reason="setup failed", error=str(e))
        return EXIT_SETUP_ERROR
    return pm, framing


def main() -> int:
    control_fd = os.environ.pop(ENV_FORK_SERVER, None)
    if control_fd is not None:  # a fork server: set up once, then each fork is an executor
        die_with_parent()
        _read_log_level()
        setup = _setup()
        if isinstance(setup, int):
            return setup
        from spider_core.executor.forkserver import serve_forks

        serve_forks(int(control_fd))  # returns in each forked executor
    in_fd, out_fd = _take_protocol_fds()
    die_with_parent()
    _read_log_level()
    _log("start", pid=os.getpid(), abi_version=str(HOST_VERSION), python=sys.version.split()[0])
    if control_fd is None:
        setup = _setup()
    if isinstance(setup, int):
        return setup
    pm, framing = setup
    package_dir = os.environ.get(ENV_PACKAGE_DIR)
    installed = os.environ.get(ENV_INSTALLED_PACKAGES, "1") != "0"
    executor = Executor(pm, Path(package_dir) if package_dir else None, installed)
    try:
        spin_us = int(os.environ.get(ENV_SPIN_US) or 0)
        return serve(_Input(in_fd, spin_us), _Output(out_fd), executor, framing, _Channel(in_fd, out_fd))
    except BrokenPipeError:
        _log("exit", reason="protocol channel closed")
        return EXIT_OK
