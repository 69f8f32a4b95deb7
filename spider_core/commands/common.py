"""What spider's commands share: the exit status table, :class:`CliError` (one line, an exit
status), the parser that reports usage errors on one line, the pool options and the
``PoolConfig`` they make, the metrics server, signal handling and the log formatter.

Every error a user can cause is printed as one ``spider: error: ...`` line, never a
traceback. Exit statuses are the same for every command (see ``EXIT_STATUSES``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from spider_core.argtypes import byte_count, directory, path, positive_seconds
from spider_core.commands.reporting import EXIT_INTERNAL, EXIT_USAGE, parse_json

EXIT_STATUSES = """\
exit status:
  0  success
  1  the task failed (for build-package: the build failed; for batch: some request did not succeed;
     for soak: an invariant broke)
  2  usage error or bad input (bad JSON argument, bad package name, missing package directory or
     task, a package that is missing or cannot be loaded: the InTaskFailure with InvalidLibrary
     that batch records as a task_failure)
  3  the task hit its hard timeout
  4  the executor crashed
  5  internal error (the pool could not serve the call)
  129  ended by SIGHUP
  130  ended by SIGINT (Ctrl-C)
  143  ended by SIGTERM
       (on these three the running tasks are cancelled and every executor is reaped; batch keeps
       every line it wrote and writes none for the cancelled requests)
"""

DEFAULT_TIMEOUT = 60.0


class CliError(Exception):
    """An error the CLI prints as one line, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


METRICS_HELP = ("serve the pool's Prometheus metrics on http://127.0.0.1:PORT/metrics while it runs "
                "(needs the metrics extra: pip install 'spider-core-pool[metrics]')")


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("spider").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_USAGE, f"spider: error: {where}{message} (see `{self.prog} --help`)\n")


def add_command(
    commands: Any, name: str, help: str, description: str | None = None
) -> argparse.ArgumentParser:
    """Add command ``name`` to ``commands`` (the top parser's subparsers): its help ends with
    the exit statuses, and it takes ``-v`` too."""
    sub: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description or help,
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # -v is accepted after the command too; SUPPRESS keeps the value given before it.
    sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                     help="also show the pool's warnings")
    return sub


def pool_options(p: argparse.ArgumentParser) -> None:
    """The options of a command that runs a pool: ``spider run`` and ``spider batch``."""
    p.add_argument("--package-dir", type=directory, metavar="DIR",
                   help="task package directory (default: $SPIDER_TDL_PACKAGE_DIR)")
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"hard timeout per task (default: {DEFAULT_TIMEOUT:g})")
    p.add_argument("--log-dir", type=directory, metavar="DIR",
                   help="write each executor's log to DIR/spider-cli-<id>.log (default: discard)")
    p.add_argument("--max-frame-size", type=byte_count, metavar="BYTES",
                   help="largest message to or from an executor, such as 128M: larger inputs or outputs "
                        "fail the request (default: 64M)")
    p.add_argument("--executor", type=path, metavar="PATH",
                   help="run spider's own Rust executor (the spider-task-executor binary at PATH) instead of "
                        "spider-core's, speaking its protocol (spider-rust; its frames hold at most 8M)")
    start_method_option(p)


def start_method_option(p: argparse.ArgumentParser) -> None:
    from spider_core.models import START_METHODS

    p.add_argument("--start-method", choices=START_METHODS, default="exec",
                   help="how executors start: exec, a new process each; forkserver, forked by one server per "
                        "pool (PoolConfig.start_method; default: %(default)s)")


def package_dir_of(args: argparse.Namespace, *, here: bool = True, optional: bool = False) -> Path | None:
    """``--package-dir``, else ``$SPIDER_TDL_PACKAGE_DIR``; it must be a directory (``here``:
    on this machine; otherwise it is the path on the Dask workers, which check it). With
    neither: None if ``optional`` (installed packages only), else an error."""
    value = args.package_dir or os.environ.get("SPIDER_TDL_PACKAGE_DIR")
    if not value and optional:
        return None
    if not value:
        raise CliError("no package directory: pass --package-dir DIR or set SPIDER_TDL_PACKAGE_DIR")
    path = Path(value)
    if here and not path.is_dir():
        raise CliError(f"package directory {path} does not exist or is not a directory")
    return path


