"""``mptcpdock routes``: the routes and policy rules mptcpdock computes for each node, and on a
running lab what the kernel actually has (``ip rule``, ``ip route show table all``).

The computation is :mod:`mptcpdock.plan.routing`'s; this module only shows and compares it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import click
from tabulate import tabulate

from .plan.routing import NodeRouting, compute_routing

#: One exec per node: the rules, a separator, then every table but 'local'.
KERNEL_SCRIPT = "ip -4 rule show; echo '---'; ip -4 route show table all"


@dataclass(frozen=True)
class KernelRouting:
    rules: set[tuple[int, str, str]]  # (priority, from, table)
    routes: set[tuple[str, str, str, str]]  # (table, destination, via, dev)
    text: str  # what the kernel printed (local table left out)


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


def parse_kernel(text: str) -> KernelRouting:
    """Parse ``ip -4 rule show`` + ``---`` + ``ip -4 route show table all`` output."""
    rule_text, _, route_text = text.partition("---")
    rules = set()
    for line in rule_text.splitlines():
        head, _, rest = line.partition(":")
        words = rest.split()
        if not head.strip().isdigit() or "from" not in words or "lookup" not in words:
            continue
        source, table = words[words.index("from") + 1], words[words.index("lookup") + 1]
        if source != "all":
            rules.add((int(head), source, table))
    routes = set()
    kept = []
    for line in route_text.splitlines():
        words = line.split()
        if not words or words[0] in ("local", "broadcast") or "table local" in line:
            continue
        kept.append(line.rstrip())
        if "proto kernel" in line and "table" not in words:
            continue  # the kernel's own connected routes in main
        table = words[words.index("table") + 1] if "table" in words else "main"
        via = words[words.index("via") + 1] if "via" in words else "-"
        dev = words[words.index("dev") + 1] if "dev" in words else "-"
        routes.add((table, _prefix(words[0]), via, dev))
    rule_lines = [line.rstrip() for line in rule_text.splitlines() if line.strip()]
    return KernelRouting(rules, routes, "\n".join(rule_lines + kept))


def _prefix(destination: str) -> str:
    if destination == "default":
        return destination
    return str(ipaddress.IPv4Network(destination, strict=False))


def expected(routing: NodeRouting) -> KernelRouting:
    rules = {(rule.priority, rule.src, str(rule.table)) for rule in routing.rules}
    routes = {("main" if route.table is None else str(route.table), _prefix(route.to), route.via or "-", route.dev)
              for route in routing.routes}
    return KernelRouting(rules, routes, "")


def differences(routing: NodeRouting, kernel: KernelRouting) -> list[str]:
    """What the plan has and the kernel lacks (and the reverse); empty when they agree."""
    want = expected(routing)
    out = [f"missing rule: priority {p} from {s} table {t}" for p, s, t in sorted(want.rules - kernel.rules)]
    out += [f"extra rule: priority {p} from {s} table {t}" for p, s, t in sorted(kernel.rules - want.rules)]
    out += [f"missing route: {d} via {v} dev {dev} table {t}" for t, d, v, dev in sorted(want.routes - kernel.routes)]
    out += [f"extra route: {d} via {v} dev {dev} table {t}" for t, d, v, dev in sorted(kernel.routes - want.routes)]
    return out


def kernel_routing(container: str) -> KernelRouting:
    from .runtime.docker_api import run_exec

    result = run_exec(container, ["sh", "-c", KERNEL_SCRIPT])
    return parse_kernel(result.stdout)


def _is_topology_file(target: str | None) -> bool:
    return bool(target) and (target.endswith((".yaml", ".yml")) or Path(target).is_file())  # type: ignore[union-attr]


@click.command("routes")
@click.argument("target", required=False)
@click.argument("node", required=False)
@click.option("--lab", "lab_name", help="The running lab (default: the only one that is up).")
def routes_command(target: str | None, node: str | None, lab_name: str | None) -> None:
    """Show the routes and rules of NODE (all nodes when omitted).

    TARGET is a topology file (computed routes only, no Docker needed) or a node of a running
    lab (then the kernel's rules and routes are shown too, and compared with the plan).
    """
    from .errors import MptcpdockError
    from .topology.validate import validate

    if _is_topology_file(target):
        if lab_name:
            raise MptcpdockError("give either a topology file or --lab, not both")
        from .topology.loader import load_topology

        topology, state = validate(load_topology(target)), None  # type: ignore[arg-type]
    else:
        from .runtime import lab as lab_api

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
        from .runtime.apply import parallel

        kernels = dict(parallel(lambda name: (name, kernel_routing(state.container(name))), names))
    blocks = []
    for name in names:
        block = render_node(name, routing[name])
        if name in kernels:
            diff = differences(routing[name], kernels[name])
            block += "\n\nkernel (ip -4 rule; ip -4 route show table all, without table local):\n"
            block += kernels[name].text
            block += "\n" + ("kernel matches the plan" if not diff else "kernel DIFFERS from the plan:\n  " +
                             "\n  ".join(diff))
        blocks.append(block)
    click.echo("\n\n".join(blocks))
