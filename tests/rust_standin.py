"""A stand-in for spider's Rust ``spider-task-executor``, written in Python for the tests.

The project cannot build Rust here, so tests/test_rustexec.py drives this script instead of the
binary. It does what ``components/spider-task-executor/src/bin/spider_task_executor.rs`` does,
and nothing more:

- reads ``SPIDER_TDL_PACKAGE_DIR`` at start (``Error: SPIDER_TDL_PACKAGE_DIR env var not set``
  and exit 1 without it); sends no greeting;
- reads 4-byte big-endian length-delimited frames from fd 0 (tokio's ``LengthDelimitedCodec``:
  a frame over 8 MiB is an error, a partial frame at end of input is an error, end of input
  between frames ends the loop), each a bincode ``Request``; one that does not decode is an
  error; an error logs one line and exits 1, as ``main`` returning ``Err`` does;
- ``Execute``: the package cached by its *declared* name, else loaded from
  ``<dir>/<package>/lib<package>.so`` (a second package declaring a loaded name is
  ``DuplicatePackage``), the task run, one bincode ``Response::Result`` frame written to fd 1
  with ``elapsed_us`` around the load and the call; failures are the msgpack
  ``ExecutorError``;
- ``Shutdown``: logs it and exits 0; so does end of input;
- fd 1 stays the protocol channel (whatever a task prints lands in it), and diagnostics go to
  fd 2 as ``tracing_subscriber``'s JSON lines, filtered by ``RUST_LOG`` (errors only when it is
  unset, as ``EnvFilter::from_default_env`` does).

Its bincode is written here, independently of ``spider_rustexec.bincode``, so the two sides of
the tests cannot share a mistake. Packages are loaded with the project's own loader
(``spider_libso``), the same ctypes code the default executor uses.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import struct
import sys
import time

from spider_core.tdl import DuplicatePackage, ExecutorError
from spider_libso.loader import NativePackage, load_native_package

MAX_FRAME = 8 * 1024 * 1024
SOURCE = "components/spider-task-executor/src/bin/spider_task_executor.rs"
LEVELS = {"trace": 0, "debug": 1, "info": 2, "warn": 3, "error": 4, "off": 5}


def _threshold() -> int:
    """The most verbose level ``RUST_LOG`` enables (bare level directives only: the executor has
    no targets of its own worth filtering); ERROR when unset or invalid."""
    found = None
    for directive in os.environ.get("RUST_LOG", "").split(","):
        level = directive.strip().rpartition("=")[2].lower()
        if level in LEVELS:
            found = LEVELS[level] if found is None else min(found, LEVELS[level])
    return LEVELS["error"] if found is None else found


THRESHOLD = _threshold()


def trace(level: str, message: str, line: int, **fields: str) -> None:
    """One ``tracing`` event, as the binary's JSON subscriber formats it (no target)."""
    if LEVELS[level] < THRESHOLD:
        return
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event = {
        "timestamp": now,
        "level": level.upper(),
        "fields": {"message": message, **fields},
        "filename": SOURCE,
        "line_number": line,
    }
    os.write(2, (json.dumps(event, separators=(",", ":")) + "\n").encode())


class Fail(Exception):
    """``main`` returns ``Err``: anyhow prints ``Error: <message>`` and the process exits 1."""


def read_exact(size: int, buffer: bytearray) -> bool:
    """Fill ``buffer`` up to ``size`` bytes from fd 0; False at end of input."""
    while len(buffer) < size:
        data = os.read(0, max(size - len(buffer), 65536))
        if not data:
            return False
        buffer += data
    return True


