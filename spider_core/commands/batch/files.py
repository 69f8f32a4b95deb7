"""The two files of ``spider batch``: the request lines it reads (their fields, a line too
long to hold) and the results file it appends to (``--out``: checked, repaired, and read again
for ``--resume``)."""

from __future__ import annotations

import contextlib
import math
import os
import stat
import sys
from pathlib import Path
from typing import Any, BinaryIO

from spider_core.commands.reporting import EXIT_USAGE, parse_json
from spider_core.models import ExecuteRequest, PoolConfig

FIELDS = {"id", "package", "task", "inputs", "timeout"}
#: The requests argument that means standard input.
STDIN = "-"
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
