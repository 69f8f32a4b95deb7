"""``spider batch``: its parser and its function, which checks the options, starts the
metrics server and runs :func:`~spider_core.commands.batch.runner.run_batch`."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from spider_core.argtypes import path, port_number, requests_path, whole_number
from spider_core.commands.batch.files import BatchError
from spider_core.commands.batch.runner import dask_import_error, parse_dask_address, run_batch
from spider_core.commands.common import (
    METRICS_HELP,
    CliError,
    add_command,
    make_config,
    metrics_server,
    package_dir_of,
    pool_options,
)
from spider_core.commands.reporting import EXIT_INTERNAL


def add_parser(commands: Any) -> None:
    batch = add_command(commands, "batch", "run a JSON-lines file of requests through one pool",
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


def dask_address(text: str) -> str:
    """``--dask``: a scheduler address, or ``local:N``."""
    try:
        parse_dask_address(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def cmd_batch(args: argparse.Namespace) -> int:
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
