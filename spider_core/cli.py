"""The ``spider`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from spider_core.build import BuildError, PackageSourceError, build_package

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error the CLI prints as one line, exiting with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def cmd_build_package(args: argparse.Namespace) -> int:
    try:
        library = build_package(args.src, args.out, cc=args.cc)
    except PackageSourceError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except BuildError as e:
        raise CliError(str(e)) from None
    print(library)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spider",
        description="Run native and Python task packages in supervised executor processes.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    build = commands.add_parser(
        "build-package",
        help="compile a C task package into <out>/<name>/lib<name>.so",
        description=(
            "Compile SRC/*.c with $CC (default cc) against spider_tdl.h into "
            "OUT/<name>/lib<name>.so, where <name> is SRC's directory name. "
            "Exit status: 0 built, 1 the compiler is missing or failed, 2 bad arguments."
        ),
    )
    build.add_argument("src", type=Path, metavar="SRC", help="package source directory")
    build.add_argument("--out", type=Path, required=True, metavar="DIR", help="package directory")
    build.add_argument("--cc", help="C compiler command (default: $CC, then cc)")
    build.set_defaults(func=cmd_build_package)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CliError as e:
        print(f"spider: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("spider: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
