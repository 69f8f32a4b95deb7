"""``spider packages``: list the task packages in a package directory and the installed ones,
each with its kind, source, ABI version and status."""

from __future__ import annotations

import argparse
from typing import Any

from spider_core.argtypes import directory
from spider_core.commands.common import CliError, add_command, os_reason, package_dir_of, plugin_failed, vars_of
from spider_core.commands.reporting import EXIT_OK, print_table, to_json


def add_parser(commands: Any) -> None:
    packages = add_command(commands, "packages", "list the task packages in a package directory and the installed ones",
                           "List the task packages in the package directory and those installed with pip (found "
                           "by their entry point in the spider_core.task_packages group), each with its kind, "
                           "source, distribution and version, ABI version and status; a broken one is listed "
                           "as broken.")
    packages.add_argument("--package-dir", type=directory, metavar="DIR",
                          help="task package directory (default: $SPIDER_TDL_PACKAGE_DIR; none: installed "
                               "packages only)")
    packages.add_argument("--json", action="store_true",
                          help="one JSON record per package (name, kind, location, source, distribution, "
                               "version, abi_version, compatible, tasks, error)")
    packages.set_defaults(func=cmd_packages)


def cmd_packages(args: argparse.Namespace) -> int:
    from spider_core.plugin.manager import get_plugin_manager

    package_dir = package_dir_of(args, optional=True)  # none: installed packages only
    if package_dir is not None:
        package_dir = package_dir.absolute()  # every path printed in one form, native or Python
    pm = get_plugin_manager()
    try:
        found = pm.hook.spider_list_packages(package_dir=package_dir)
    except OSError as e:
        raise CliError(f"cannot read package directory {package_dir}: {os_reason(e)}") from None
    except Exception as e:  # a plugin's bug
        raise plugin_failed("listing packages", e) from None
    infos = sorted(
        (info for infos in found for info in infos or ()),
        key=lambda i: (i.name, i.source != "directory", i.kind, i.distribution or ""),
    )
    if args.json:
        for info in infos:
            print(to_json({**vars_of(info), "location": str(info.location)}))
        return EXIT_OK
    if not infos:
        where = "installed" if package_dir is None else f"in {package_dir} or installed"
        print(f"no task packages {where}")
        return EXIT_OK
    in_directory = {info.name for info in infos if info.source == "directory" and not info.error}
    rows = [["NAME", "KIND", "SOURCE", "ABI", "STATUS", "PATH"]]
    for info in infos:
        if info.error:
            status = f"broken: {info.error}"
        elif info.compatible is False:
            status = "incompatible"
        elif info.source == "installed" and info.name in in_directory:
            status = "hidden by the package directory's copy"
        else:
            status = "ok"
        source = info.source  # an installed package's distribution and version say more
        if info.source == "installed" and info.distribution:
            source = f"{info.distribution} {info.version}"
        rows.append([info.name, info.kind, source, info.abi_version or "-", status, str(info.location)])
    print_table(rows)
    for info in infos:
        if info.tasks:
            print(f"\n{info.name} tasks{' (installed)' if info.source == 'installed' else ''}:")
            for task in info.tasks:
                print(f"  {task}")
    return EXIT_OK
