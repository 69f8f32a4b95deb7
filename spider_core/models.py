"""attrs models: the executor protocol messages and package sources.

Everything that crosses a process boundary is ``@frozen(kw_only=True)``; the single cattrs
converter (:mod:`spider_core.converter`) turns these into primitives and back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from attrs import field, frozen
from attrs.validators import instance_of

# -- executor protocol ----------------------------------------------------------------------


@frozen(kw_only=True)
class Execute:
    """Run ``task`` of ``package``; the executor answers with a :class:`Result` echoing ``seq``."""

    seq: int
    package: str
    task: str
    raw_ctx: bytes
    raw_inputs: bytes


@frozen(kw_only=True)
class Shutdown:
    """Ask the executor to exit 0."""


@frozen(kw_only=True)
class Result:
    """The answer to :class:`Execute`.

    ``ok``: ``payload`` is the wire-format outputs; otherwise it is a msgpack ``ExecutorError``.
    ``elapsed_us`` covers the package call only.
    """

    seq: int
    ok: bool
    payload: bytes
    elapsed_us: int


@frozen(kw_only=True)
class Ready:
    """Sent once by the executor when it is ready for requests."""

    pid: int
    abi_version: str


Request = Execute | Shutdown
Response = Result | Ready
Message = Execute | Shutdown | Result | Ready

# -- task packages --------------------------------------------------------------------------


@frozen(kw_only=True)
class PackageSource:
    """Where a task package lives, as ``spider_resolve_package`` reports it.

    :param package: The requested package name.
    :param kind: Which loader understands it: ``"native"`` for a ``lib<name>.so``; plugins
        may add their own kinds.
    :param location: The file or directory holding the package.
    :param details: Anything else the matching loader needs.
    """

    package: str = field(validator=instance_of(str))
    kind: str = field(validator=instance_of(str))
    location: Path = field(converter=Path)
    details: Any = None


@runtime_checkable
class TaskPackage(Protocol):
    """A loaded package, as ``spider_load_package`` returns it."""

    name: str
    kind: str

    def execute(self, task: str, raw_ctx: bytes, raw_inputs: bytes) -> bytes:
        """Run ``task``; return wire-format outputs or raise an ``ExecutorError``."""
        ...


__all__ = [
    "Execute",
    "Message",
    "PackageSource",
    "Ready",
    "Request",
    "Response",
    "Result",
    "Shutdown",
    "TaskPackage",
]
