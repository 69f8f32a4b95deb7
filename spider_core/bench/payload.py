"""The payload workload: one ``bytes`` object echoed through each contender, from 1 KiB to 256
MiB, to show what a large task input and output cost.

Contenders, each running the echo with one worker, one call at a time:

- ``spider-core``: :class:`~spider_core.SyncProcessPool` running the C package's
  ``raw_outputs`` task (its input ``bytes`` become its output buffer as they are: the executor
  copies them once, as any package that returns its input does), with ``max_frame_size`` raised
  to fit the largest size;
- ``spider-core-shm``: the same with ``shm_threshold`` at :data:`SHM_THRESHOLD` (the
  ``spider_shm`` plugin: inputs and outputs from that size on cross in shared memory);
- ``pipe``: the floor, a child process that reads a 4-byte big-endian length and that many
  bytes (``readinto`` one buffer of that length) and writes them back, on pipes of the
  default size;
- ``futures`` (ProcessPoolExecutor, fork), ``multiprocessing`` and ``loky``, returning their
  argument (:func:`peer_echo_bytes`); peers that are not installed are skipped with a note.

Each round runs every contender once per size, the starting contender rotating. Every echo is
checked byte for byte (untimed). Per call it records the round trip, for spider-core the
executor's ``elapsed_us`` (the task's own time: the pool's overhead is the round trip minus it),
the parent's peak resident memory above its resident memory just before the call, and the
workers' peak resident memory (``VmHWM``, reset through ``/proc/<pid>/clear_refs`` before each
call; None where the kernel does not allow it). The report gives medians, time per MiB, the
ratios to the pipe and to ProcessPoolExecutor, and ``payload.png``, the median round trip
against the size, log-log (with matplotlib).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from attrs import frozen

from spider_core.bench.contenders import BLOCKING_PEERS, PACKAGE, _missing
from spider_core.models import ExecuteRequest, PoolConfig, Success
from spider_core.pool import SyncProcessPool

KIB, MIB = 1 << 10, 1 << 20
#: The payload sizes, in bytes: ``--quick`` stops at 64 MiB.
SIZES = (KIB, 64 * KIB, MIB, 8 * MIB, 64 * MIB, 256 * MIB)
QUICK_SIZES = SIZES[:-1]
QUICK_PAYLOAD_ROUNDS, DEFAULT_PAYLOAD_ROUNDS = 3, 5
OURS = "spider-core"
OURS_SHM = "spider-core-shm"
#: ``PoolConfig.shm_threshold`` of ``spider-core-shm``.
SHM_THRESHOLD = MIB
PIPE = "pipe"
#: The peers this workload takes from ``--peers``, in report order.
PAYLOAD_PEERS = ("futures", "multiprocessing", "loky")
PLOT_NAME = "payload.png"
HARD_TIMEOUT = 600.0
#: The smallest size the workload echoes: its payload is a wire frame of one string.
MIN_SIZE = 9
_UNITS = {"": 1, "b": 1, "kib": KIB, "mib": MIB, "gib": 1 << 30}

_HEADER = struct.Struct(">I")
_STOP = 0xFFFFFFFF  # the pipe child's "exit" header: no payload is that large


def peer_echo_bytes(data: bytes) -> bytes:
    """The echo for the peers."""
    return data


def parse_sizes(text: str) -> tuple[int, ...]:
    """``1KiB,64KiB,1MiB`` as byte counts (``--payload-sizes``).

    :raises argparse.ArgumentTypeError: not a comma-separated list of sizes of at least ``MIN_SIZE``.
    """
    import argparse
    import re

    sizes = []
    for item in filter(None, (item.strip() for item in text.split(","))):
        match = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", item)
        unit = _UNITS.get(match[2].lower()) if match else None
        if match is None or unit is None:
            raise argparse.ArgumentTypeError(f"{item!r} is not a size: give bytes, or a number with KiB, MiB or GiB")
        sizes.append(int(match[1]) * unit)
    try:
        check_sizes(sizes)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return tuple(sizes)


def check_sizes(sizes: Sequence[int]) -> None:
    """:raises ValueError: no sizes, or one below ``MIN_SIZE``."""
    if not sizes or min(sizes) < MIN_SIZE:
        raise ValueError(f"payload sizes must be at least {MIN_SIZE} bytes each, got {list(sizes)}")


def payload_of_size(size: int) -> bytes:
    """``size`` bytes that form a valid wire frame (one msgpack string of ``x``), so spider-core's
    outputs decode; at least 9 bytes (the smallest such frame)."""
    for header in (1, 2, 3, 5):  # msgpack fixstr, str8, str16, str32
        length = size - 8 - header
        fits = {1: length < 32, 2: 32 <= length < 256, 3: 256 <= length < 65536, 5: length >= 65536}[header]
        if length >= 0 and fits:
            break
    else:
        raise ValueError(f"no wire frame is exactly {size} bytes")
    from spider_core.tdl import encode_values

    data = encode_values(["x" * length])
    assert len(data) == size
    return data


# -- the floor: a raw pipe echo ---------------------------------------------------------------


def _read_exactly(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    while view:
        count = os.readv(fd, [view])
        if not count:
            raise EOFError("the other side closed the pipe")
        view = view[count:]
    return buffer


def _write_all(fd: int, parts: list[Any]) -> None:
    views = [memoryview(part).cast("B") for part in parts]
    while views:
        count = os.writev(fd, views)
        while views and count >= len(views[0]):
            count -= len(views.pop(0))
        if views:
            views[0] = views[0][count:]


def pipe_child_main() -> None:
    """The pipe child: echo length-prefixed byte strings on stdin/stdout until the stop header."""
    while True:
        (size,) = _HEADER.unpack(_read_exactly(0, _HEADER.size))
        if size == _STOP:
            return
        _write_all(1, [_HEADER.pack(size), _read_exactly(0, size)])


class Echo(Protocol):
    name: str

    def start(self) -> None: ...

    def echo(self, data: bytes) -> tuple[Any, float | None]:
        """Echo ``data``: what came back, and the executor's own µs (None if not measured)."""
        ...

    def close(self) -> None: ...