class Frames:
    """``FramedRead<Stdin, LengthDelimitedCodec>``."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def next(self) -> bytes | None:
        if not read_exact(4, self.buffer):
            if self.buffer:
                raise Fail("bytes remaining on stream")
            return None
        (size,) = struct.unpack_from(">I", self.buffer)
        if size > MAX_FRAME:
            raise Fail("frame size too big")
        if not read_exact(4 + size, self.buffer):
            raise Fail("bytes remaining on stream")
        body = bytes(self.buffer[4 : 4 + size])
        del self.buffer[: 4 + size]
        return body


class Reader:
    """bincode 1.3.3 ``deserialize``: fixint, little-endian, trailing bytes allowed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if self.pos + size > len(self.data):
            raise Fail("io error: unexpected end of file")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def vec(self) -> bytes:
        return self.take(self.u64())

    def string(self) -> str:
        try:
            return self.vec().decode("utf-8")
        except UnicodeDecodeError as e:
            raise Fail(f"invalid utf-8: {e}") from None


def response(ok: bool, payload: bytes, elapsed_us: int) -> bytes:
    """A framed bincode ``Response::Result``."""
    body = struct.pack("<II", 0, 0 if ok else 1) + struct.pack("<Q", len(payload)) + payload
    body += struct.pack("<Q", min(elapsed_us, 2**64 - 1))
    if len(body) > MAX_FRAME:
        raise Fail("frame size too big")
    return struct.pack(">I", len(body)) + body


def write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


class Manager:
    """``TdlPackageManager``: packages by declared name."""

    def __init__(self) -> None:
        self.packages: dict[str, NativePackage] = {}

    def load(self, path: str) -> NativePackage:
        package = load_native_package(path)  # no expected name: spider's load checks none
        if package.name in self.packages:
            raise DuplicatePackage(package.name)
        self.packages[package.name] = package
        return package


def run_task(manager: Manager, pkg_dir: str, package: str, task: str, raw_ctx: bytes, raw_inputs: bytes) -> bytes:
    pkg = manager.packages.get(package)
    if pkg is None:
        pkg = manager.load(os.path.join(pkg_dir, package, f"lib{package}.so"))
    return pkg.execute(task, raw_ctx, raw_inputs)


def serve() -> None:
    pkg_dir = os.environ.get("SPIDER_TDL_PACKAGE_DIR")
    if pkg_dir is None:
        raise Fail("SPIDER_TDL_PACKAGE_DIR env var not set")
    frames = Frames()
    manager = Manager()
    trace("info", "Executor starts.", 95)
    while True:
        try:
            frame = frames.next()
        except Fail as e:
            trace("error", "Failed to receive request frame.", 99, err=f'Custom {{ kind: InvalidData, error: "{e}" }}')
            raise
        if frame is None:
            break
        request = Reader(frame)
        try:
            variant = request.u32()
            if variant == 0:
                package, task = request.string(), request.string()
                raw_ctx, raw_inputs = request.vec(), request.vec()
            elif variant != 1:
                raise Fail(f"invalid value: integer `{variant}`, expected variant index 0 <= i < 2")
        except Fail as e:
            trace("error", "Failed to deserialize request.", 101, err=str(e))
            raise
        if variant == 1:
            trace("info", "Received shutdown request.", 145)
            break
        started = time.perf_counter_ns()
        try:
            ok, payload = True, run_task(manager, pkg_dir, package, task, raw_ctx, raw_inputs)
        except ExecutorError as e:
            ok, payload = False, e.encode()
        elapsed_us = (time.perf_counter_ns() - started) // 1000
        try:
            data = response(ok, payload, elapsed_us)
        except Fail as e:
            trace("error", "Failed to send response.", 138, err=f'Custom {{ kind: InvalidInput, error: "{e}" }}')
            raise
        try:
            write_all(data)
        except OSError as e:
            trace("error", "Failed to send response.", 138, err=f"Os {{ code: {e.errno} }}")
            raise Fail(f"{e.strerror} (os error {e.errno})") from None
    trace("info", "Executor exits.", 151)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Rust binary has no KeyboardInterrupt
    try:
        serve()
    except Fail as e:
        os.write(2, f"Error: {e}\n".encode())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
