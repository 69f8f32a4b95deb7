"""The ``spider`` command line.

Every error a user can cause is printed as one ``spider: error: ...`` line, never a
traceback. Exit statuses are the same for every command (see ``EXIT_STATUSES``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from spider_core.argtypes import fraction, port_number, positive_seconds, whole_number
from spider_core.plugin import PluginError
from spider_core.reporting import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_TASK_FAILURE,
    EXIT_USAGE,
    outcome_exit_code,
    outcome_record,
    outcome_summary,
    parse_json,
    print_table,
    to_json,
)

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


# -------------------------------------------------------------------------------------------
# helpers shared by the commands
# -------------------------------------------------------------------------------------------


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


def directory(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a directory")
    return Path(text)


def path(text: str) -> Path:
    """A path argument; an empty one is refused, not taken for the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no file")
    return Path(text)


def requests_path(text: str) -> Path | str:
    """``-`` (standard input) as it is; anything else a path (``./-`` is a file named ``-``)."""
    return text if text == "-" else path(text)


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("spider").strip()
        where = f"{command}: " if command else ""
        self.exit(EXIT_USAGE, f"spider: error: {where}{message} (see `{self.prog} --help`)\n")


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
        raise CliError(f"cannot serve metrics on 127.0.0.1:{port}: {_os_reason(e)}") from None
    print(f"spider: metrics on http://127.0.0.1:{server.server_port}/metrics", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


_BYTES = re.compile(r"([0-9]+)\s*(?:([KMG])(?:iB)?)?", re.IGNORECASE | re.ASCII)


def byte_count(text: str) -> int:
    """A size in bytes: a whole number, optionally with K, M or G (KiB, MiB, GiB: powers of 1024)."""
    match = _BYTES.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes (such as 134217728, 128M or 1G)")
    value = int(match[1]) << (10 * " KMG".index((match[2] or " ").upper()))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 byte")
    return value


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


def _os_reason(e: BaseException) -> str:
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
        raise CliError(f"cannot write logs to {path}: {_os_reason(e)}") from None
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
    from spider_core.models import PoolConfig

    if args.max_frame_size is not None:
        extra["max_frame_size"] = args.max_frame_size
    extra["start_method"] = args.start_method
    executor = executor_of(args, here=here)
    if executor is not None and args.start_method == "forkserver":
        raise CliError("--start-method forkserver needs spider-core's own executor, and --executor runs spider's")
    if executor is not None:  # spider's Rust executor speaks its own protocol (spider_rustexec)
        extra["executor_command"] = (str(executor),)
        extra["protocol"] = "spider-rust"
    return PoolConfig(package_dir=package_dir, log_dir=log_dir_of(args), em_id="spider-cli", **extra)


# -------------------------------------------------------------------------------------------
# commands
# -------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from spider_core.errors import BuildTaskContext, EncodeTaskInputs, InternalError, InvalidRequest
    from spider_core.models import ExecuteRequest
    from spider_core.pool import ProcessPool

    inputs = []
    for position, text in enumerate(args.args, start=1):
        try:
            inputs.append(parse_json(text))
        except ValueError as e:
            raise CliError(f"argument {position} ({text[:40]!r}) is not a JSON value: {e}") from None
    package_dir = package_dir_of(args, optional=True)  # none: installed packages only
    config = make_config(args, package_dir)

    async def run() -> Any:
        pool = ProcessPool(config)
        check_package(pool.pm, args.package, package_dir)
        async with pool:
            return await pool.execute(
                ExecuteRequest(package=args.package, task=args.task, inputs=inputs), hard_timeout=args.timeout
            )

    try:
        outcome = asyncio.run(run())
    except InternalError as e:
        bad_input = isinstance(e, InvalidRequest | EncodeTaskInputs | BuildTaskContext)
        if args.json:  # the same outcome names as spider batch's records
            outcome = "invalid_request" if bad_input else "internal_error"
            print(to_json({"outcome": outcome, "error": type(e).__name__, "message": str(e)}))
        raise CliError(str(e), EXIT_USAGE if bad_input else EXIT_INTERNAL) from None
    code = outcome_exit_code(outcome)
    if code == EXIT_TASK_FAILURE and _is_bad_arguments(outcome):
        code = EXIT_USAGE  # the task could not decode what was typed
    if args.json:
        print(to_json(outcome_record(outcome)))
    elif code == EXIT_OK:
        print(to_json(outcome.values))
    if code != EXIT_OK:
        print(f"spider: {args.package}/{args.task}: {outcome_summary(outcome)}", file=sys.stderr)
    return code


def _is_bad_arguments(outcome: Any) -> bool:
    from spider_core.tdl import TaskError, TdlErrorKind

    error = getattr(outcome, "error", None)
    return isinstance(error, TaskError) and error.error.kind is TdlErrorKind.DeserializationError


def dask_address(text: str) -> str:
    """``--dask``: a scheduler address, or ``local:N``."""
    from spider_core.batch import parse_dask_address

    try:
        parse_dask_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


METRICS_HELP = ("serve the pool's Prometheus metrics on http://127.0.0.1:PORT/metrics while it runs "
                "(needs the metrics extra: pip install 'spider-core-pool[metrics]')")


def cmd_batch(args: argparse.Namespace) -> int:
    from spider_core.batch import BatchError, parse_dask_address, run_batch
    from spider_core.errors import InternalError

    # With a running Dask scheduler, the package directory is the workers' (each checks it).
    remote = args.dask is not None and parse_dask_address(args.dask)[0] is not None
    package_dir = package_dir_of(args, here=not remote)
    if args.dask is not None:
        _import_dask(args.verbose)
        if args.metrics_port is not None:
            raise CliError("--metrics-port is for a local pool: with --dask the pools run on the Dask workers")
    metrics = args.metrics_port is not None
    try:
        with metrics_server(args.metrics_port):
            return run_batch(
                requests=args.requests,
                out=args.out,
                config=make_config(args, package_dir, here=not remote, slots=args.slots, metrics=metrics),
                default_timeout=args.timeout,
                resume=args.resume,
                strict=args.strict,
                progress=not args.quiet,
                dask=args.dask,
            )
    except BatchError as e:
        raise CliError(str(e), e.exit_code) from None
    except InternalError as e:
        raise CliError(str(e), EXIT_INTERNAL) from None


def _import_dask(verbose: bool) -> None:
    """Import Dask's ``distributed`` for ``--dask`` (a one-line error if it is missing) and
    keep its log lines (a worker it restarts, a connection it retries) to ``-v``: what matters
    to the run is in its results and its one-line errors. With ``-v`` Dask's warnings show."""
    from spider_core.batch import dask_import_error

    try:
        import distributed  # noqa: F401  (configures Dask's loggers, which are set here after it)
    except ImportError as e:
        raise CliError(dask_import_error(e)) from None
    families = ("distributed", "dask", "tornado")  # tornado: Dask's event loop library
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in families:
            logger.setLevel(logging.NOTSET)  # Dask gives some their own level (distributed.client)
    for name in families:
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.CRITICAL)


