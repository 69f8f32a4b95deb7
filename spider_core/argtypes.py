"""argparse value types shared by spider's commands, so each kind of value is parsed and
refused the same way everywhere."""

from __future__ import annotations

import argparse


def whole_number(text: str) -> int:
    """A whole number of at least 1 (``--slots``, ``--calls``, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value
