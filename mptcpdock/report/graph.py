"""Pictures of a topology: Graphviz DOT (also rendered to SVG and PNG) and Mermaid.

What is drawn, from a validated topology (every interface, address and subnet filled in):

* each node as a box with its name and kind (hosts: rounded, blue header; routers: square,
  orange header), one row per interface (name, address/prefix) and, where set, its MPTCP
  limits; an interface with an MPTCP endpoint carries its flags (signal, subflow, backup,
  fullmesh) in orange, a node with MPTCP off says so;
* each link as a line between the two interface rows it joins, labelled with its subnet
  and egress shaping (rate, delay, jitter, loss; per direction when the two ends differ).

Rendering uses Graphviz's ``dot`` through the ``graphviz`` Python package, which builds the
DOT text (quoting every name) and runs ``dot``; the DOT and Mermaid texts need no program.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import graphviz

from ..errors import MptcpdockError
from ..topology.model import Link, Node, Shaping, Topology
from ..topology.units import format_time_us

FORMATS = ("mermaid", "dot", "svg", "png")
HOST_COLOUR, ROUTER_COLOUR, FLAG_COLOUR = "#cfe2f3", "#fce5cd", "#b45309"
FONT = "DejaVu Sans,Helvetica,Arial,sans-serif"


class GraphError(MptcpdockError):
    """The picture cannot be made (most often: Graphviz's dot is not installed)."""


# -- what the pictures say ------------------------------------------------------------------------

def rate_text(bits: int) -> str:
    """10_000_000 -> '10 Mbit/s'."""
    for unit, scale in (("Gbit/s", 10**9), ("Mbit/s", 10**6), ("kbit/s", 10**3)):
        if bits >= scale:
            return f"{bits / scale:g} {unit}"
    return f"{bits} bit/s"


def _time(micros: int) -> str:
    return format_time_us(micros).replace("ms", " ms").replace("us", " us")


def shaping_text(shaping: Shaping, dropped: bool = False) -> str:
    """'10 Mbit/s, 10 ms'; with ``dropped`` (no netem) the impairments are marked not applied."""
    parts = [rate_text(shaping.rate)] if shaping.rate else []
    if shaping.trace is not None:  # the rate follows a trace during runs
        rates = [rate for _, rate in shaping.trace.segments]
        parts = [f"trace {Path(shaping.trace.path).name}: {rate_text(min(rates))}..{rate_text(max(rates))}"]
    impairments = [_time(shaping.delay)] if shaping.delay else []
    if shaping.jitter:
        impairments.append("jitter " + _time(shaping.jitter))
    if shaping.loss:
        impairments.append(f"loss {shaping.loss:g}%")
    if shaping.loss_model is not None:
        impairments.append(shaping.loss_model.describe())
    parts += [f"{item} (not applied)" for item in impairments] if dropped else impairments
    return ", ".join(parts) or "not shaped"


def link_lines(link: Link, dropped: bool = False) -> list[str]:
    """The subnet, then the shaping: one line when both ends shape alike, one per direction if not."""
    forward, backward = link.shaping_from(link.a.node), link.shaping_from(link.b.node)
    lines = [link.subnet or ""]
    if forward == backward:
        lines.append(shaping_text(forward, dropped))
    else:
        lines.append(f"{link.a.node} \u2192 {link.b.node}: {shaping_text(forward, dropped)}")
        lines.append(f"{link.b.node} \u2192 {link.a.node}: {shaping_text(backward, dropped)}")
    return [line for line in lines if line]


def endpoint_flags(node: Node) -> dict[str, str]:
    """interface -> 'signal, subflow' for the node's MPTCP endpoints."""
    return {endpoint.interface: ", ".join(endpoint.flags) for endpoint in node.mptcp.endpoints} \
        if node.mptcp.enabled else {}


def mptcp_note(node: Node) -> str | None:
    """'MPTCP limits: subflows 1, add_addr_accepted 1', 'MPTCP off', or None."""
    if not node.mptcp.enabled:
        return "MPTCP off"
    limits = [f"{key} {value}" for key, value in (("subflows", node.mptcp.subflows),
                                                   ("add_addr_accepted", node.mptcp.add_addr_accepted))
              if value is not None]
    return ("MPTCP limits: " + ", ".join(limits)) if limits else None


def interfaces_of(topology: Topology, name: str) -> list[tuple[str, str]]:
    """(interface, address/prefix) of a node, in link order."""
    out = []
    for link in topology.links_of(name):
        end = link.end(name)
        prefix = link.subnet.split("/")[1] if link.subnet else "?"
        out.append((end.interface or "?", f"{end.address}/{prefix}"))
    return out


# -- Graphviz --------------------------------------------------------------------------------------

def _node_label(topology: Topology, node: Node) -> str:
    """An HTML-like table: header, one row (and port) per interface, the MPTCP note."""
    router = node.kind == "router"
    flags = endpoint_flags(node)
    style = "" if router else ' STYLE="ROUNDED"'
    rows = [f'<TR><TD BGCOLOR="{ROUTER_COLOUR if router else HOST_COLOUR}"><B>{escape(node.name)}</B>'
            f'  <FONT POINT-SIZE="10">{"router" if router else "host"}</FONT></TD></TR>']
    for interface, address in interfaces_of(topology, node.name):
        text = f"{escape(interface)}  {escape(address)}"
        if interface in flags:
            text += f'  <FONT COLOR="{FLAG_COLOUR}"><B>[{escape(flags[interface])}]</B></FONT>'
        rows.append(f'<TR><TD PORT="{escape(interface)}" ALIGN="LEFT">{text}</TD></TR>')
    note = mptcp_note(node)
    if note and not (router and note == "MPTCP off"):
        rows.append(f'<TR><TD ALIGN="LEFT"><FONT POINT-SIZE="10">{escape(note)}</FONT></TD></TR>')
    return f'<<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="4"{style}>{"".join(rows)}</TABLE>>'


def caption(topology: Topology, dropped: bool) -> str:
    return (f"lab {topology.name}: hosts rounded (blue), routers square (orange); [MPTCP endpoint flags]; "
            "lines: subnet and egress shaping" + ("; no netem on this host: delay, jitter and loss not applied"
                                                  if dropped else ""))


def dot_graph(topology: Topology, dropped: bool = False) -> graphviz.Graph:
    """The Graphviz graph; ``dropped``: the lab runs without its impairments (no netem)."""
    graph = graphviz.Graph(name=topology.name, engine="dot")
    graph.attr(rankdir="LR", nodesep="0.25", ranksep="0.35", splines="true", fontname=FONT, fontsize="11",
               labelloc="b", label=caption(topology, dropped))
    graph.attr("node", shape="plain", fontname=FONT, fontsize="11")
    graph.attr("edge", color="#555555")
    for node in topology.nodes.values():
        graph.node(node.name, label=_node_label(topology, node))
    for index, link in enumerate(topology.links):
        # the label is a node on the line itself, so it cannot be read as another line's
        middle = f"link {index} {link.name}"
        graph.node(middle, label="\n".join(link_lines(link, dropped)), shape="box", style="rounded,filled",
                   fillcolor="#f3f3f3", color="#bbbbbb", fontsize="10", margin="0.06,0.02", height="0", width="0")
        graph.edge(f"{link.a.node}:{link.a.interface}", middle)
        graph.edge(middle, f"{link.b.node}:{link.b.interface}")
    return graph


def to_dot(topology: Topology, dropped: bool = False) -> str:
    return dot_graph(topology, dropped).source


def render(topology: Topology, fmt: str, dropped: bool = False) -> bytes:
    """The picture as SVG or PNG bytes (Graphviz's dot draws it)."""
    if fmt not in ("svg", "png"):
        raise ValueError(f"render() draws svg or png, not {fmt!r}")
    try:
        return dot_graph(topology, dropped).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphError(f"drawing {fmt.upper()} needs Graphviz's 'dot' program, which is not installed "
                         "(fix: 'apt-get install graphviz', or scripts/bootstrap.sh; "
                         "--format dot and --format mermaid need nothing)") from None
    except graphviz.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise GraphError(f"Graphviz's dot failed drawing {fmt.upper()}: {detail[-1] if detail else exc}") from None


def draw_topology(path: Path, topology: Topology, dropped: bool = False) -> Path:
    """Write the topology's PNG (or SVG, by suffix) to ``path``."""
    path.write_bytes(render(topology, path.suffix.lstrip(".").lower(), dropped))
    return path


# -- Mermaid ---------------------------------------------------------------------------------------

def _mermaid_text(text: str) -> str:
    """Text inside a quoted Mermaid label: quotes and angle brackets as entities."""
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(topology: Topology, dropped: bool = False) -> str:
    """A Mermaid flowchart: hosts as rounded boxes, routers as hexagons, links labelled."""
    ids = {name: f"n{index}" for index, name in enumerate(topology.nodes)}
    lines = [f"%% {caption(topology, dropped)}", "flowchart LR", "  classDef host fill:#cfe2f3,stroke:#3d6e99",
             "  classDef router fill:#fce5cd,stroke:#b45309"]
    for node in topology.nodes.values():
        flags = endpoint_flags(node)
        rows = [f"<b>{_mermaid_text(node.name)}</b> {node.kind}"]
        rows += [_mermaid_text(f"{interface} {address}" + (f" [{flags[interface]}]" if interface in flags else ""))
                 for interface, address in interfaces_of(topology, node.name)]
        note = mptcp_note(node)
        if note and not (node.kind == "router" and note == "MPTCP off"):
            rows.append(_mermaid_text(note))
        label = "<br/>".join(rows)
        shape = ('{{"', '"}}') if node.kind == "router" else ('("', '")')
        lines.append(f"  {ids[node.name]}{shape[0]}{label}{shape[1]}:::{node.kind}")
    for link in topology.links:
        text = [f"{link.a.interface} \u2194 {link.b.interface}", *link_lines(link, dropped)]
        lines.append(f'  {ids[link.a.node]} ---|"{"<br/>".join(_mermaid_text(line) for line in text)}"| '
                     f"{ids[link.b.node]}")
    return "\n".join(lines) + "\n"