class _Pipe:
    name = PIPE

    def start(self) -> None:
        code = "from spider_core.bench.payload import pipe_child_main; pipe_child_main()"
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._out = self.proc.stdin.fileno()  # type: ignore[union-attr]  # pipes
        self._in = self.proc.stdout.fileno()  # type: ignore[union-attr]

    def echo(self, data: bytes) -> tuple[Any, float | None]:
        _write_all(self._out, [_HEADER.pack(len(data)), data])
        (size,) = _HEADER.unpack(_read_exactly(self._in, _HEADER.size))
        return _read_exactly(self._in, size), None

    def close(self) -> None:
        _write_all(self._out, [_HEADER.pack(_STOP)])
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait()
        self.proc.stdout.close()  # type: ignore[union-attr]


class _Ours:
    def __init__(self, package_dir: Path, name: str, max_size: int, **config: Any) -> None:
        self.name = name
        self.pool = SyncProcessPool(
            PoolConfig(package_dir=package_dir, log_dir=None, max_frame_size=max_size + MIB, **config)
        )

    def start(self) -> None:
        self.pool.start()

    def echo(self, data: bytes) -> tuple[Any, float | None]:
        outcome = self.pool.execute(ExecuteRequest(package=PACKAGE, task="raw_outputs", inputs=[data]), HARD_TIMEOUT)
        if not isinstance(outcome, Success):
            raise RuntimeError(f"{self.name}: the echo of {len(data)} bytes did not succeed: {outcome!r:.300}")
        return outcome.outputs, float(outcome.elapsed_us)

    def close(self) -> None:
        self.pool.close()


class _Peer:
    def __init__(self, name: str, opener: Callable[[int], Any]) -> None:
        self.name = name
        self._opener = opener

    def start(self) -> None:
        self._run, _, self._close = self._opener(1)
        self._run(peer_echo_bytes, (b"",))  # some pools start their worker on the first call

    def echo(self, data: bytes) -> tuple[Any, float | None]:
        return self._run(peer_echo_bytes, (data,)), None

    def close(self) -> None:
        self._close()


# -- memory probes ----------------------------------------------------------------------------


def _status_kib(pid: int | str, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak(pid: int | str) -> bool:
    """Reset the peak resident memory of ``pid`` to its current one; whether the kernel allowed it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _children() -> set[int]:
    """The processes whose parent is this one."""
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == me:
                        found.add(int(entry))
    return found


# -- results ----------------------------------------------------------------------------------


@frozen(kw_only=True)
class PayloadSamples:
    """One contender's echoes of one size: per round, the round trip (µs), the executor's own
    time (µs, spider-core only), the parent's and the workers' peak RSS (KiB; above the
    parent's RSS before the call, and the workers' absolute peak)."""

    name: str
    size: int
    e2e_us: tuple[float, ...]
    executor_us: tuple[float, ...] = ()
    parent_peak_kib: tuple[int, ...] = ()
    worker_peak_kib: tuple[int, ...] = ()

    def median_ms(self) -> float:
        return statistics.median(self.e2e_us) / 1000

    def overhead_ms(self) -> float | None:
        """The median round trip minus the executor's own time (spider-core only)."""
        if not self.executor_us:
            return None
        return statistics.median(e - x for e, x in zip(self.e2e_us, self.executor_us, strict=True)) / 1000


@frozen(kw_only=True)
class PayloadResult:
    """The payload workload: every contender at every size."""

    sizes: tuple[int, ...]
    rounds: int
    samples: tuple[PayloadSamples, ...]

    def get(self, name: str, size: int) -> PayloadSamples | None:
        return next((s for s in self.samples if s.name == name and s.size == size), None)

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(s.name for s in self.samples))


