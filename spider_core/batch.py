"""``spider batch``: run a JSON-lines file (or standard input) of requests through one pool,
or (``--dask``) through the pools of a Dask cluster's workers.

Each result line is appended and flushed as soon as its request completes, so a runner that
dies loses nothing it finished; ``--resume`` skips the ids already in the output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import queue
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import attrs

from spider_core.errors import BuildTaskContext, EncodeTaskInputs, InternalError, InvalidRequest
from spider_core.models import ExecuteRequest, Outcome, PoolConfig
from spider_core.pool import ProcessPool
from spider_core.reporting import (
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_TASK_FAILURE,
    EXIT_USAGE,
    outcome_record,
    parse_json,
    to_json,
)

FIELDS = {"id", "package", "task", "inputs", "timeout"}
#: The requests argument that means standard input.
STDIN = "-"
_READ_AHEAD = 64  # lines a pipe's reader thread may hold before the run takes them
_CHUNK = 64 * 1024
_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
#: A request line longer than this and than ``--max-frame-size`` is malformed, and skipped
#: without being held in memory; a shorter one that makes too large a frame gets its own error.
MAX_LINE = 64 * 1024 * 1024


def line_limit(config: PoolConfig) -> int:
    """The longest request line read, in bytes: :data:`MAX_LINE`, or ``config.max_frame_size``
    if larger (a longer line could not be sent anyway)."""
    return max(MAX_LINE, config.max_frame_size)


class BatchError(Exception):
    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def parse_line(text: str, number: int, default_timeout: float) -> tuple[Any, ExecuteRequest, float]:
    """(id or None, request, timeout) of one line; ``ValueError`` with the reason if it is
    malformed."""
    record = parse_json(text.lstrip("\ufeff"))  # ValueError: the line is malformed
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    unknown = set(record) - FIELDS
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(FIELDS))}")
    for name in ("package", "task"):
        if not isinstance(record.get(name), str) or not record[name]:
            raise ValueError(f"{name!r} must be a non-empty string")
    inputs = record.get("inputs", [])
    if not isinstance(inputs, list):
        raise ValueError("'inputs' must be a JSON array")
    timeout = record.get("timeout", default_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (timeout > 0 and math.isfinite(timeout)):
        raise ValueError("'timeout' must be a positive number of seconds")
    request_id = record.get("id")
    if request_id is not None and (not isinstance(request_id, str | int) or isinstance(request_id, bool)):
        raise ValueError("'id' must be a string or an integer")
    return request_id, ExecuteRequest(package=record["package"], task=record["task"], inputs=inputs), float(timeout)


def request_key(request_id: Any, line: int) -> tuple[str, Any]:
    """What identifies a request across runs: its id, or its line number when it has none."""
    return ("id", request_id) if request_id is not None else ("line", line)


def _records(data: bytes) -> list[dict[str, Any]]:
    records = []
    for text in data.decode("utf-8", "replace").split("\n"):  # not splitlines: U+2028 is JSON
        try:
            record = parse_json(text)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def check_out(out: Path, requests: BinaryIO) -> bool:
    """Whether ``out`` is a regular file we may read and repair. Refuses a directory, the
    requests file itself (also as standard input, which would feed on its own results), and
    an existing file that is not a results file, and a file in a directory that does not exist
    (a mistyped path is not created); a torn last line (the runner died mid-write) is cut off."""
    if not out.parent.is_dir():
        raise BatchError(f"--out {out}: the directory {out.parent} does not exist; create it first")
    if not out.exists():
        return True
    if out.is_dir():
        raise BatchError(f"--out {out} is a directory; name a file")
    with contextlib.suppress(OSError, ValueError):
        out_stat = out.stat()
        if stat.S_ISREG(out_stat.st_mode) and os.path.samestat(os.fstat(requests.fileno()), out_stat):
            raise BatchError(f"--out {out} is the requests file; name another file")
    if not out.is_file():
        return False  # /dev/stdout, a pipe: append only
    data = out.read_bytes()
    if not data:
        return True
    first = data.split(b"\n", 1)[0]
    if not _records(first) or "outcome" not in _records(first)[0]:
        raise BatchError(f"--out {out} exists and is not a results file of spider batch; name another file")
    if not data.endswith(b"\n"):
        tail_start = data.rfind(b"\n") + 1
        if not data[tail_start:].startswith(b"{"):
            raise BatchError(f"--out {out} ends with a line that is not a result; name another file")
        with out.open("r+b") as f:
            f.truncate(tail_start)
        print(f"spider: warning: dropped an incomplete last line of {out}", file=sys.stderr)
    return True


def done_keys(out: Path) -> dict[tuple[str, Any], str]:
    """The outcome of every request with a result in ``out``, by request key;
    ``("malformed", line)`` for lines already reported as malformed."""
    keys: dict[tuple[str, Any], str] = {}
    for record in _records(out.read_bytes()):
        if "outcome" not in record or "line" not in record:
            continue
        if record.get("malformed"):
            keys[("malformed", record["line"])] = record["outcome"]
        else:
            keys[request_key(record.get("id"), record["line"])] = record["outcome"]
    return keys


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
        :class:`DaskCluster`): a scheduler address, or ``local:N``.
    """
    cluster = None if dask is None else DaskCluster(config, dask)  # a bad address: before any file is touched
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
        code = asyncio.run(_run(_Lines(stream, line_limit(config)), sink, config, default_timeout, skip, strict, meter, cluster=cluster))
    meter.summary()
    return code


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


