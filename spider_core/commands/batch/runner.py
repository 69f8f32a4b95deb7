"""How ``spider batch`` runs: the request lines read as the run goes (a pipe by a thread, a
few lines ahead), up to ``slots`` requests at once through one pool or (``--dask``) through
the pools of a Dask cluster's workers, and its progress on stderr.

Each result line is appended and flushed as soon as its request completes, so a runner that
dies loses nothing it finished; ``--resume`` skips the ids already in the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from spider_core.commands.batch.files import (
    STDIN,
    BatchError,
    check_out,
    done_keys,
    line_limit,
    parse_line,
    request_key,
)
from spider_core.commands.reporting import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_TASK_FAILURE,
    EXIT_USAGE,
    outcome_record,
    to_json,
)
from spider_core.errors import BuildTaskContext, EncodeTaskInputs, InternalError, InvalidRequest
from spider_core.models import ExecuteRequest, PoolConfig
from spider_core.pool import ProcessPool

if TYPE_CHECKING:  # imported when --dask is given: it needs Dask's distributed
    from spider_core.dask.cluster import DaskCluster

_READ_AHEAD = 64  # lines a pipe's reader thread may hold before the run takes them
_CHUNK = 64 * 1024
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class Progress:
    """Counts, rate and a summary on stderr."""

    def __init__(self, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self.enabled = enabled
        self.stream = stream
        self.counts = {"success": 0, "task_failure": 0, "crash": 0, "timeout": 0, "internal_error": 0,
                       "invalid_request": 0, "skipped": 0}
        self.started = time.monotonic()
        self._shown = 0.0
        self._tty = stream.isatty()

    @property
    def done(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "skipped")

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        c = self.counts
        failures = c["task_failure"] + c["internal_error"] + c["invalid_request"]
        return (
            f"{self.done} done ({self.done / elapsed:.1f}/s): {c['success']} ok, {failures} failed, "
            f"{c['crash']} crashed, {c['timeout']} timed out, {c['skipped']} skipped"
        )

    def count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        now = time.monotonic()
        if self.enabled and now - self._shown >= (0.2 if self._tty else 5.0):
            self._shown = now
            end = "\r" if self._tty else "\n"
            print(f"spider batch: {self.line()}", end=end, file=self.stream, flush=True)

    def summary(self) -> None:
        if self.enabled and self._tty:
            print(file=self.stream)
        print(f"spider batch: finished in {time.monotonic() - self.started:.1f}s: {self.line()}", file=self.stream)


def run_batch(
    *,
    requests: Path | str,
    out: Path,
    config: PoolConfig,
    default_timeout: float,
    resume: bool = False,
    strict: bool = False,
    progress: bool = True,
    dask: str | None = None,
) -> int:
    """Run every request of ``requests`` (the string ``"-"``: standard input; ``Path("-")``
    is a file), reading it as the run goes; return the exit status (0 only if all succeeded).

    :param dask: Run the requests on a Dask cluster instead of a local pool (see
        :class:`~spider_core.dask.cluster.DaskCluster`): a scheduler address, or ``local:N``.
    """
    cluster = None if dask is None else _cluster(config, dask)  # a bad address: before any file is touched
    from_stdin = isinstance(requests, str) and requests == STDIN
    requests = Path(requests)
    if from_stdin and sys.stdin is None:
        raise BatchError("no standard input to read the requests from")
    try:
        stream = sys.stdin.buffer if from_stdin else requests.open("rb")
    except OSError as e:
        raise BatchError(f"cannot read {requests}: {e.strerror}") from None
    with contextlib.ExitStack() as stack:
        if not from_stdin:
            stack.enter_context(stream)
        readable = check_out(out, stream)
        if resume and not readable:
            raise BatchError(f"cannot --resume from {out}: it is not a regular file")
        skip = done_keys(out) if resume and out.exists() else {}
        try:
            sink = stack.enter_context(out.open("a", encoding="utf-8"))
        except OSError as e:
            raise BatchError(f"cannot write {out}: {e.strerror}") from None
        meter = Progress(progress)
        lines = _Lines(stream, line_limit(config))
        try:
            code = asyncio.run(_run(lines, sink, config, default_timeout, skip, strict, meter, cluster=cluster))
        except Exception as e:
            if cluster is None:
                raise
            from spider_core.dask.cluster import ClusterUnavailable

            if not isinstance(e, ClusterUnavailable):
                raise
            raise BatchError(str(e), EXIT_INTERNAL if e.internal else EXIT_USAGE) from None
    meter.summary()
    return code


#: The most worker processes ``--dask local:N`` starts.
MAX_LOCAL_WORKERS = 256
_LOCAL = "local:"


def parse_dask_address(text: str) -> tuple[str | None, int | None]:
    """``(scheduler address, None)`` or ``(None, N)`` for ``local:N``.

    :raises ValueError: with the reason, in words for a usage error.
    """
    text = text.strip()
    if text == "local" or text.startswith(_LOCAL):
        count = text[len(_LOCAL):]
        if not count.isascii() or not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise ValueError(
                f"{text!r}: local:N takes a number of worker processes N from 1 to {MAX_LOCAL_WORKERS}"
            )
        return None, int(count)
    if not text or any(c.isspace() for c in text):
        raise ValueError(f"{text!r} is not a Dask scheduler address (such as tcp://host:8786) or local:N")
    return text, None


def dask_import_error(e: ImportError) -> str:
    """The one line for ``--dask`` without a working ``distributed``."""
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in ("dask", "distributed"):
        return "--dask needs Dask's distributed: pip install 'spider-core-pool[dask]'"
    reason = " ".join(str(e).split()) or type(e).__name__
    return f"--dask cannot import Dask's distributed: {reason}"


def _cluster(config: PoolConfig, address: str) -> DaskCluster:
    """The cluster of ``--dask ADDRESS``, not yet started.

    :raises BatchError: a bad address, or no Dask to reach it with.
    """
    try:
        scheduler, workers = parse_dask_address(address)
    except ValueError as e:
        raise BatchError(f"--dask {e}") from None
    try:
        from spider_core.dask.cluster import DaskCluster
    except ImportError as e:
        raise BatchError(dask_import_error(e)) from None
    return DaskCluster(config, scheduler, workers)


class _Overlong:
    """A request line over :func:`line_limit`, skipped without holding it in memory."""


_OVERLONG = _Overlong()
_Line = bytes | _Overlong | Exception


class _Lines:
    """The request lines, read one at a time as the run goes.

    A pipe or a terminal is read by a daemon thread, a few lines ahead: the event loop (and the
    pool on it) never waits for the producer, and neither does the exit after Ctrl-C. The
    thread wakes the loop only when the run is waiting for a line.
    """

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream = stream
        #: A longer line (in bytes, without its newline) is ``_OVERLONG``.
        self.limit = limit
        try:
            self.blocking = not stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        except (OSError, ValueError):  # no descriptor: plain reads
            self.blocking = False
        self._ahead: queue.Queue[_Line] = queue.Queue(maxsize=_READ_AHEAD)
        self._lock = threading.Lock()
        self._waiter: asyncio.Future[None] | None = None
        self._reader: threading.Thread | None = None

    async def next(self) -> bytes | _Overlong:
        """The next line with its newline, or ``_OVERLONG``; ``b""`` at the end.

        :raises BatchError: the requests cannot be read.
        """
        line = self._readline() if not self.blocking else await self._take()
        if isinstance(line, Exception):
            reason = line.strerror if isinstance(line, OSError) else type(line).__name__
            raise BatchError(f"cannot read the requests: {reason}")
        return line

    async def _take(self) -> _Line:
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._reader = threading.Thread(target=self._pump, args=(loop,), daemon=True)
            self._reader.start()
        while True:
            try:
                return self._ahead.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                if not self._ahead.empty():
                    continue
                waiter = self._waiter = loop.create_future()
            await waiter

    def _readline(self) -> _Line:
        try:
            line = self.stream.readline(self.limit + 1)
            if len(line) <= self.limit or line.endswith(b"\n"):
                return line
            while (rest := self.stream.readline(_CHUNK)) and not rest.endswith(b"\n"):
                pass
            return _OVERLONG
        except OSError as e:
            return e

    def _pump(self, loop: asyncio.AbstractEventLoop) -> None:
        # Signals go to the main thread, where Python can act on them: a SIGINT taken by this
        # thread would wait, unseen, for the next line.
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        # Raw reads, not the buffered stream: a daemon thread blocked inside a buffered read
        # holds its lock, and the interpreter aborts when it meets that lock at exit.
        lines = _raw_lines(self.stream.fileno(), self.limit)
        while True:
            try:
                line: _Line = next(lines)
            except Exception as e:  # MemoryError, say: the run must end, not wait for more
                line = e
            self._ahead.put(line)  # blocks while the run is _READ_AHEAD lines behind
            with self._lock:
                waiter, self._waiter = self._waiter, None
            if waiter is not None:
                try:
                    loop.call_soon_threadsafe(_wake, waiter)
                except RuntimeError:  # the loop is closed: the run is over
                    return
            if line is not _OVERLONG and (not isinstance(line, bytes) or not line):
                return  # the end, or a failure


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _raw_lines(fd: int, limit: int) -> Iterator[_Line]:
    """The lines of ``fd`` with their newlines (``_OVERLONG`` for one over ``limit`` bytes),
    then ``b""``; an OSError ends them."""
    pending: list[bytes] = []
    size = 0
    overlong = False
    while True:
        try:
            chunk = os.read(fd, _CHUNK)
        except OSError as e:
            yield e
            return
        if not chunk:
            if overlong:
                yield _OVERLONG
            elif pending:
                yield b"".join(pending)  # a last line without a newline
            yield b""
            return
        *complete, rest = chunk.split(b"\n")
        for part in complete:
            if overlong or size + len(part) > limit:
                yield _OVERLONG
            else:
                pending.append(part)
                yield b"".join(pending) + b"\n"
            pending, size, overlong = [], 0, False
        if rest and not overlong:
            size += len(rest)
            if size > limit:
                pending, overlong = [], True
            else:
                pending.append(rest)


async def _run(
    lines: _Lines,
    sink: TextIO,
    config: PoolConfig,
    default_timeout: float,
    skip: dict[tuple[str, Any], str],
    strict: bool,
    meter: Progress,
    *,
    cluster: DaskCluster | None = None,
) -> int:
    """Read the requests as the run goes and keep up to ``config.slots`` of them running, as
    many again queued behind them (so a slot never waits for the next line to be parsed); each
    request writes its line as soon as it completes, in completion order. With one slot the
    next line is read only once the previous request's line is written: request order.

    With a ``cluster`` the requests run there, as many at once as its workers have slots."""

    def write(record: dict[str, Any]) -> None:
        sink.write(to_json(record) + "\n")
        sink.flush()  # one result per line, on disk as soon as its request completes

    all_ok = True
    seen: dict[tuple[str, Any], int] = {}
    running: set[asyncio.Task[None]] = set()

    def limit() -> int:
        # With one slot, exactly one request at a time: the lines come out in request order,
        # a malformed line's too.
        slots = config.slots if cluster is None else cluster.slots
        return 1 if slots == 1 else 2 * slots

    failed = asyncio.get_running_loop().create_future()  # a request's task raised: the run ends

    async def run_one(pool: ProcessPool | DaskCluster, request_id: Any, number: int, request: ExecuteRequest, timeout: float) -> None:
        nonlocal all_ok
        try:
            record = outcome_record(await pool.execute(request, hard_timeout=timeout))
        except (InvalidRequest, EncodeTaskInputs, BuildTaskContext) as e:
            record = {"outcome": "invalid_request", "error": type(e).__name__, "message": str(e)}
        except InternalError as e:
            record = {"outcome": "internal_error", "error": type(e).__name__, "message": str(e)}
        all_ok = all_ok and record["outcome"] == "success"
        write({"id": request_id, "line": number, **record})  # on the loop's thread: whole lines
        meter.count(record["outcome"])

    def finished(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not failed.done():
            failed.set_result(task)

    def reap(done: set[asyncio.Task[None]]) -> None:
        for task in done:
            running.discard(task)
            task.result()  # a write that failed (a full disk), a bug: the run ends with it

    async def settle(at_most: int) -> None:
        """Wait until at most ``at_most`` requests are running."""
        while len(running) > at_most:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            reap(done)

    async def next_line() -> bytes | _Overlong:
        if not lines.blocking or not running:
            return await lines.next()
        # Waiting for a slow producer: a request that fails meanwhile must still end the run.
        reading = asyncio.ensure_future(lines.next())
        try:
            await asyncio.wait({reading, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not reading.done():
                reading.cancel()  # takes no line: the reader thread keeps it for the next call
        if failed.done():
            failed.result().result()
        return reading.result()

    async with ProcessPool(config) if cluster is None else cluster as pool:
        try:
            number = 0
            stop: str | None = None
            while True:
                try:
                    raw = await next_line()
                except BatchError:
                    await settle(0)  # every request read so far still gets its line
                    raise
                if not raw:
                    break
                number += 1
                if isinstance(raw, bytes) and not raw.strip():
                    continue
                try:
                    if raw is _OVERLONG:
                        raise ValueError(f"longer than {line_limit(config)} bytes (raise --max-frame-size to read it)")
                    try:
                        text = raw.decode("utf-8")  # type: ignore[union-attr]  # not _OVERLONG (above)
                    except UnicodeDecodeError:
                        raise ValueError("not UTF-8 text") from None
                    request_id, request, timeout = parse_line(text, number, default_timeout)
                    key = request_key(request_id, number)
                    if key in seen:
                        raise ValueError(f"duplicate id {request_id!r} (first on line {seen[key]})")
                    seen[key] = number
                except ValueError as e:
                    all_ok = False
                    if ("malformed", number) in skip:
                        print(f"spider batch: line {number}: still malformed: {e}", file=sys.stderr)
                        meter.count("skipped")
                        continue
                    print(f"spider batch: line {number}: {e}; skipped", file=sys.stderr)
                    write({"id": None, "line": number, "outcome": "invalid_request", "malformed": True, "message": str(e)})
                    meter.count("invalid_request")
                    if strict:
                        stop = f"line {number} is malformed and --strict is set; stopped"
                        break
                    continue
                if key in skip:
                    all_ok = all_ok and skip[key] == "success"
                    meter.count("skipped")
                    continue
                task = asyncio.ensure_future(run_one(pool, request_id, number, request, timeout))
                task.add_done_callback(finished)
                running.add(task)
                await settle(limit() - 1)
            await settle(0)  # the requests already running finish and write their lines
            if stop is not None:
                raise BatchError(stop)
        finally:
            # Interrupted (or failed): the requests still running are cancelled, their
            # executors killed, and none of them writes a line.
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
    return EXIT_OK if all_ok else EXIT_TASK_FAILURE