def cmd_demo(args: argparse.Namespace) -> int:
    from spider_core.build import BuildError
    from spider_core.demo import CacheError, run_demo

    try:
        return run_demo(cache_dir=args.cache_dir)
    except BuildError as e:
        raise CliError(f"cannot build the demo packages: {e}", EXIT_TASK_FAILURE) from None
    except CacheError as e:
        raise CliError(f"cannot use the package cache: {e}; pass --cache-dir DIR", EXIT_USAGE) from None


def cmd_packages(args: argparse.Namespace) -> int:
    from spider_core.plugin.manager import get_plugin_manager

    package_dir = package_dir_of(args, optional=True)  # none: installed packages only
    if package_dir is not None:
        package_dir = package_dir.absolute()  # every path printed in one form, native or Python
    pm = get_plugin_manager()
    try:
        found = pm.hook.spider_list_packages(package_dir=package_dir)
    except OSError as e:
        raise CliError(f"cannot read package directory {package_dir}: {_os_reason(e)}") from None
    except Exception as e:  # a plugin's bug
        raise plugin_failed("listing packages", e) from None
    infos = sorted(
        (info for infos in found for info in infos or ()),
        key=lambda i: (i.name, i.source != "directory", i.kind, i.distribution or ""),
    )
    if args.json:
        for info in infos:
            print(to_json({**vars_of(info), "location": str(info.location)}))
        return EXIT_OK
    if not infos:
        where = "installed" if package_dir is None else f"in {package_dir} or installed"
        print(f"no task packages {where}")
        return EXIT_OK
    in_directory = {info.name for info in infos if info.source == "directory" and not info.error}
    rows = [["NAME", "KIND", "SOURCE", "ABI", "STATUS", "PATH"]]
    for info in infos:
        if info.error:
            status = f"broken: {info.error}"
        elif info.compatible is False:
            status = "incompatible"
        elif info.source == "installed" and info.name in in_directory:
            status = "hidden by the package directory's copy"
        else:
            status = "ok"
        source = info.source  # an installed package's distribution and version say more
        if info.source == "installed" and info.distribution:
            source = f"{info.distribution} {info.version}"
        rows.append([info.name, info.kind, source, info.abi_version or "-", status, str(info.location)])
    print_table(rows)
    for info in infos:
        if info.tasks:
            print(f"\n{info.name} tasks{' (installed)' if info.source == 'installed' else ''}:")
            for task in info.tasks:
                print(f"  {task}")
    return EXIT_OK


