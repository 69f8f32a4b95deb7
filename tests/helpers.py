"""Helpers shared by the tests (the ``tests`` directory is on sys.path under pytest)."""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
TASK_PACKAGES = REPO / "task_packages"
#: The installed ``spider`` console script of the interpreter running the tests.
SPIDER = Path(sys.executable).with_name("spider")
PKG = "integration_test_tasks"

_T = TypeVar("_T")

#: Seconds a test waits for something the code under test will do: generous, because the
#: machine may be loaded; a wait that passes returns as soon as the condition holds.
WAIT = 30.0


def wait_until(predicate: Callable[[], _T], what: str, timeout: float = WAIT, interval: float = 0.01) -> _T:
    """Poll ``predicate`` until it returns something true, and return that.

    Tests wait on the condition they need (a slot busy, a file written, a process gone),
    never for a guessed time: a loaded machine only makes them slower, not wrong.

    :param what: The condition, for the failure: ``never happened within 30 s: <what>``.
    :raises AssertionError: ``timeout`` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout:g} s: {what}")
        time.sleep(interval)
    return value


async def async_wait_until(predicate: Callable[[], _T], what: str, timeout: float = WAIT, interval: float = 0.01) -> _T:
    """:func:`wait_until` on an event loop: the loop runs on between polls (``interval=0``
    polls once per turn of the loop, for a state that lasts only a few turns)."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened within {timeout:g} s: {what}")
        await asyncio.sleep(interval)
    return value


def dead(pid: int) -> bool:
    """Whether process ``pid`` has ended: gone, or a zombie its parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def callers_waiting(pool: Any) -> int:
    """Callers of a ``ProcessPool`` waiting for their turn on a slot: queued for one, or with
    their request sent ahead behind the caller that holds one (``spider_core.pool.pipeline``)."""
    return int(pool.stats().queued) + sum(len(pipe.tickets) for pipe in pool.calls._pipes.values())


def make_distribution(root: Path, dist: str, module: str, source: str, entry_name: str) -> Path:
    """A real, importable distribution (module + dist-info with a spider_core entry point) in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[spider_core]\n{entry_name} = {module}\n")
    return root


def write_c_package(root: Path, name: str, source: str) -> Path:
    """Write ``root/<name>/<name>.c`` and return the source directory."""
    src = root / name
    src.mkdir(parents=True)
    (src / f"{name}.c").write_text(textwrap.dedent(source))
    return src


# Pieces of hand-written C packages, for tests of what a loader does with broken ones.
C_HEADER = '#include "spider_tdl.h"\n'
C_VERSION = (
    "SPIDER_TDL_EXPORT spider_tdl_version __spider_tdl_package_get_version(void) "
    "{ return spider_tdl_host_version(); }\n"
)
#: ``__spider_tdl_package_execute`` with ``BODY`` to replace by its statements.
C_EXECUTE = """
SPIDER_TDL_EXPORT spider_tdl_task_execution_result __spider_tdl_package_execute(
        spider_tdl_char_array name, spider_tdl_byte_array ctx, spider_tdl_byte_array inputs) {
    (void)name; (void)ctx; (void)inputs;
    BODY
}
"""


def c_name_fn(name: str) -> str:
    """``__spider_tdl_package_get_name`` returning ``name`` (a C string literal's contents)."""
    return (
        "SPIDER_TDL_EXPORT spider_tdl_char_array __spider_tdl_package_get_name(void) "
        f'{{ spider_tdl_char_array a = {{"{name}", sizeof("{name}") - 1}}; return a; }}\n'
    )


class ExecutorProcess:
    """The real executor subprocess, driven directly through the default framing."""

    def __init__(self, package_dir: Path | None, env: dict[str, str] | None = None, max_frame_size: int = 64 << 20):
        import os
        import subprocess

        from spider_msgpack import MsgpackFraming

        self.framing = MsgpackFraming(max_frame_size)
        self.decoder = self.framing.decoder()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SPIDER_")}
        child_env["SPIDER_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        if package_dir is not None:
            child_env["SPIDER_TDL_PACKAGE_DIR"] = str(package_dir)
        child_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spider_core.executor"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_env,
        )
        self.seq = 0

    def send(self, message: Any) -> None:
        """Send a protocol message (a model), or any msgpack-able value as it is."""
        import attrs

        from spider_core.protocol import message_to_primitive

        if attrs.has(type(message)):
            message = message_to_primitive(message)
        frame = self.framing.encode(message)
        self.proc.stdin.writelines(frame if isinstance(frame, list) else [frame])
        self.proc.stdin.flush()

    def receive(self) -> Any:
        """The next message (a ``Ready`` or a ``Result``), or None at end of output."""
        import os

        from spider_core.protocol import message_from_primitive

        while True:
            message = self.decoder.next_message()
            if message is not None:
                return message_from_primitive(message)
            data = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not data:
                return None
            self.decoder.feed(data)

    def execute(self, package: str, task: str, inputs: bytes, ctx: bytes | None = None) -> Any:
        """Run one task; its ``Result``, or None if the executor died."""
        from spider_core.protocol import Execute
        from spider_core.tdl import TaskContext

        self.seq += 1
        raw_ctx = TaskContext().encode() if ctx is None else ctx
        self.send(Execute(seq=self.seq, package=package, task=task, raw_ctx=raw_ctx, raw_inputs=inputs))
        return self.receive()

    def wait(self, timeout: float = 10) -> int:
        return self.proc.wait(timeout)

    def stderr_events(self) -> list[dict]:
        import json

        lines = self.proc.stderr.read().decode().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


# -- spider batch files ------------------------------------------------------------------------


def write_requests(path: Path, lines: list[object]) -> Path:
    """A requests file: each line a JSON object, or a string written as it is."""
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def results(path: Path) -> list[dict]:
    """The records of a results file."""
    return [json.loads(line) for line in path.read_text().split("\n") if line]


def call(id_: str, task: str, *inputs: object, **extra: object) -> dict:
    """A request line for the bundled package."""
    return {"id": id_, "package": PKG, "task": task, "inputs": list(inputs), **extra}


def tasks_run(log_dir: Path, task: str) -> int:
    """How many ``task`` calls the executors answered, from their debug logs."""
    count = 0
    for log in log_dir.glob("*.log"):
        for line in log.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            count += event.get("event") == "task done" and event.get("task") == task
    return count
