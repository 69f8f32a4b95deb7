"""``spider soak``: its parser and its function, which checks the options, prepares the
package directory, runs :func:`~spider_core.commands.soak.runner.run_soak`, prints the command
that replays the run and the summary, and exits 1 naming each invariant that broke."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from spider_core.argtypes import directory, fraction, path, port_number, positive_seconds, whole_number
from spider_core.commands.common import (
    DEFAULT_TIMEOUT,
    METRICS_HELP,
    CliError,
    add_command,
    json_values,
    metrics_server,
    os_reason,
    start_method_option,
)
from spider_core.commands.reporting import EXIT_INTERNAL, EXIT_OK, EXIT_TASK_FAILURE, to_json
from spider_core.commands.soak.inject import ENV_INJECT, INJECTIONS
from spider_core.commands.soak.plan import SoakError, soak_package_dir
from spider_core.commands.soak.runner import run_soak


def add_parser(commands: Any) -> None:
    soak = add_command(
        commands,
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


def cmd_soak(args: argparse.Namespace) -> int:
    from spider_core.errors import InternalError

    if (args.package is None) != (args.task is None):
        raise CliError("--package and --task go together: name the package and the fault-free task to run")
    if args.inputs and args.package is None:
        raise CliError("--input is for the task of --package and --task")
    inputs = json_values(args.inputs, "--input")
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
            raise CliError(f"cannot write the summary to {args.json}: {os_reason(e)}", EXIT_INTERNAL) from None
    if not summary.ok:
        broke = "; ".join(summary.failures)
        count = f"{len(summary.failures)} invariant{'s' if len(summary.failures) > 1 else ''}"
        print(f"spider: soak: {count} broke: {broke}", file=sys.stderr)
        return EXIT_TASK_FAILURE
    return EXIT_OK
