"""What ``spider packages`` shows about Python task packages.

Listing must not run package code in the caller, so the parent only finds the candidates
(directories holding ``__init__.py`` and no native library, or an installed package's entry
point) and a child,
``python -m spider_pytasks.inspect``, imports each one (running its top level, never its init
function) and reports its tasks' signatures. A package that crashes or hangs the child is
reported as broken; the others keep their answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from spider_core.plugin import InstalledPackage, PackageInfo
from spider_core.tdl import InvalidPackageName, validate_package_name
from spider_pytasks.finder import KIND, find_directory_package

#: Seconds the listing may take for all packages together.
DEFAULT_TIMEOUT = 60.0
#: Seconds one package may take to answer before it is reported as hanging.
PACKAGE_TIMEOUT = 10.0


# -- in the parent: candidates, then the child's answers ------------------------------------


def _candidates(root: Path | None) -> list[dict[str, str]]:
    """The directory packages to inspect (directories holding ``__init__.py`` and no native
    library)."""
    candidates: list[dict[str, str]] = []
    if root is None or not root.is_dir():
        return candidates
    for child in sorted(root.iterdir()):
        try:
            validate_package_name(child.name)
        except InvalidPackageName:
            continue
        directory = find_directory_package(root, child.name)
        if directory is not None:
            candidates.append({"name": child.name, "directory": str(directory.absolute())})
    return candidates


def _run_child(
    candidates: list[dict[str, str]], deadline: float, per_package: float
) -> tuple[dict[int, dict[str, Any]], str]:
    """The child's answers by candidate index, and what happened to it if it failed.

    The child runs in a session of its own and its whole process group is killed at the
    end, so processes a package starts at import time neither outlive the listing nor keep
    it waiting for the end of their output.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "spider_pytasks.inspect"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    answers: dict[int, dict[str, Any]] = {}
    failure = ""
    try:  # stdin and stdout are pipes (the ignores)
        proc.stdin.write(json.dumps(candidates).encode())  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        fd = proc.stdout.fileno()  # type: ignore[union-attr]
        pending = b""
        last_answer = time.monotonic()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while len(answers) < len(candidates):
                limit = min(deadline, last_answer + per_package)
                wait = limit - time.monotonic()
                if wait <= 0:
                    failure = f"no answer within {limit - last_answer:.2g} s"
                    break
                if not selector.select(wait):
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    failure = f"exit status {proc.wait()}"
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    try:
                        record = json.loads(line)
                        answers[int(record["index"])] = record
                    except (ValueError, KeyError, TypeError):
                        continue
                    last_answer = time.monotonic()
    except BrokenPipeError:
        failure = f"exit status {proc.wait()}"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]  # a pipe
    return answers, failure


def _inspect_all(candidates: list[dict[str, str]], timeout: float) -> list[dict[str, Any]]:
    """One answer per candidate. If a package kills or hangs the child, it is the first
    unanswered one: it gets an error and a fresh child inspects the rest, all within
    ``timeout`` seconds (a package that does not answer gets at most ``PACKAGE_TIMEOUT``)."""
    deadline = time.monotonic() + timeout
    per_package = min(PACKAGE_TIMEOUT, timeout)
    answers: list[dict[str, Any]] = []
    while len(answers) < len(candidates):
        pending = candidates[len(answers) :]
        found, failure = _run_child(pending, deadline, per_package)
        for i in range(len(pending)):
            if i not in found:
                break
            answers.append(found[i])
        else:
            break
        answers.append({"tasks": [], "error": f"importing it broke the inspecting process ({failure})"})
        if time.monotonic() >= deadline:
            answers.extend(
                {"tasks": [], "error": f"not inspected: listing took longer than {timeout:g} s"}
                for _ in candidates[len(answers) :]
            )
    return answers


def list_packages(package_dir: Path | str | None, *, timeout: float = DEFAULT_TIMEOUT) -> list[PackageInfo]:
    """Every Python task package in ``package_dir``, each with its task signatures
    (``add(a: Complex, b: Complex) -> Complex``) or an error.

    :param package_dir: The package directory; None or a missing directory lists none.
    :param timeout: Seconds an inspecting child process may take.
    """
    candidates = _candidates(Path(package_dir) if package_dir is not None else None)
    if not candidates:
        return []
    return [
        PackageInfo(
            name=candidate["name"],
            kind=KIND,
            location=Path(candidate["directory"]),
            tasks=tuple(answer.get("tasks") or ()),
            error=answer.get("error"),
        )
        for candidate, answer in zip(candidates, _inspect_all(candidates, timeout), strict=True)
    ]


def inspect_installed(
    name: str, installed: InstalledPackage, root: Path, *, timeout: float = DEFAULT_TIMEOUT
) -> PackageInfo:
    """Describe the installed Python package ``name`` (its entry point ``installed``, its
    distribution installed in ``root``), importing it in a child process."""
    candidate = {"name": name, "entry_point": installed.entry_point}
    (answer,) = _inspect_all([candidate], timeout)
    return PackageInfo(
        name=name,
        kind=KIND,
        location=Path(answer.get("location") or root),
        source="installed",
        distribution=installed.distribution,
        version=installed.version,
        tasks=tuple(answer.get("tasks") or ()),
        error=answer.get("error"),
    )
