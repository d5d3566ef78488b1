"""``mptcpdock routes``: the routes and policy rules mptcpdock computes for each node, and on a
running lab what the kernel actually has (``ip rule``, ``ip route show table all``).

The computation is :mod:`mptcpdock.plan.routing`'s, the kernel side
:mod:`mptcpdock.runtime.kernel_routes`'; this module only shows them side by side.
"""

from __future__ import annotations

import click
from tabulate import tabulate

from ..errors import MptcpdockError
from ..plan.routing import NodeRouting, compute_routing
from ..runtime import lab as lab_api
from ..runtime.apply import parallel
from ..runtime.kernel_routes import KernelRouting, differences, kernel_routing
from ..topology.loader import load_topology
from ..topology.validate import validate
from .console import print_json
from .documents import routes_document


def route_rows(routing: NodeRouting) -> list[list[object]]:
    """Rows of the computed routes: table, destination, via, dev, origin, cost/metric."""
    rows = []
    for route in routing.routes:
        weight = route.metric if route.metric is not None else route.cost
        rows.append(["main" if route.table is None else route.table, route.to, route.via or "-", route.dev,
                     route.origin, "-" if weight is None else weight])
    return rows


def rule_rows(routing: NodeRouting) -> list[list[object]]:
    return [[rule.priority, f"from {rule.src}", rule.table] for rule in routing.rules]


def render_node(node: str, routing: NodeRouting) -> str:
    lines = [f"== {node}"]
    if routing.rules:
        lines.append(tabulate(rule_rows(routing), headers=["priority", "selector", "table"]))
        lines.append("")
    if routing.routes:
        lines.append(tabulate(route_rows(routing), headers=["table", "destination", "via", "dev", "origin",
                                                            "cost/metric"]))
    else:
        lines.append("(no routes: connected subnets only)")
    return "\n".join(lines)


def render_kernel(routing: NodeRouting, kernel: KernelRouting) -> str:
    """What the kernel has, and whether it matches the plan."""
    diff = differences(routing, kernel)
    return ("\n\nkernel (ip rule, ip route show table all: IPv4, then IPv6; table local left out):\n" + kernel.text + "\n"
            + ("kernel matches the plan" if not diff else "kernel DIFFERS from the plan:\n  " + "\n  ".join(diff)))


@click.command("routes")
@click.argument("target", required=False)
@click.argument("node", required=False)
@click.option("--lab", "lab_name", help="The running lab (default: the only one that is up).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (docs/json.md).")
def routes_command(target: str | None, node: str | None, lab_name: str | None, as_json: bool) -> None:
    """Show the routes and rules of NODE (all nodes when omitted).

    TARGET is a topology file (computed routes only, no Docker needed) or a node of a running
    lab (then the kernel's rules and routes are shown too, and compared with the plan).
    """
    if lab_api.is_topology_file(target):
        if lab_name:
            raise MptcpdockError("give either a topology file or --lab, not both")
        topology, state = validate(load_topology(target)), None  # type: ignore[arg-type]
    else:
        node = node or target
        state = lab_api.current_state(lab_name)
        topology = state.topology()
    routing = compute_routing(topology)
    names = [node] if node else list(topology.nodes)
    for name in names:
        if name not in topology.nodes:
            raise MptcpdockError(f"no node {name!r}; nodes: {', '.join(topology.nodes)}")
    kernels: dict[str, KernelRouting] = {}
    if state is not None:
        kernels = dict(parallel(lambda name: (name, kernel_routing(state.container(name))), names))
    if as_json:
        print_json(routes_document(state.lab if state else None, topology.source,
                                   {name: routing[name] for name in names}, kernels))
        return
    blocks = []
    for name in names:
        block = render_node(name, routing[name])
        if name in kernels:
            block += render_kernel(routing[name], kernels[name])
        blocks.append(block)
    click.echo("\n\n".join(blocks))
