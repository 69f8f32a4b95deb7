"""``spider bench``: the benchmark's own command line (:mod:`spider_core.bench.cli`) under
``spider``, its errors as one line like every command's."""

from __future__ import annotations

import argparse
from typing import Any

from spider_core.commands.common import CliError, add_command


def add_parser(commands: Any) -> None:
    from spider_core.bench import add_arguments

    bench = add_command(
        commands,
        "bench",
        "measure per-task overhead against other process pools",
        "Run no-op, echo and throughput tasks through spider-core and, interleaved in the same run, through "
        "ProcessPoolExecutor, multiprocessing.Pool, pebble, loky, billiard (pip install "
        "'spider-core-pool[bench]') and a raw pipe ping-pong; write a markdown report with "
        "percentiles and ratios.",
    )
    add_arguments(bench)
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    from spider_core.bench import BenchError, run_from_args

    try:
        return run_from_args(args)
    except BenchError as e:
        raise CliError(str(e)) from None
