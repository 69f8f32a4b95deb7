"""``{spider-help} COMMAND``: the ``--help`` text of ``spider`` (no argument) or of one of its
commands, taken from the CLI's own parser, so the CLI page can never fall behind the code."""

from __future__ import annotations

import os
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive

WIDTH = "100"  # argparse wraps to $COLUMNS


class SpiderHelp(Directive):
    optional_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        from spider_core.commands import build_parser

        saved = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = WIDTH
        try:
            parser = build_parser()
            if self.arguments:
                commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
                name = self.arguments[0]
                if name not in commands.choices:
                    raise self.error(f"spider has no command {name!r}")
                parser = commands.choices[name]
                parser.epilog = None  # the exit statuses: one table on the CLI page
            text = parser.format_help()
        finally:
            if saved is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = saved
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("spider-help", SpiderHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
