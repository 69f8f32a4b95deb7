"""The ``spider`` command line, one module per command as tox has them: each holds its
parser (``add_parser``) and its function (``cmd_<name>``); :mod:`~spider_core.commands.common`
holds what they share and :mod:`~spider_core.commands.main` gathers them into ``spider``."""

from __future__ import annotations

from spider_core.commands.main import build_parser, main

__all__ = ["build_parser", "main"]
