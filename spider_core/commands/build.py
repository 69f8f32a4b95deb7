"""``spider build-package``: compile a C task package into a package directory
(:mod:`spider_core.build`), into a wheel (:mod:`spider_core.wheel`), or both."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spider_core.argtypes import path
from spider_core.commands.common import CliError, add_command
from spider_core.commands.reporting import EXIT_OK, EXIT_TASK_FAILURE, EXIT_USAGE


def add_parser(commands: Any) -> None:
    build = add_command(commands, "build-package", "compile a C task package into <out>/<name>/lib<name>.so, or a wheel",
                        "Compile SRC/*.c with $CC (default cc) against spider_tdl.h into OUT/<name>/lib<name>.so, "
                        "where <name> is SRC's directory name, and/or into a wheel in the --wheel directory that "
                        "pip installs and spider finds by its entry point (see the docs, Distributing task "
                        "packages).")
    build.add_argument("src", type=path, metavar="SRC", help="package source directory")
    build.add_argument("--out", type=path, metavar="DIR", help="package directory")
    build.add_argument("--wheel", type=path, metavar="DIR",
                       help="write a wheel (py3-none-linux_<arch>) holding the library into DIR "
                            "(needs hatchling: pip install 'spider-core-pool[wheel]')")
    build.add_argument("--version", metavar="V", help="the wheel's version (PEP 440; default: 0.0.0)")
    build.add_argument("--dist-name", metavar="NAME",
                       help="the wheel's distribution name (default: spider-task-<name>, '_' as '-'); "
                            "the library's module is this name with '_' (spider_task_<name>)")
    build.add_argument("--cc", help="C compiler command (default: $CC, then cc)")
    build.set_defaults(func=cmd_build_package)


def cmd_build_package(args: argparse.Namespace) -> int:
    from spider_core.build import BuildError, PackageSourceError, build_package

    if args.out is None and args.wheel is None:
        raise CliError("say what to build: --out DIR (a package directory), --wheel DIR (a wheel), or both")
    if args.wheel is None and (args.version is not None or args.dist_name is not None):
        raise CliError("--version and --dist-name describe a wheel: pass --wheel DIR too")
    try:
        if args.wheel is not None:
            build_wheel = _wheel_builder(args)  # bad wheel options fail before anything is built
        if args.out is not None:
            print(build_package(args.src, args.out, cc=args.cc))
        if args.wheel is not None:
            print(build_wheel())
    except PackageSourceError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except BuildError as e:
        raise CliError(str(e), EXIT_TASK_FAILURE) from None
    return EXIT_OK


def _wheel_builder(args: argparse.Namespace) -> Callable[[], Path]:
    """A function that builds the wheel ``--wheel``, ``--version`` and ``--dist-name`` ask for,
    once those are checked.

    :raises CliError: hatchling, which writes wheels, is not installed (exit 1).
    :raises PackageSourceError: a bad version or distribution name.
    """
    try:
        from spider_core import wheel
    except ImportError as e:
        raise CliError(
            f"--wheel needs hatchling, which writes the wheel ({e}): pip install 'spider-core-pool[wheel]'",
            EXIT_TASK_FAILURE,
        ) from None
    version = wheel.normalized_version(args.version if args.version is not None else "0.0.0")
    if args.dist_name is not None:
        wheel.module_name(args.dist_name)
    return lambda: wheel.build_wheel(args.src, args.wheel, version=version, dist_name=args.dist_name, cc=args.cc)
