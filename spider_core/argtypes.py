"""argparse value types shared by spider's commands, so each kind of value is parsed and
refused the same way everywhere."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
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