def vars_of(obj: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(obj, recurse=False)


def cmd_plugins(args: argparse.Namespace) -> int:
    from spider_core.plugin.manager import ENV_DISABLE, get_plugin_manager

    pm = get_plugin_manager(tolerate_broken=True)  # the command that tells what is wrong must work
    infos = pm.plugin_infos()
    if args.json:
        for info in infos:
            print(to_json(vars_of(info)))
        return EXIT_OK
    rows = [["NAME", "DISTRIBUTION", "STATUS", "HOOKS"]]
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "-"
        status = f"broken: {info.error}" if info.status == "broken" else info.status
        rows.append([info.name, dist, status, ", ".join(info.hooks) or "-"])
    print_table(rows)
    broken = [info.name for info in infos if info.status == "broken"]
    if broken:
        print(f"\nthe other commands fail until each broken plugin is fixed or disabled: "
              f"{ENV_DISABLE}={','.join(broken)}")
    return EXIT_OK


def cmd_build_package(args: argparse.Namespace) -> int:
    from spider_core.build import BuildError, PackageSourceError, build_package

    if args.out is None and args.wheel is None:
        raise CliError("say what to build: --out DIR (a package directory), --wheel DIR (a wheel), or both")
    if args.wheel is None and (args.version is not None or args.dist_name is not None):
        raise CliError("--version and --dist-name describe a wheel: pass --wheel DIR too")
    try:
        if args.wheel is not None:
            build_wheel = _wheel_builder(args)  # bad wheel options fail before anything is built
        if args.out is not None:
            print(build_package(args.src, args.out, cc=args.cc))
        if args.wheel is not None:
            print(build_wheel())
    except PackageSourceError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except BuildError as e:
        raise CliError(str(e), EXIT_TASK_FAILURE) from None
    return EXIT_OK


def _wheel_builder(args: argparse.Namespace) -> Callable[[], Path]:
    """A function that builds the wheel ``--wheel``, ``--version`` and ``--dist-name`` ask for,
    once those are checked.

    :raises CliError: hatchling, which writes wheels, is not installed (exit 1).
    :raises PackageSourceError: a bad version or distribution name.
    """
    try:
        from spider_core import wheel
    except ImportError as e:
        raise CliError(
            f"--wheel needs hatchling, which writes the wheel ({e}): pip install 'spider-core-pool[wheel]'",
            EXIT_TASK_FAILURE,
        ) from None
    version = wheel.normalized_version(args.version if args.version is not None else "0.0.0")
    if args.dist_name is not None:
        wheel.module_name(args.dist_name)
    return lambda: wheel.build_wheel(args.src, args.wheel, version=version, dist_name=args.dist_name, cc=args.cc)




def cmd_soak(args: argparse.Namespace) -> int:
    from spider_core.errors import InternalError
    from spider_core.soak import ENV_INJECT, INJECTIONS, SoakError, run_soak, soak_package_dir

    if (args.package is None) != (args.task is None):
        raise CliError("--package and --task go together: name the package and the fault-free task to run")
    if args.inputs and args.package is None:
        raise CliError("--input is for the task of --package and --task")
    inputs = []
    for position, text in enumerate(args.inputs, start=1):
        try:
            inputs.append(parse_json(text))
        except ValueError as e:
            raise CliError(f"--input {position} ({text[:40]!r}) is not a JSON value: {e}") from None
    if args.package is not None:
        from spider_core.tdl import InvalidPackageName, validate_package_name

        try:
            validate_package_name(args.package)
        except InvalidPackageName as e:
            raise CliError(str(e)) from None
    if args.json is not None and not args.json.parent.is_dir():
        raise CliError(f"cannot write the summary to {args.json}: {args.json.parent} is not a directory")
    user_dir = args.package_dir or os.environ.get("SPIDER_TDL_PACKAGE_DIR")
    if user_dir is not None and not Path(user_dir).is_dir():
        raise CliError(f"package directory {user_dir} does not exist or is not a directory")
    if args.package is not None and user_dir is None:
        raise CliError(f"where is package {args.package!r}? pass --package-dir DIR or set SPIDER_TDL_PACKAGE_DIR")
    inject = os.environ.get(ENV_INJECT) or None  # for spider-core's own tests only
    if inject is not None and inject not in INJECTIONS:
        raise CliError(f"{ENV_INJECT}={inject!r} is not one of {', '.join(INJECTIONS)}")
    progress = None
    if sys.stderr.isatty():
        def progress(done: int, total: int) -> None:
            print(f"\rspider soak: {done}/{total} tasks", end="", file=sys.stderr, flush=True)

    try:
        with soak_package_dir(None if user_dir is None else Path(user_dir), args.cache_dir) as package_dir, \
                metrics_server(args.metrics_port):
            summary = run_soak(
                package_dir, tasks=args.tasks, callers=args.callers, slots=args.slots, fault_rate=args.fault_rate,
                seed=args.seed, package=args.package, task=args.task, inputs=inputs, timeout=args.timeout,
                start_method=args.start_method, progress=progress, metrics=args.metrics_port is not None,
                _inject=inject,
            )
    except SoakError as e:
        raise CliError(str(e)) from None
    except InternalError as e:
        raise CliError(str(e), EXIT_INTERNAL) from None
    finally:
        if progress is not None:
            print(file=sys.stderr)
    replay = (f"spider soak --tasks {summary.tasks} --callers {summary.callers} --slots {summary.slots} "
              f"--fault-rate {summary.fault_rate:g} --seed {summary.seed}")
    if args.start_method != "exec":
        replay += f" --start-method {args.start_method}"
    if args.package is not None:
        import shlex

        replay += f" --package {args.package} --task {shlex.quote(args.task)}"
        replay += "".join(f" --input {shlex.quote(text)}" for text in args.inputs)
    print(replay)  # the command that replays this run's plan
    summary.print()
    if args.json is not None:
        try:
            args.json.write_text(to_json(summary.to_primitive()) + "\n")
        except OSError as e:
            raise CliError(f"cannot write the summary to {args.json}: {_os_reason(e)}", EXIT_INTERNAL) from None
    if not summary.ok:
        broke = "; ".join(summary.failures)
        count = f"{len(summary.failures)} invariant{'s' if len(summary.failures) > 1 else ''}"
        print(f"spider: soak: {count} broke: {broke}", file=sys.stderr)
        return EXIT_TASK_FAILURE
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from spider_core.bench import BenchError, run_from_args

    try:
        return run_from_args(args)
    except BenchError as e:
        raise CliError(str(e)) from None


# -------------------------------------------------------------------------------------------
# the parser
# -------------------------------------------------------------------------------------------


def _version() -> str:
    from spider_core.plugin.manager import own_version

    return own_version() or "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="spider",
        description="Run native and Python task packages in supervised executor processes.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also show the pool's warnings")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        sub = commands.add_parser(
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

    run = command("run", "run one task and print its outputs as a JSON array",
                  "Run TASK of PACKAGE with ARGs (each a JSON value: 10, '\"text\"', '[1,2]') and print "
                  "its outputs as one JSON array.")
    run.add_argument("package", metavar="PACKAGE")
    run.add_argument("task", metavar="TASK")
    run.add_argument("args", nargs="*", default=[], metavar="ARG", help="one JSON value per task parameter")
    pool_options(run)
    run.add_argument("--json", action="store_true", help="print a machine-readable outcome record instead")
    run.set_defaults(func=cmd_run)

    batch = command("batch", "run a JSON-lines file of requests through one pool",
                    'Each line of REQUESTS is {"id": ..., "package": ..., "task": ..., "inputs": [...], '
                    '"timeout": ...}; one result line per request is appended to --out as it completes.')
    batch.add_argument("requests", type=requests_path, metavar="REQUESTS.jsonl",
                       help="one JSON request per line; - reads them from standard input as they come")
    batch.add_argument("--out", type=path, required=True, metavar="RESULTS.jsonl")
    pool_options(batch)
    batch.add_argument("--resume", action="store_true", help="skip requests whose id already has a result in --out")
    batch.add_argument("--slots", type=whole_number, default=1, metavar="N",
                       help="run up to N requests at once, each in its own executor; their result lines "
                            "come in completion order (default: 1, in request order)")
    batch.add_argument("--dask", type=dask_address, metavar="ADDRESS",
                       help="run the requests on a Dask cluster: the scheduler's ADDRESS (tcp://host:8786), or "
                            "local:N to start N local worker processes; --slots is then per worker, and "
                            "--package-dir must exist on every worker (pip install 'spider-core-pool[dask]')")
    batch.add_argument("--strict", action="store_true", help="stop at the first malformed line")
    batch.add_argument("--quiet", action="store_true", help="no progress on stderr")
    batch.add_argument("--metrics-port", type=port_number, metavar="PORT", help=METRICS_HELP)
    batch.set_defaults(func=cmd_batch)

    demo = command("demo", "build the bundled packages and show what the pool does with each outcome")
    demo.add_argument("--cache-dir", type=path, metavar="DIR",
                      help="where to build packages (default: $XDG_CACHE_HOME/spider-core or ~/.cache/spider-core)")
    demo.set_defaults(func=cmd_demo)

    packages = command("packages", "list the task packages in a package directory and the installed ones",
                       "List the task packages in the package directory and those installed with pip (found "
                       "by their entry point in the spider_core.task_packages group), each with its kind, "
                       "source, distribution and version, ABI version and status; a broken one is listed "
                       "as broken.")
    packages.add_argument("--package-dir", type=directory, metavar="DIR",
                          help="task package directory (default: $SPIDER_TDL_PACKAGE_DIR; none: installed "
                               "packages only)")
    packages.add_argument("--json", action="store_true",
                          help="one JSON record per package (name, kind, location, source, distribution, "
                               "version, abi_version, compatible, tasks, error)")
    packages.set_defaults(func=cmd_packages)

    plugins = command("plugins", "list the registered plugins and the hooks they implement")
    plugins.add_argument("--json", action="store_true", help="one JSON record per plugin")
    plugins.set_defaults(func=cmd_plugins)

    build = command("build-package", "compile a C task package into <out>/<name>/lib<name>.so, or a wheel",
                    "Compile SRC/*.c with $CC (default cc) against spider_tdl.h into OUT/<name>/lib<name>.so, "
                    "where <name> is SRC's directory name, and/or into a wheel in the --wheel directory that "
                    "pip installs and spider finds by its entry point (see the docs, Distributing task "
                    "packages).")
    build.add_argument("src", type=path, metavar="SRC", help="package source directory")
    build.add_argument("--out", type=path, metavar="DIR", help="package directory")
    build.add_argument("--wheel", type=path, metavar="DIR",
                       help="write a wheel (py3-none-linux_<arch>) holding the library into DIR "
                            "(needs hatchling: pip install 'spider-core-pool[wheel]')")
    build.add_argument("--version", metavar="V", help="the wheel's version (PEP 440; default: 0.0.0)")
    build.add_argument("--dist-name", metavar="NAME",
                       help="the wheel's distribution name (default: spider-task-<name>, '_' as '-'); "
                            "the library's module is this name with '_' (spider_task_<name>)")
    build.add_argument("--cc", help="C compiler command (default: $CC, then cc)")
    build.set_defaults(func=cmd_build_package)

    bench = command(
        "bench",
        "measure per-task overhead against other process pools",
        "Run no-op, echo and throughput tasks through spider-core and, interleaved in the same run, through "
        "ProcessPoolExecutor, multiprocessing.Pool, pebble, loky, billiard (pip install "
        "'spider-core-pool[bench]') and a raw pipe ping-pong; write a markdown report with "
        "percentiles and ratios.",
    )
    soak = command(
        "soak",
        "run many tasks with faults mixed in and check what the pool survives",
        "Run --tasks tasks from --callers concurrent callers over --slots executors; a --fault-rate share "
        "of them are faults (segfault, abort, exit, hard timeout, a call cancelled mid-task, stdout "
        "garbage, a large output, a task failure, an idle executor SIGKILLed from outside). Prints one "
        "table: outcomes expected and observed per kind, results lost, misattributed, open descriptors "
        "and child processes before and after, respawns, the slowest recovery, the longest queue wait. "
        "Exit status 0 only if every invariant held, 1 (naming it) if one broke.",
    )
    soak.add_argument("--tasks", type=whole_number, default=100_000, metavar="N", help="tasks to run (default: %(default)s)")
    soak.add_argument("--callers", type=whole_number, default=16, metavar="M",
                      help="concurrent callers, asyncio tasks sharing the pool (default: %(default)s)")
    soak.add_argument("--slots", type=whole_number, default=2, metavar="S", help="PoolConfig.slots (default: %(default)s)")
    soak.add_argument("--fault-rate", type=fraction, default=0.01, metavar="F",
                      help="share of the tasks that are faults, from 0 to 1 (default: %(default)s)")
    soak.add_argument("--seed", type=int, metavar="N", help="seeds the faults and the tokens (default: random, printed)")
    soak.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                      help=f"hard timeout of every task but the timeout faults (default: {DEFAULT_TIMEOUT:g})")
    soak.add_argument("--package-dir", type=directory, metavar="DIR",
                      help="task package directory (default: $SPIDER_TDL_PACKAGE_DIR; the bundled "
                           "integration_test_tasks is built into the cache if DIR has none)")
    soak.add_argument("--package", metavar="NAME", help="a package of yours in DIR, for the fault-free tasks")
    soak.add_argument("--task", metavar="NAME",
                      help="its task that always succeeds: half the fault-free tasks run it (its values must equal "
                           "those of its first run), the other half echo a token")
    soak.add_argument("--input", dest="inputs", action="append", default=[], metavar="JSON",
                      help="one JSON value per parameter of --task, repeated in order")
    start_method_option(soak)
    soak.add_argument("--json", type=path, metavar="PATH", help="also write the summary as JSON to PATH")
    soak.add_argument("--metrics-port", type=port_number, metavar="PORT", help=METRICS_HELP)
    soak.add_argument("--cache-dir", type=path, metavar="DIR",
                      help="where to build the bundled package (default: $XDG_CACHE_HOME/spider-core or "
                           "~/.cache/spider-core)")
    soak.set_defaults(func=cmd_soak)

    from spider_core.bench import add_arguments

    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


