"""What ``spider packages`` shows about Python task packages.

Listing must not run package code in the caller, so the parent only finds the candidates
(directories holding ``__init__.py`` and no native library, then entry points) and a child,
``python -m spider_pytasks.inspect``, imports each one (running its top level, never its init
function) and reports its tasks' signatures. A package that crashes or hangs the child is
reported as broken; the others keep their answers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from spider_core.plugin import PackageInfo
from spider_core.tdl import InvalidPackageName, library_path, validate_package_name
from spider_pytasks.finder import ENTRY_POINT_GROUP, KIND, find_directory_package

#: Seconds the listing may take for all packages together.
DEFAULT_TIMEOUT = 60.0
#: Seconds one package may take to answer before it is reported as hanging.
PACKAGE_TIMEOUT = 10.0


# -- in the parent: candidates, then the child's answers ------------------------------------


def _candidates(root: Path | None, installed: bool) -> tuple[list[dict[str, str]], list[PackageInfo]]:
    """Packages to inspect, and those already known to be broken (duplicate installs)."""
    candidates: list[dict[str, str]] = []
    broken: list[PackageInfo] = []
    taken: set[str] = set()
    if root is not None and root.is_dir():
        for child in sorted(root.iterdir()):
            try:
                validate_package_name(child.name)
            except InvalidPackageName:
                continue
            if library_path(root, child.name).is_file():
                taken.add(child.name)  # native: spider_libso lists it
                continue
            directory = find_directory_package(root, child.name)
            if directory is not None:
                taken.add(child.name)
                candidates.append({"name": child.name, "directory": str(directory.absolute())})
    if installed:
        by_name: dict[str, dict[str, importlib.metadata.EntryPoint]] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            by_name.setdefault(ep.name, {}).setdefault(ep.value, ep)
        for name, eps in sorted(by_name.items()):
            if name in taken:  # a directory package of the same name is used instead
                continue
            try:
                validate_package_name(name)
            except InvalidPackageName as e:
                ep = next(iter(eps.values()))
                broken.append(PackageInfo(name=name, kind=KIND, location=_dist_location(ep), error=str(e)))
                continue
            if len(eps) > 1:
                sources = "; ".join(f"{value} from {ep.dist.name if ep.dist else '?'}" for value, ep in eps.items())
                broken.append(
                    PackageInfo(
                        name=name,
                        kind=KIND,
                        location=_dist_location(next(iter(eps.values()))),
                        error=f"installed more than once ({sources}); uninstall all but one",
                    )
                )
                continue
            (ep,) = eps.values()
            candidates.append({"name": name, "entry_point": ep.value, "dist_location": str(_dist_location(ep))})
    return candidates, broken


def _dist_location(ep: importlib.metadata.EntryPoint) -> Path:
    return Path(ep.dist.locate_file("")) if ep.dist is not None else Path(".")  # type: ignore[arg-type]  # a Path for an installed distribution; typeshed says SimplePath


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


def list_packages(
    package_dir: Path | str | None, *, installed: bool = True, timeout: float = DEFAULT_TIMEOUT
) -> list[PackageInfo]:
    """Every Python task package: those in ``package_dir`` (by name), then installed ones
    (entry-point group ``spider_core.packages``) not hidden by a directory of the same name.
    Each has its task signatures (``add(a: Complex, b: Complex) -> Complex``) or an error.

    :param package_dir: The package directory; None or a missing directory lists none there.
    :param installed: Whether to list installed packages too.
    :param timeout: Seconds an inspecting child process may take.
    """
    root = Path(package_dir) if package_dir is not None else None
    candidates, infos = _candidates(root, installed)
    if not candidates:
        return infos
    for candidate, answer in zip(candidates, _inspect_all(candidates, timeout), strict=True):
        if "directory" in candidate:
            location = Path(candidate["directory"])
        else:
            location = Path(answer.get("location") or candidate["dist_location"])
        infos.append(
            PackageInfo(
                name=candidate["name"],
                kind=KIND,
                location=location,
                tasks=tuple(answer.get("tasks") or ()),
                error=answer.get("error"),
            )
        )
    return infos
