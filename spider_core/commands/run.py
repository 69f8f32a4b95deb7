"""``spider run``: run one task and print its outputs as a JSON array (``--json``: its outcome
record); the exit status says how it ended."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from spider_core.commands.common import (
    CliError,
    add_command,
    check_package,
    json_values,
    make_config,
    package_dir_of,
    pool_options,
)
from spider_core.commands.reporting import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_TASK_FAILURE,
    EXIT_USAGE,
    outcome_exit_code,
    outcome_record,
    outcome_summary,
    to_json,
)


def add_parser(commands: Any) -> None:
    run = add_command(commands, "run", "run one task and print its outputs as a JSON array",
                      "Run TASK of PACKAGE with ARGs (each a JSON value: 10, '\"text\"', '[1,2]') and print "
                      "its outputs as one JSON array.")
    run.add_argument("package", metavar="PACKAGE")
    run.add_argument("task", metavar="TASK")
    run.add_argument("args", nargs="*", default=[], metavar="ARG", help="one JSON value per task parameter")
    pool_options(run)
    run.add_argument("--json", action="store_true", help="print a machine-readable outcome record instead")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from spider_core.errors import BuildTaskContext, EncodeTaskInputs, InternalError, InvalidRequest
    from spider_core.models import ExecuteRequest
    from spider_core.pool import ProcessPool

    inputs = json_values(args.args, "argument")
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
