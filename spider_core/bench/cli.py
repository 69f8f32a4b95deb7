"""The command line of ``spider bench`` and ``benchmarks/run_bench.py``: :func:`add_arguments`
(which ``spider``'s own parser uses too), :func:`build_parser`, :func:`run_from_args`, which
finds or builds the test package, runs the benchmark and prints the markdown report,
:func:`main`, and :class:`BenchError`, raised when the benchmark cannot run as asked.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from spider_core.argtypes import whole_number
from spider_core.bench.contenders import PACKAGE, PEERS
from spider_core.bench.payload import SIZES, parse_sizes
from spider_core.bench.runner import (
    DEFAULT_BATCH,
    DEFAULT_CALLS,
    DEFAULT_RECOVERY_ROUNDS,
    DEFAULT_ROUNDS,
    DEFAULT_SLOTS,
    QUICK_BATCH,
    QUICK_CALLS,
    QUICK_RECOVERY_ROUNDS,
    QUICK_ROUNDS,
    run_benchmark,
)
from spider_core.bench.workloads import DEFAULT_WORKLOADS, WORKLOADS
from spider_core.models import START_METHODS


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _size_text(size: int) -> str:
    return f"{size >> 20}MiB" if size >= 1 << 20 else f"{size >> 10}KiB"


class BenchError(Exception):
    """The benchmark cannot run as asked; the message says why in one sentence."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--package-dir",
        type=Path,
        help="holds the built integration_test_tasks (default: build the bundled one into the cache)",
    )
    parser.add_argument(
        "--output", "--out", dest="out", type=Path, default=Path("bench-results"),
        help="report directory, created if missing (default: %(default)s)",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help=f"{QUICK_CALLS} calls per contender, not {DEFAULT_CALLS}; throughput: {QUICK_ROUNDS} batches of "
        f"{QUICK_BATCH} tasks, not {DEFAULT_ROUNDS} of {DEFAULT_BATCH}; recovery: {QUICK_RECOVERY_ROUNDS} rounds, "
        f"not {DEFAULT_RECOVERY_ROUNDS}",
    )
    parser.add_argument("--calls", type=whole_number, help="measured calls per contender and workload")
    parser.add_argument(
        "--workloads", type=_names, default=DEFAULT_WORKLOADS,
        help=f"comma-separated, from {','.join(WORKLOADS)} (default: {','.join(DEFAULT_WORKLOADS)}; recovery "
        "takes minutes, so it runs when named)",
    )
    parser.add_argument(
        "--slots", type=whole_number, default=DEFAULT_SLOTS, metavar="N",
        help="throughput: workers per contender, PoolConfig.slots for spider-core (default: %(default)s)",
    )
    parser.add_argument(
        "--batch", type=whole_number, metavar="B",
        help=f"throughput: tasks per batch, all queued at once (default: {DEFAULT_BATCH}, {QUICK_BATCH} with --quick)",
    )
    parser.add_argument(
        "--rounds", type=whole_number, metavar="R",
        help=f"throughput: measured batches per contender (default: {DEFAULT_ROUNDS}, {QUICK_ROUNDS} with --quick)",
    )
    parser.add_argument(
        "--recovery-rounds", type=whole_number, metavar="R",
        help=f"recovery: rounds of one crash and one timeout per contender (default: {DEFAULT_RECOVERY_ROUNDS}, "
        f"{QUICK_RECOVERY_ROUNDS} with --quick)",
    )
    parser.add_argument(
        "--payload-sizes", type=parse_sizes, metavar="SIZES",
        help="payload: comma-separated sizes to echo, in bytes or with KiB, MiB or GiB (default: "
        f"{','.join(map(_size_text, SIZES))}; up to 64MiB with --quick)",
    )
    parser.add_argument("--peers", type=_names, default=PEERS, help=f"comma-separated ({','.join(PEERS)})")
    parser.add_argument(
        "--start-method", choices=START_METHODS, default="exec",
        help="PoolConfig.start_method of spider-core's latency, throughput and sync contenders; the start and "
        "recovery measures show both (default: %(default)s)",
    )
    parser.add_argument(
        "--targets", action="store_true",
        help="add a section checking the project's own performance targets (for its development; "
        "report.json always holds them)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress line (shown only on a terminal)"
    )


def build_parser(prog: str = "spider bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Compare spider-core's per-call latency, throughput and recovery from crashes and "
        "timeouts with other Python process pools, interleaved in one run; writes report.md, report.json "
        "and latency.png.",
    )
    add_arguments(parser)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    """Run the benchmark for parsed arguments; print the markdown report.

    :raises BenchError: it cannot run as asked.
    """
    package_dir = args.package_dir
    try:
        if package_dir is None:
            from spider_core.bundled import cache_root, prepare_packages

            package_dir = prepare_packages(cache_root())
        elif not (Path(package_dir) / PACKAGE / f"lib{PACKAGE}.so").is_file():
            raise ValueError(
                f"{package_dir} has no {PACKAGE} package; build it with "
                f"`spider build-package task_packages/{PACKAGE} --out {package_dir}` or omit --package-dir"
            )
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--output {args.out} is a file, not a directory")
        report = asyncio.run(
            run_benchmark(
                package_dir,
                quick=args.quick,
                output_dir=args.out,
                workloads=args.workloads,
                peers=args.peers,
                progress=args.progress and sys.stderr.isatty(),
                calls=args.calls,
                slots=args.slots,
                batch=args.batch,
                rounds=args.rounds,
                recovery_rounds=args.recovery_rounds,
                start_method=args.start_method,
                payload_sizes=args.payload_sizes,
                show_targets=args.targets,
            )
        )
    except OSError as e:
        where = f"cannot use {e.filename}: " if e.filename else ""
        raise BenchError(f"{where}{e.strerror or e}") from None
    except (ValueError, RuntimeError) as e:
        raise BenchError(str(e)) from None
    print(report.markdown_path.read_text())
    written = [report.markdown_path, report.json_path, *([report.plot] if report.plot is not None else [])]
    print(f"written: {', '.join(map(str, written))}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "spider bench") -> int:
    """Run the benchmark from the command line."""
    try:
        return run_from_args(build_parser(prog).parse_args(argv))
    except BenchError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
