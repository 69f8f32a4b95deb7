"""argparse value types shared by spider's commands and ``spider bench``'s own command line, so
each kind of value is parsed and refused the same way everywhere."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_N = TypeVar("_N", int, float)


def number(text: str, convert: Callable[[str], _N], kind: str, valid: Callable[[_N], bool], rule: str) -> _N:
    """``text`` as a number by ``convert``, refused in one sentence when it is not ``a
    {kind}`` or not ``valid`` (then ``{text!r} must be {rule}``)."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {kind}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"{text!r} must be {rule}")
    return value


def whole_number(text: str) -> int:
    """A whole number of at least 1 (``--slots``, ``--calls``, ...)."""
    return number(text, int, "whole number", lambda v: v >= 1, "at least 1")


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds (``--timeout``, ...)."""
    return number(text, float, "number of seconds", lambda v: 0 < v < math.inf, "a positive number of seconds")


def port_number(text: str) -> int:
    """A TCP port to listen on: 1 to 65535 (0: any free port, which the command prints)."""
    return number(text, int, "port number", lambda v: 0 <= v <= 65535, "a port number from 0 to 65535")


def fraction(text: str) -> float:
    """A number from 0 to 1 (``--fault-rate``)."""
    return number(text, float, "number", lambda v: 0 <= v <= 1, "from 0 to 1")


def directory(text: str) -> Path:
    """A directory argument; an empty one is refused, not taken for the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path is not a directory")
    return Path(text)


def path(text: str) -> Path:
    """A path argument; an empty one is refused, not taken for the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no file")
    return Path(text)


def requests_path(text: str) -> Path | str:
    """``-`` (standard input) as it is; anything else a path (``./-`` is a file named ``-``)."""
    return text if text == "-" else path(text)


_BYTES = re.compile(r"([0-9]+)\s*(?:([KMG])(?:iB)?)?", re.IGNORECASE | re.ASCII)


def byte_count(text: str) -> int:
    """A size in bytes: a whole number, optionally with K, M or G (KiB, MiB, GiB: powers of 1024)."""
    match = _BYTES.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of bytes (such as 134217728, 128M or 1G)")
    value = int(match[1]) << (10 * " KMG".index((match[2] or " ").upper()))
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 byte")
    return value
