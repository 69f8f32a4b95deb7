"""``spider demo``: build the bundled packages into a cache and show every kind of outcome."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from spider_core.build import build_package, get_include
from spider_core.models import ExecuteRequest, PoolConfig, Success
from spider_core.pool import ProcessPool
from spider_core.reporting import outcome_summary, print_table, to_json

NATIVE = "integration_test_tasks"


def cache_root(cache_dir: Path | None = None) -> Path:
    """``cache_dir``, else ``$XDG_CACHE_HOME/spider-core``, else ``~/.cache/spider-core``."""
    if cache_dir is not None:
        return cache_dir
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spider-core"


def bundled_sources() -> Path:
    """The task package sources shipped in the wheel (or the checkout, for an editable install)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_bundled" / "task_packages", here.parent / "task_packages"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the bundled task package sources are missing from this installation")


def _fingerprint(sources: Path) -> str:
    digest = hashlib.sha256()
    files = [p for p in sorted(sources.rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    for path in [*files, Path(get_include()) / "spider_tdl.h"]:
        digest.update(str(path.relative_to(path.parents[1])).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


#: ``<root>/packages/current`` links to the packages the last demo built: a path to export.
CURRENT = "current"


def prepare_packages(root: Path) -> Path:
    """Build (once per version of the sources) the bundled packages; return the package dir."""
    sources = bundled_sources()
    target = root / "packages" / _fingerprint(sources)
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        for source in sorted(p for p in sources.iterdir() if p.is_dir()):
            if any(source.glob("*.c")):
                build_package(source, staging)
            elif any(source.rglob("*.py")):
                shutil.copytree(source, staging / source.name, ignore=shutil.ignore_patterns("__pycache__"))
        (staging / ".complete").touch()
        try:
            staging.rename(target)
        except OSError:  # another demo built it meanwhile
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


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
        if isinstance(e, OSError) and e.strerror:
            raise CacheError(f"{e.filename}: {e.strerror}" if e.filename else e.strerror) from None
        raise CacheError(str(e)) from None
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