class _LogFormatter(logging.Formatter):
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


class _Signals:
    """SIGTERM and SIGHUP end a command as SIGINT does: each is handed to SIGINT's handler
    (``asyncio.run``'s cancels the main task, so the pool reaps its executors and a batch
    cancels its running requests; Python's raises ``KeyboardInterrupt``), and :func:`main`
    reports the signal that came. A signal ignored when spider starts (``nohup``) stays
    ignored."""

    HANDLED = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
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


def main(argv: Sequence[str] | None = None) -> int:
    with _Signals() as signals:
        return _main(argv, signals)


def _main(argv: Sequence[str] | None, signals: _Signals) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return signals.exit_status()
    if sys.stdout is None and args.func is not cmd_batch:  # started with stdout closed (`>&-`)
        print("spider: error: cannot write output: standard output is closed", file=sys.stderr)
        return EXIT_INTERNAL
    handler = logging.StreamHandler()
    handler.setFormatter(_LogFormatter(verbose=args.verbose))
    logging.basicConfig(handlers=[handler], level=logging.WARNING)
    if not args.verbose:
        # Crashes and timeouts are reported as outcomes; the pool's own warnings repeat them.
        logging.getLogger("spider_core.pool").setLevel(logging.ERROR)
    try:
        status: int = args.func(args)
        return status
    except BrokenPipeError:  # `spider run ... | head`: the reader left; nothing more to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_TASK_FAILURE
    except CliError as e:
        print(f"spider: error: {e}", file=sys.stderr)
        return e.exit_code
    except PluginError as e:  # a plugin that cannot load, or a required hook nobody provides
        print(f"spider: error: {e}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:  # SIGINT, SIGTERM or SIGHUP
        return signals.exit_status()
    except OSError as e:  # writing our own output failed (a full disk, a closed stdout)
        with contextlib.suppress(OSError):
            print(f"spider: error: cannot write output: {_os_reason(e)}", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
