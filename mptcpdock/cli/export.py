"""``mptcpdock export``: write the topology file equivalent to a lab description.

SOURCE is a topology YAML file or a Python script that builds a lab, with the native API
(:class:`mptcpdock.api.Lab`) or the NeST layer (``mptcpdock.compat.nest``). A script runs
until it would bring its lab up (``lab.up()``, ``lab.run()``, ``Experiment.run()``) and stops
there: nothing touches Docker. A script that never gets there may define exactly one ``Lab``.

The output is validated first (an invalid lab is an error, not a file). By default it is the
model as written, in canonical form: for a YAML file, the same file normalised (comments
dropped, one spelling per value); YAML -> model -> YAML round-trips. ``--resolved`` writes
every default out as well: link names, interface names, addresses, flow names and ports.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..api import topology_of_script
from ..topology.loader import load_topology, topology_to_yaml
from ..topology.model import Topology
from ..topology.validate import validate


def export_topology(source: str | Path, *, resolved: bool = False, name: str | None = None) -> str:
    """The YAML text for SOURCE (a topology file or a Python script)."""
    path = Path(source)
    topology: Topology = topology_of_script(path) if path.suffix == ".py" else load_topology(path)
    if name:
        topology.name = name
    checked = validate(topology)
    return topology_to_yaml(checked if resolved else topology)


@click.command("export")
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
@click.option("--resolved", is_flag=True, help="Write every default out (interfaces, addresses, ports).")
@click.option("--name", help="Lab name to write (default: the source's).")
def export_command(source: str, output: str | None, resolved: bool, name: str | None) -> None:
    """Write the topology YAML for SOURCE: a topology file (normalised) or a Python script
    that builds a lab (native API or NeST layer; run up to, not including, bringing it up)."""
    text = f"# exported by 'mptcpdock export' from {source}\n" + export_topology(source, resolved=resolved, name=name)
    if output:
        Path(output).write_text(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)