def _size_label(size: int) -> str:
    return f"{size // MIB} MiB" if size >= MIB else f"{size // KIB} KiB"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def _median_kib(values: Sequence[int]) -> str:
    return f"{statistics.median(values) / 1024:,.0f}" if values else "n/a"


def payload_markdown(result: PayloadResult, plot: Path | None) -> list[str]:
    """The report's section for the payload workload."""
    lines = [
        "## payload: one bytes object echoed, 1 worker",
        "",
        f"Medians of {result.rounds} echoes per size and contender, interleaved. *overhead*: spider-core's round "
        "trip minus the executor's own time (the task copying its input); the ratios compare it and the whole round "
        "trip with the whole raw pipe echo and with ProcessPoolExecutor's. RSS: the parent's peak above its RSS "
        "before the call, the worker's peak, in MiB.",
        "",
        "| payload | contender | round trip ms | ms per MiB | overhead ms | / pipe | overhead / pipe | / futures "
        "| parent peak MiB | worker peak MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in result.sizes:
        pipe, futures = result.get(PIPE, size), result.get("futures", size)
        pipe_ms = pipe.median_ms() if pipe else None
        futures_ms = futures.median_ms() if futures else None
        for name in result.names:
            s = result.get(name, size)
            if s is None:
                continue
            ms, overhead = s.median_ms(), s.overhead_ms()
            lines.append(
                f"| {_size_label(size)} | {name} | {ms:,.2f} | {ms / (size / MIB):,.2f} | "
                f"{'n/a' if overhead is None else f'{overhead:,.2f}'} | {_ratio(ms, pipe_ms)} | "
                f"{_ratio(overhead, pipe_ms)} | {_ratio(ms, futures_ms)} | {_median_kib(s.parent_peak_kib)} | "
                f"{_median_kib(s.worker_peak_kib)} |"
            )
    lines.append("")
    targets = payload_targets(result)
    if targets:
        lines += ["Targets (issue 26):", ""]
        lines += [f"- {target}: {measured}: {'met' if met else 'unmet'}" for target, measured, met in targets]
        lines.append("")
    if plot is not None:
        lines += [f"![round trip against payload size]({plot.name})", ""]
    return lines


def payload_targets(result: PayloadResult) -> list[tuple[str, str, bool]]:
    """``(target, measured, met)`` for each target whose sizes and contenders were run."""
    found = []
    for name, size, most in ((OURS, 64 * MIB, 2.0), (OURS, 8 * MIB, 1.5), (OURS_SHM, 64 * MIB, 1.0)):
        ours, pipe = result.get(name, size), result.get(PIPE, size)
        overhead = ours.overhead_ms() if ours else None
        if overhead is not None and pipe is not None:
            ratio = overhead / pipe.median_ms()
            found.append(
                (f"{name} {_size_label(size)} overhead <= {most}x the pipe's round trip", f"{ratio:.2f}x", ratio <= most)
            )
    ours, futures = result.get(OURS, 64 * MIB), result.get("futures", 64 * MIB)
    if ours and futures:
        ratio = ours.median_ms() / futures.median_ms()
        found.append(("64 MiB round trip <= 1.0x ProcessPoolExecutor's", f"{ratio:.2f}x", ratio <= 1.0))
    per_mib = [s.median_ms() / (s.size / MIB) for s in result.samples if s.name == OURS and s.size >= 8 * MIB]
    if len(per_mib) > 1:
        spread = max(per_mib) / min(per_mib)
        found.append(("ms per MiB from 8 MiB up within 1.3x of constant", f"{spread:.2f}x", spread <= 1.3))
    if ours and ours.parent_peak_kib:
        peak = statistics.median(ours.parent_peak_kib) * KIB / (64 * MIB)
        found.append(("parent's peak RSS during a 64 MiB echo <= 3x the payload", f"{peak:.2f}x", peak <= 3.0))
    return found


def payload_json(result: PayloadResult) -> dict[str, Any]:
    return {
        "sizes": list(result.sizes),
        "rounds": result.rounds,
        "samples": [
            {
                "name": s.name,
                "size": s.size,
                "e2e_us": list(s.e2e_us),
                "executor_us": list(s.executor_us),
                "parent_peak_kib": list(s.parent_peak_kib),
                "worker_peak_kib": list(s.worker_peak_kib),
            }
            for s in result.samples
        ],
    }


def write_payload_plot(result: PayloadResult, path: Path) -> Path | None:
    """``payload.png``: the median round trip of each contender against the size, log-log; None
    without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name in result.names:
        points = [(s.size, s.median_ms()) for s in result.samples if s.name == name]
        axes.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("payload (bytes)")
    axes.set_ylabel("median round trip (ms)")
    axes.set_title(f"echo of one bytes object, 1 worker, median of {result.rounds}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.savefig(path, dpi=110)
    return path


# -- running ----------------------------------------------------------------------------------


def payload_contenders(package_dir: Path, peers: Sequence[str], max_size: int) -> tuple[list[Echo], list[str]]:
    """The contenders in report order (spider-core first), and notes on the peers skipped."""
    contenders: list[Echo] = [
        _Ours(package_dir, OURS, max_size),
        _Ours(package_dir, OURS_SHM, max_size, shm_threshold=SHM_THRESHOLD),
        _Pipe(),
    ]
    notes = []
    for name in PAYLOAD_PEERS:
        if name not in peers:
            continue
        missing = _missing(name)
        if missing is not None:
            notes.append(f"payload: {missing}")
        else:
            contenders.append(_Peer(name, BLOCKING_PEERS[name][1]))
    return contenders, notes


def run_payload(
    package_dir: Path,
    peers: Sequence[str],
    sizes: Sequence[int],
    rounds: int,
    notes: list[str],
    progress: Callable[[str, int, int], None] = lambda phase, done, total: None,
) -> PayloadResult:
    """Run the payload workload (see the module's documentation)."""
    contenders, skipped = payload_contenders(package_dir, peers, max(sizes))
    notes.extend(skipped)
    workers: dict[str, set[int]] = {}
    started: list[Echo] = []
    try:
        # The peers start first (they may fork: their workers must not inherit our pipes).
        for contender in sorted(contenders, key=lambda c: not isinstance(c, _Peer)):
            before = _children()
            contender.start()
            started.append(contender)
            workers[contender.name] = _children() - before
        samples = []
        order = list(range(len(contenders)))
        for number, size in enumerate(sizes):
            data = payload_of_size(size)
            rows: list[list[tuple[float, float | None, int, int | None]]] = [[] for _ in contenders]
            for round_ in range(rounds):
                shift = round_ % len(order)
                for index in order[shift:] + order[:shift]:
                    rows[index].append(_timed_echo(contenders[index], workers[contenders[index].name], data))
            for contender, row in zip(contenders, rows, strict=True):
                samples.append(
                    PayloadSamples(
                        name=contender.name,
                        size=size,
                        e2e_us=tuple(r[0] for r in row),
                        executor_us=tuple(r[1] for r in row if r[1] is not None),
                        parent_peak_kib=tuple(r[2] for r in row),
                        worker_peak_kib=tuple(r[3] for r in row if r[3] is not None),
                    )
                )
            progress("payload", number + 1, len(sizes))
            del data
    finally:
        for contender in reversed(started):
            contender.close()
    return PayloadResult(sizes=tuple(sizes), rounds=rounds, samples=tuple(samples))


def _timed_echo(contender: Echo, workers: set[int], data: bytes) -> tuple[float, float | None, int, int | None]:
    """One checked echo: µs, the executor's µs, the parent's peak KiB above its RSS before,
    the workers' peak KiB (None if it could not be reset)."""
    _reset_peak("self")
    reset = all(_reset_peak(pid) for pid in workers) and bool(workers)
    idle = _status_kib("self", "VmRSS:") or 0
    start = time.perf_counter()
    got, executor_us = contender.echo(data)
    e2e = (time.perf_counter() - start) * 1e6
    parent_peak = (_status_kib("self", "VmHWM:") or 0) - idle
    worker_peak = max((_status_kib(pid, "VmHWM:") or 0) for pid in workers) if reset else None
    if got != data:
        raise RuntimeError(f"{contender.name}: the echo of {len(data)} bytes came back different ({len(got)} bytes)")
    del got
    return e2e, executor_us, max(parent_peak, 0), worker_peak
