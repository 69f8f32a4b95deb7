"""``spider demo``: build the bundled packages into a cache and show every kind of outcome."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from spider_core.argtypes import path
from spider_core.bundled import NATIVE, cache_root, prepare_packages
from spider_core.commands.common import CliError, add_command, os_reason
from spider_core.commands.reporting import EXIT_TASK_FAILURE, EXIT_USAGE, outcome_summary, print_table, to_json
from spider_core.models import ExecuteRequest, PoolConfig, Success
from spider_core.pool import ProcessPool

#: ``<root>/packages/current`` links to the packages the last demo built: a path to export.
CURRENT = "current"


def add_parser(commands: Any) -> None:
    demo = add_command(commands, "demo", "build the bundled packages and show what the pool does with each outcome")
    demo.add_argument("--cache-dir", type=path, metavar="DIR",
                      help="where to build packages (default: $XDG_CACHE_HOME/spider-core or ~/.cache/spider-core)")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from spider_core.build import BuildError

    try:
        return run_demo(cache_dir=args.cache_dir)
    except BuildError as e:
        raise CliError(f"cannot build the demo packages: {e}", EXIT_TASK_FAILURE) from None
    except CacheError as e:
        raise CliError(f"cannot use the package cache: {e}; pass --cache-dir DIR", EXIT_USAGE) from None


def _call(task: str, *inputs: object, package: str = NATIVE) -> ExecuteRequest:
    return ExecuteRequest(package=package, task=task, inputs=inputs)


SCENARIOS = [
    ("fibonacci(25)", _call("fibonacci", 25), 5.0, None),
    ("always_fail()", _call("always_fail"), 5.0, None),
    ("always_panic()", _call("always_panic"), 5.0, None),
    ("fibonacci(45), 0.5 s hard timeout", _call("fibonacci", 45), 0.5, None),
    ("sleep_ms(10000), cancelled after 0.3 s", _call("sleep_ms", 10_000), 30.0, 0.3),
    ("segfault()", _call("segfault"), 5.0, None),
    ("fibonacci(30)", _call("fibonacci", 30), 5.0, None),
]


async def _scenarios(package_dir: Path, log_dir: Path) -> list[list[str]]:
    rows = [["CALL", "OUTCOME", "EXECUTOR", "TIME", "LOG"]]
    config = PoolConfig(package_dir=package_dir, log_dir=log_dir, em_id="demo")
    scenarios = list(SCENARIOS)
    if (package_dir / "complex_number").is_dir():
        add = ExecuteRequest(package="complex_number", task="add", inputs=[{"re": 1, "im": 2}, {"re": 3, "im": 4}])
        scenarios.insert(1, ("complex_number add(1+2i, 3+4i)", add, 5.0, None))
    async with ProcessPool(config) as pool:
        for label, request, hard_timeout, cancel_after in scenarios:
            before, log = pool.executor_id, pool.log_path
            started = time.perf_counter()
            if cancel_after is None:
                outcome = await pool.execute(request, hard_timeout=hard_timeout)
                text = f"Success {to_json(outcome.values)}" if isinstance(outcome, Success) else (
                    f"{type(outcome).__name__}: {outcome_summary(outcome)}"
                )
            else:
                call = asyncio.create_task(pool.execute(request, hard_timeout=hard_timeout))
                try:
                    await asyncio.sleep(cancel_after)
                finally:  # also when the demo itself is cancelled (Ctrl-C): the call must not outlive it
                    call.cancel()
                    await asyncio.wait([call])  # unlike `await call`, never swallows the demo's own cancel
                text = "cancelled: the executor was killed and replaced"
            elapsed = time.perf_counter() - started
            after = pool.executor_id
            executor = str(before) if after == before else f"{before} -> {after} (respawned)"
            rows.append([label, text, executor, f"{elapsed * 1000:.0f} ms", log.name if log else "-"])
    return rows


def _link_current(package_dir: Path) -> Path:
    """Point ``packages/current`` at ``package_dir`` (atomically: a running user of the old
    link sees one or the other) and return the link, or ``package_dir`` if it cannot be made."""
    link = package_dir.parent / CURRENT
    try:
        if os.readlink(link) == package_dir.name:
            return link
    except OSError:  # no link yet
        pass
    staging = package_dir.parent / f".{CURRENT}-{os.getpid()}"
    try:
        staging.unlink(missing_ok=True)
        staging.symlink_to(package_dir.name)
        os.replace(staging, link)
    except OSError:
        with contextlib.suppress(OSError):
            staging.unlink(missing_ok=True)
        return package_dir
    return link


class CacheError(Exception):
    """The package cache cannot be found, created or written."""


def run_demo(cache_dir: Path | None = None) -> int:
    """Build the bundled packages into the cache and show each outcome.

    :raises CacheError: the cache cannot be used (errors writing stdout propagate as they are).
    :raises BuildError: the bundled packages do not build.
    """
    started = time.perf_counter()
    try:
        root = cache_root(cache_dir)
        package_dir = prepare_packages(root)
    except (OSError, RuntimeError) as e:  # RuntimeError: no home directory to find a cache in
        raise CacheError(os_reason(e)) from None
    built = time.perf_counter() - started
    log_dir = root / "demo-logs" / time.strftime("%Y%m%d-%H%M%S")
    print(f"packages: {package_dir} (ready in {built:.1f}s)")
    print(f"executor logs: {log_dir}\n")
    rows = asyncio.run(_scenarios(package_dir, log_dir))
    print_table(rows)
    current = _link_current(package_dir)
    print(f"\ndone in {time.perf_counter() - started:.1f}s; try: export SPIDER_TDL_PACKAGE_DIR={current}; "
          f"spider run {NATIVE} fibonacci 20")
    return 0