@contextlib.contextmanager
def metrics_server(port: int | None) -> Iterator[None]:
    """Serve the Prometheus metrics on http://127.0.0.1:PORT/metrics while the block runs
    (``--metrics-port``; nothing with None). The pool's side is the ``spider_prometheus``
    plugin, switched on by ``PoolConfig.metrics``."""
    if port is None:
        yield
        return
    try:
        from prometheus_client import start_http_server
    except ImportError:
        raise CliError("--metrics-port needs prometheus_client: pip install 'spider-core-pool[metrics]'") from None
    try:
        server, thread = start_http_server(port, addr="127.0.0.1")
    except OSError as e:
        raise CliError(f"cannot serve metrics on 127.0.0.1:{port}: {os_reason(e)}") from None
    print(f"spider: metrics on http://127.0.0.1:{server.server_port}/metrics", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def plugin_failed(doing: str, error: Exception) -> CliError:
    """The error for a plugin hook that raised: an internal error, with how to get around it."""
    return CliError(
        f"a plugin failed while {doing}: {type(error).__name__}: {error} "
        "(see `spider plugins`; SPIDER_DISABLE_PLUGINS=NAME disables one)",
        EXIT_INTERNAL,
    )


def check_package(pm: Any, package: str, package_dir: Path | None) -> None:
    """Check ``package``'s name, and that the plugins can look for it (a resolver that raises
    is a plugin's bug, exit 5), before starting the pool. Whether the package is there and
    loads is the pool's answer: an ``InTaskFailure`` with ``InvalidLibrary`` (or another of
    ``PACKAGE_ERRORS``), reported as ``spider batch`` and the API report it."""
    from spider_core.tdl import InvalidPackageName, validate_package_name

    try:
        validate_package_name(package)
    except InvalidPackageName as e:
        raise CliError(str(e)) from None
    from spider_core.tdl import ExecutorError

    pm.require("spider_resolve_package")  # PluginError: every resolver is blocked (exit 5)
    try:
        pm.hook.spider_resolve_package(package=package, package_dir=package_dir, installed_packages=True)
    except (ExecutorError, OSError):
        pass  # the executor meets it too, and its InvalidLibrary says why
    except Exception as e:  # a plugin's bug
        raise plugin_failed(f"looking for package {package!r}", e) from None


def os_reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e)


