"""``spider plugins``: list the registered plugins, their distribution, status and the hooks
they implement (the broken ones too: the command that tells what is wrong must work)."""

from __future__ import annotations

import argparse
from typing import Any

from spider_core.commands.common import add_command, vars_of
from spider_core.commands.reporting import EXIT_OK, print_table, to_json


def add_parser(commands: Any) -> None:
    plugins = add_command(commands, "plugins", "list the registered plugins and the hooks they implement")
    plugins.add_argument("--json", action="store_true", help="one JSON record per plugin")
    plugins.set_defaults(func=cmd_plugins)


def cmd_plugins(args: argparse.Namespace) -> int:
    from spider_core.plugin.manager import ENV_DISABLE, get_plugin_manager

    pm = get_plugin_manager(tolerate_broken=True)  # the command that tells what is wrong must work
    infos = pm.plugin_infos()
    if args.json:
        for info in infos:
            print(to_json(vars_of(info)))
        return EXIT_OK
    rows = [["NAME", "DISTRIBUTION", "STATUS", "HOOKS"]]
    for info in infos:
        dist = f"{info.distribution} {info.version}" if info.distribution else "-"
        status = f"broken: {info.error}" if info.status == "broken" else info.status
        rows.append([info.name, dist, status, ", ".join(info.hooks) or "-"])
    print_table(rows)
    broken = [info.name for info in infos if info.status == "broken"]
    if broken:
        print(f"\nthe other commands fail until each broken plugin is fixed or disabled: "
              f"{ENV_DISABLE}={','.join(broken)}")
    return EXIT_OK
