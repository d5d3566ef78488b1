"""``mptcpdock graph``: a picture of a topology or of a running lab (Mermaid, DOT, SVG, PNG)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import MptcpdockError
from ..report.graph import FORMATS, render, to_dot, to_mermaid
from ..runtime import lab as lab_api
from ..topology.loader import load_topology
from ..topology.validate import validate
from .console import err

SUFFIXES = {".mmd": "mermaid", ".mermaid": "mermaid", ".md": "mermaid", ".dot": "dot", ".gv": "dot",
            ".svg": "svg", ".png": "png"}


@click.command("graph")
@click.argument("target", required=False)
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS),
              help="mermaid (the default), dot, svg or png; default with -o: from the file's suffix.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout.")
def graph_command(target: str | None, fmt: str | None, output: str | None) -> None:
    """Draw TARGET: a topology file, a bundled topology (ex1) or a running lab (the only one
    when omitted). Nodes with their interfaces and addresses, hosts and routers drawn apart,
    MPTCP endpoint flags, links labelled with subnet and shaping. svg and png need
    Graphviz's dot program; mermaid and dot are text."""
    if fmt is None:
        suffix = Path(output).suffix.lower() if output else ""
        if output and suffix not in SUFFIXES:
            raise MptcpdockError(f"-o {output}: cannot tell the format from {suffix or 'no suffix'} (fix: give "
                                 f"--format {'|'.join(FORMATS)}, or end the name in .mmd, .dot, .svg or .png)")
        fmt = SUFFIXES.get(suffix, "mermaid")
    if lab_api.is_topology_file(target):
        topology, dropped = validate(load_topology(target)), False  # type: ignore[arg-type]
    else:
        state = lab_api.current_state(target)
        topology, dropped = state.topology(), state.impairments_dropped
    if fmt == "mermaid":
        data = to_mermaid(topology, dropped).encode()
    elif fmt == "dot":
        data = to_dot(topology, dropped).encode()
    else:
        data = render(topology, fmt, dropped)
    if output:
        Path(output).write_bytes(data)
        err.print(f"wrote {output} ({fmt}, {len(topology.nodes)} nodes, {len(topology.links)} links)")
        return
    if fmt == "png" and sys.stdout.isatty():
        raise MptcpdockError("a PNG is binary and stdout is a terminal (fix: give -o FILE.png, or pipe it)")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