# -- --dask --------------------------------------------------------------------------------------

#: Seconds to reach a Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT = 10.0
#: The most worker processes ``--dask local:N`` starts.
MAX_LOCAL_WORKERS = 256
_LOCAL = "local:"
_WORKER_LOGGERS = ("spider_core", "spider_core.pool", "spider_core.dask")
_WORKER_LOG_FORMAT = "spider: %(levelname)s: %(name)s: %(message)s"


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


class ClusterError(InternalError):
    """The Dask cluster did not run the request: the workers running it were lost too many
    times (``KilledWorker``), say."""


class DaskCluster:
    """Where ``spider batch --dask`` runs its requests: a Dask cluster with a
    :class:`~spider_core.dask.SpiderWorkerPlugin` of ``config`` on every worker (``--slots``
    per worker), through an asynchronous client on the batch's event loop.

    ``local:N`` starts a ``LocalCluster`` of N worker processes (each with ``config.slots``
    threads) and closes it at the end; an address connects to a running scheduler, registers
    the plugin and unregisters it at the end (the workers' pools close, every executor is
    reaped). Either way an interrupted run cancels its requests still running on the workers:
    their executors are killed.
    """

    def __init__(self, config: PoolConfig, address: str) -> None:
        try:
            self.address, self.workers = parse_dask_address(address)
        except ValueError as e:
            raise BatchError(f"--dask {e}") from None
        if self.workers is not None and config.package_dir is not None:
            # The same machine: the workers see the package directory at the same path.
            config = attrs.evolve(config, package_dir=Path(config.package_dir).absolute())
        self.config = config
        self.client: Any = None
        self.cluster: Any = None
        self._registering: asyncio.Future[Any] | None = None

    @property
    def where(self) -> str:
        if self.address is None:
            return f"a local Dask cluster of {self.workers} worker processes"
        return f"the Dask scheduler at {self.address}"

    @property
    def slots(self) -> int:
        """How many requests the cluster runs at once: a slot per worker thread, at most
        ``config.slots`` per worker (at least 1, for a cluster that has no worker yet)."""
        info = self.client.scheduler_info() if self.client is not None else {}
        workers = info.get("n_workers") or 0
        threads = info.get("total_threads") or 0
        if not workers and self.workers is not None:
            workers, threads = self.workers, self.workers * self.config.slots
        return max(1, min(threads, workers * self.config.slots))

    async def __aenter__(self) -> DaskCluster:
        try:
            from distributed import Client, LocalCluster

            from spider_core.dask import SpiderWorkerPlugin, WorkerPoolError, _LocalWorker
        except ImportError as e:
            raise BatchError(dask_import_error(e)) from None
        try:
            if self.address is None:
                _start_resource_tracker()
                self.cluster = await LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
                    n_workers=self.workers,
                    threads_per_worker=self.config.slots,
                    processes=True,
                    dashboard_address=None,
                    # Its HTTP server (health, metrics) on any free port: not 8787, which
                    # another cluster (another batch) may hold.
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    # The workers log as this process does: at least warnings, unless the
                    # CLI quieted Dask (without -v).
                    silence_logs=max(logging.WARNING, logging.getLogger("distributed").getEffectiveLevel()),
                    asynchronous=True,
                )
                self.client = Client(self.cluster, asynchronous=True, set_as_default=False)  # type: ignore[no-untyped-call]  # distributed is untyped
                await self.client
                # The workers share this terminal: their pools report as this process's would.
                levels = {name: logging.getLogger(name).getEffectiveLevel() for name in _WORKER_LOGGERS}
                await self.client.register_plugin(_LocalWorker(levels, _WORKER_LOG_FORMAT))
            else:
                # Kept before it connects, so that a failure closes it.
                self.client = Client(self.address, asynchronous=True, timeout=DASK_CONNECT_TIMEOUT,  # type: ignore[no-untyped-call]  # distributed is untyped
                                     set_as_default=False)
                await self.client
            # Shielded, and awaited at the end if the run is interrupted meanwhile: the plugin
            # is unregistered only once every worker has it (Dask could otherwise deliver the
            # removal to a worker before the plugin, whose pool would then stay).
            self._registering = asyncio.ensure_future(self.client.register_plugin(SpiderWorkerPlugin(self.config)))
            await asyncio.shield(self._registering)
        except BaseException as e:
            await self._close()
            if isinstance(e, WorkerPoolError):  # a worker without the package directory, say
                raise BatchError(str(e)) from None
            if isinstance(e, OSError) and str(e).startswith("Timed out"):
                raise BatchError(f"cannot reach {self.where}: no answer within {DASK_CONNECT_TIMEOUT:g} s") from None
            if isinstance(e, OSError | ValueError | TypeError):  # a refused handshake, a bad address
                raise BatchError(f"cannot use {self.where}: {_one_line(e)}") from None
            if isinstance(e, Exception):  # a worker process that does not start, say
                raise BatchError(f"cannot start {self.where}: {type(e).__name__}: {_one_line(e)}",
                                 EXIT_INTERNAL) from None
            raise  # interrupted
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def execute(self, request: ExecuteRequest, hard_timeout: float) -> Outcome:
        from distributed.utils import CancelledError  # type: ignore[attr-defined]  # distributed re-exports it untyped

        from spider_core.dask import submit

        future = submit(self.client, request, hard_timeout)
        try:
            outcome: Outcome = await future
            return outcome
        except asyncio.CancelledError:
            future.release()  # type: ignore[no-untyped-call]  # distributed is untyped; the worker running it kills its executor
            raise
        except InternalError:
            raise
        except CancelledError as e:  # not by this run: the scheduler is lost, say; the run ends
            reason = getattr(e, "reason", None) or _one_line(e)
            raise BatchError(
                f"the requests on {self.where} were cancelled ({reason}); --resume runs those without a result",
                EXIT_INTERNAL,
            ) from None
        except Exception as e:  # KilledWorker: lost with its workers too many times
            raise ClusterError(f"{type(e).__name__}: {_one_line(e)}") from None

    async def _close(self) -> None:
        """Unregister the plugin (a running scheduler) or close the cluster (``local:N``)."""
        client, cluster, registering = self.client, self.cluster, self._registering
        try:
            if registering is not None and cluster is None and client.status == "running":
                from spider_core.dask import PLUGIN_NAME

                # Even if its setup failed on a worker: the scheduler keeps a plugin it was given.
                await asyncio.wait({registering}, timeout=DASK_CONNECT_TIMEOUT)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.unregister_worker_plugin(PLUGIN_NAME), DASK_CONNECT_TIMEOUT)
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        finally:
            self.client = self.cluster = self._registering = None
            if registering is not None:
                if not registering.done():
                    registering.cancel()
                elif not registering.cancelled():
                    registering.exception()  # retrieved (raised in __aenter__ if it was awaited)
            if cluster is not None:
                with contextlib.suppress(Exception):  # its workers exit with this process anyway
                    await cluster.close()


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (which the cluster's worker processes use)
    with SIGHUP blocked, as it blocks SIGINT and SIGTERM itself: a hangup of the terminal is
    for ``spider``, which closes the cluster, not for the tracker, which would die of it and
    leave the cluster's semaphores behind. A SIGHUP meanwhile waits for the unblock."""
    from multiprocessing import resource_tracker

    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    try:
        resource_tracker.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def dask_import_error(e: ImportError) -> str:
    """The one line for ``--dask`` without a working ``distributed``."""
    if isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] in ("dask", "distributed"):
        return "--dask needs Dask's distributed: pip install 'spider-core-pool[dask]'"
    return f"--dask cannot import Dask's distributed: {_one_line(e)}"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
