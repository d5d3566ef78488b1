"""Routes and policy rules for every node of a resolved topology (pure, no Docker).

:func:`compute_routing` turns the hand-written routes of a validated topology into
:class:`RouteEntry` objects with an explicit next hop and device, and
:func:`routing_commands` turns those into ``ip -batch`` lines.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .model import Route, Topology


@dataclass(frozen=True)
class RouteEntry:
    to: str  # "default" or a prefix such as "10.0.1.0/24"
    dev: str
    via: str | None = None
    metric: int | None = None
    table: int | None = None  # None: main
    src: str | None = None  # preferred source address
    scope_link: bool = False  # a directly connected prefix (no next hop)
    origin: str = "static"  # static | auto | source

    def ip_args(self) -> str:
        args = ["route", "add", self.to]
        if self.via:
            args += ["via", self.via]
        args += ["dev", self.dev]
        if self.scope_link:
            args += ["scope", "link"]
        if self.src:
            args += ["src", self.src]
        if self.metric is not None:
            args += ["metric", str(self.metric)]
        if self.table is not None:
            args += ["table", str(self.table)]
        return " ".join(args)


@dataclass(frozen=True)
class RuleEntry:
    src: str  # an address of this node
    table: int
    priority: int

    def ip_args(self) -> str:
        return f"rule add from {self.src} table {self.table} priority {self.priority}"


@dataclass
class NodeRouting:
    routes: list[RouteEntry] = field(default_factory=list)
    rules: list[RuleEntry] = field(default_factory=list)


def _interfaces(topo: Topology, node: str) -> list[tuple[str, str, ipaddress.IPv4Network, str]]:
    """(interface, address, subnet, peer address) for each link of ``node``."""
    out = []
    for link in topo.links_of(node):
        end, peer = link.end(node), link.peer(node)
        assert end.interface and end.address and peer.address and link.subnet
        out.append((end.interface, end.address, ipaddress.IPv4Network(link.subnet), peer.address))
    return out


def normalise_destination(to: str) -> str:
    if to == "default":
        return "default"
    return str(ipaddress.IPv4Network(to, strict=False))


def resolve_static_route(topo: Topology, node: str, route: Route) -> RouteEntry:
    """A hand-written route with its device and next hop made explicit."""
    interfaces = _interfaces(topo, node)
    to = normalise_destination(route.to)
    if route.link:
        link = topo.link(route.link)
        end, peer = link.end(node), link.peer(node)
        return RouteEntry(to=to, dev=end.interface or "", via=peer.address, metric=route.metric)
    if route.via:
        via = ipaddress.IPv4Address(route.via)
        dev = route.dev or next(name for name, _, subnet, _ in interfaces if via in subnet)
        return RouteEntry(to=to, dev=dev, via=route.via, metric=route.metric)
    peer = next(peer for name, _, _, peer in interfaces if name == route.dev)
    return RouteEntry(to=to, dev=route.dev or "", via=peer, metric=route.metric)


def static_routes(topo: Topology, node: str) -> list[RouteEntry]:
    """The node's hand-written routes. A destination given twice gets increasing metrics
    (NeST sends both to the kernel, which refuses the second with 'File exists' and NeST
    ignores that; here the second becomes a working fallback route)."""
    entries: list[RouteEntry] = []
    metrics: dict[str, int] = {}
    for route in topo.nodes[node].routes:
        entry = resolve_static_route(topo, node, route)
        if entry.to in metrics and entry.metric is None:
            entry = RouteEntry(to=entry.to, dev=entry.dev, via=entry.via, metric=metrics[entry.to] + 1)
        metrics[entry.to] = entry.metric or 0
        entries.append(entry)
    return entries


def compute_routing(topo: Topology) -> dict[str, NodeRouting]:
    """Routes and rules for every node of a validated, resolved topology."""
    return {name: NodeRouting(routes=static_routes(topo, name)) for name in topo.nodes}


def routing_commands(routing: NodeRouting) -> list[str]:
    """``ip -batch`` lines: rules first, then routes (main table, then per-source tables)."""
    return [rule.ip_args() for rule in routing.rules] + [route.ip_args() for route in routing.routes]


def path_warnings(topology: Topology, src: str, dst: str) -> list[str]:
    """Routing reasons why MPTCP subflows between ``src`` and ``dst`` may fail: a signalled
    address with no return path from the peer, an endpoint interface with no route to the
    peer's addresses. Used by the checklist. (To be completed with routing: auto.)"""
    return []