def log_dir_of(args: argparse.Namespace) -> Path | None:
    """``--log-dir``, created and checked for writing (the pool would silently fall back)."""
    if args.log_dir is None:
        return None
    path = Path(args.log_dir)
    if path.exists() and not path.is_dir():
        raise CliError(f"cannot write logs to {path}: it is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".spider-write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise CliError(f"cannot write logs to {path}: {os_reason(e)}") from None
    return path


def executor_of(args: argparse.Namespace, *, here: bool = True) -> Path | None:
    """``--executor``: spider's ``spider-task-executor`` binary, which must be an executable
    file (``here``: on this machine; otherwise on the Dask workers, which find out)."""
    if args.executor is None:
        return None
    path = Path(args.executor)
    if here:
        if not path.is_file():
            raise CliError(f"--executor {path}: no such file; give the path of spider's spider-task-executor binary")
        if not os.access(path, os.X_OK):
            raise CliError(f"--executor {path}: the file is not executable (chmod +x {path})")
    return path.absolute()


def make_config(args: argparse.Namespace, package_dir: Path | None, *, here: bool = True, **extra: Any) -> Any:
    """The ``PoolConfig`` of the pool options (``--log-dir``, ``--executor``, ...) and ``extra``."""
    from spider_core.models import PoolConfig

    if args.max_frame_size is not None:
        extra["max_frame_size"] = args.max_frame_size
    extra["start_method"] = args.start_method
    executor = executor_of(args, here=here)
    if executor is not None and args.start_method == "forkserver":
        raise CliError("--start-method forkserver needs spider-core's own executor, and --executor runs spider's")
    if executor is not None:  # spider's Rust executor speaks its own protocol, which a plugin owns
        extra["executor_command"] = (str(executor),)
        extra["protocol"] = executor_protocol()
    return PoolConfig(package_dir=package_dir, log_dir=log_dir_of(args), em_id="spider-cli", **extra)


def executor_protocol() -> str:
    """The protocol of ``--executor``, spider's own executor: the first one a plugin names
    (``spider_protocol_names``) besides spider-core's own, the default plugins' before any
    installed one (the default ``spider_rustexec`` names it).

    :raises CliError: no plugin names one (exit 5, as the pool would fail to start).
    """
    from spider_core.plugin.manager import get_plugin_manager
    from spider_core.protocol import CORE_PROTOCOL

    pm = get_plugin_manager()
    try:
        found = pm.hook.spider_protocol_names()
    except Exception as e:  # a plugin's bug
        raise plugin_failed("naming the protocols", e) from None
    # pluggy calls the plugins registered last first: the defaults' names come last
    names: list[str] = [name for names in reversed(found) for name in names or () if name != CORE_PROTOCOL]
    if not names:
        blocked = sorted(pm.settings.blocked)
        hint = f"; blocked plugins: {', '.join(blocked)}" if blocked else ""
        raise CliError(f"--executor needs a plugin that speaks spider's executor protocol, and none does{hint}",
                       EXIT_INTERNAL)
    return names[0]


def json_values(texts: Sequence[str], what: str) -> list[Any]:
    """Each of ``texts`` (command-line arguments) parsed as one JSON value.

    :raises CliError: one is not JSON, named as ``{what} {position}``.
    """
    values = []
    for position, text in enumerate(texts, start=1):
        try:
            values.append(parse_json(text))
        except ValueError as e:
            raise CliError(f"{what} {position} ({text[:40]!r}) is not a JSON value: {e}") from None
    return values


def vars_of(obj: Any) -> dict[str, Any]:
    """An attrs record's fields, as ``--json`` writes them."""
    import attrs

    return attrs.asdict(obj, recurse=False)


class LogFormatter(logging.Formatter):
    """``spider: LEVEL: logger: message``, one line: a traceback attached to a record (a plugin's
    hook that raised) is shown only with ``-v``."""

    def __init__(self, verbose: bool) -> None:
        super().__init__("spider: %(levelname)s: %(name)s: %(message)s")
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if self.verbose:
            return super().format(record)
        return " ".join(self.formatMessage(_with_message(record)).splitlines())


def _with_message(record: logging.LogRecord) -> logging.LogRecord:
    record.message = record.getMessage()
    return record


class Signals:
    """SIGTERM and SIGHUP end a command as SIGINT does: each is handed to SIGINT's handler
    (``asyncio.run``'s cancels the main task, so the pool reaps its executors and a batch
    cancels its running requests; Python's raises ``KeyboardInterrupt``), and
    :func:`~spider_core.commands.main.main` reports the signal that came. A signal ignored when spider starts (``nohup``) stays
    ignored."""

    HANDLED = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        for signum in self.HANDLED:
            try:
                if signal.getsignal(signum) is signal.SIG_DFL:
                    self._saved[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals stay as they are
                break
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is None:
            self.received = signum
        on_interrupt = signal.getsignal(signal.SIGINT)
        if not callable(on_interrupt):  # SIGINT is ignored, but this signal is not
            raise KeyboardInterrupt
        on_interrupt(signal.SIGINT, frame)

    def exit_status(self) -> int:
        """Print the one line for the interruption; its exit status (128 + the signal)."""
        signum = self.received or signal.SIGINT
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print("spider: interrupted" if signum == signal.SIGINT else "spider: terminated", file=sys.stderr)
        return 128 + signum
