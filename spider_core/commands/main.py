"""``spider``: the top parser, which gathers every command's own, and :func:`main`, which runs
the command asked for and turns each way it can end into one line and an exit status."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from spider_core.commands import bench, build, demo, packages, plugins, run
from spider_core.commands.batch import command as batch
from spider_core.commands.common import EXIT_STATUSES, CliError, LogFormatter, Parser, Signals, os_reason
from spider_core.commands.reporting import EXIT_INTERNAL, EXIT_TASK_FAILURE
from spider_core.commands.soak import command as soak
from spider_core.plugin import PluginError

#: Every command, in the order ``spider --help`` lists them.
COMMANDS = (run, batch, demo, packages, plugins, build, bench, soak)


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
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with Signals() as signals:
        return _main(argv, signals)


def _main(argv: Sequence[str] | None, signals: Signals) -> int:
    try:
        args = build_parser().parse_args(argv)
    except KeyboardInterrupt:
        return signals.exit_status()
    if sys.stdout is None and args.func is not batch.cmd_batch:  # started with stdout closed (`>&-`)
        print("spider: error: cannot write output: standard output is closed", file=sys.stderr)
        return EXIT_INTERNAL
    handler = logging.StreamHandler()
    handler.setFormatter(LogFormatter(verbose=args.verbose))
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
            print(f"spider: error: cannot write output: {os_reason(e)}", file=sys.stderr)
        return EXIT_INTERNAL
