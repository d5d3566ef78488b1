"""``mptcpdock examples``: the bundled topologies, by the names ``up``, ``plan``, ``run``,
``routes`` and ``graph`` accept in place of a file."""

from __future__ import annotations

from textwrap import shorten

import click
from tabulate import tabulate

from ..topology.bundled import bundled_topologies
from .console import out, print_json

#: Version of the ``examples --json`` document (docs/json.md).
SCHEMA = 1


@click.command("examples")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (docs/json.md).")
def examples_command(as_json: bool) -> None:
    """List the bundled topologies: 'mptcpdock up NAME' brings one up. The table cuts long
    descriptions; --json has them whole."""
    items = bundled_topologies()
    if as_json:
        print_json({"schema": SCHEMA, "topologies": [
            {"name": item.name, "file": item.key + ".yaml", "path": str(item.path), "description": item.description}
            for item in items]})
        return
    rows = [[item.name, item.key + ".yaml", shorten(item.description, 100, placeholder=" ...")] for item in items]
    out.print(tabulate(rows, headers=["name", "file", "description"]))
    out.print(f"\n(in {items[0].path.parent if items else '-'}; e.g. 'mptcpdock plan {items[0].name if items else 'ex1'}', "
              f"'mptcpdock up {items[0].name if items else 'ex1'}')")
