"""Routes and policy rules for every node of a resolved topology (pure, no Docker).

Three sources of routes, in the order they win for a destination:

* **hand-written** routes (``routes:`` of a node) always win: an automatic route is
  dropped when a hand-written route's prefix (not ``default``) covers its destination;
* **automatic** routes (``routing: auto`` on the topology or the node): a route to every
  link subnet the node is not on, along a shortest path (sum of link ``cost``, 1 by
  default, so hop count). Only routers (or nodes with ``ip_forward=1``) carry transit
  traffic; a subnet is reached at one of its forwarding ends, so traffic to an address
  always arrives over that address's own link. Equal-cost choices are spread
  round-robin over the node's equal-cost first hops, in link order (see
  :func:`auto_routes`). A link joining two hosts (no forwarding end) gets ``/32`` routes
  to each end's address instead;
* **source routes** on multihomed hosts (``source_routing``; on by default with
  ``routing: auto``): one table per local address, ``ip rule add from ADDR table N``,
  holding the address's connected subnet and a default route via the interface's peer, so
  every packet sent from ADDR (replies, subflows bound to ADDR) leaves through the
  interface that owns ADDR.

:func:`compute_routing` returns all of it per node as data, :func:`routing_commands` turns
it into ``ip -batch`` lines (IPv6 ones prefixed ``-6``: the node runs them with ``ip -6 -batch``).

Dual stack: every computation runs per address family over the links that carry it (a link's
``subnet`` for IPv4, ``subnet6`` for IPv6). Routers forward both; a host forwards IPv4 with
``net.ipv4.ip_forward=1``, IPv6 with ``net.ipv6.conf.all.forwarding=1``. An interface's
per-source table holds both of its families' routes (one table number: the kernel keeps the
families' routes of a table apart). Linux has no reverse-path filter for IPv6, so the
simulator applies ``rp_filter`` to IPv4 packets only. :func:`trace_packet` walks a packet through the computed
tables (longest-prefix match, policy rules, reverse-path filtering), which is what
:func:`path_warnings` uses to find subflows that cannot work.
"""

from __future__ import annotations

import heapq
import ipaddress
from dataclasses import dataclass, field
from typing import Iterable

from ..topology.model import Route, Topology
from ..topology.validate import validate

#: Per-source tables are numbered TABLE_BASE + i (i = 1.. in link order on the node), and
#: their rules get priority RULE_PRIORITY_BASE + i: after the 'local' rule (0), before 'main' (32766).
TABLE_BASE = 1000
RULE_PRIORITY_BASE = 1000
#: The kernel's reverse-path filter when a node's sysctls do not say otherwise (plan.default_sysctls).
DEFAULT_RP_FILTER = 2
MAX_HOPS = 64


@dataclass(frozen=True)
class RouteEntry:
    to: str  # "default" or a prefix such as "10.0.1.0/24" or "fd00:1::/64"
    dev: str
    via: str | None = None
    metric: int | None = None
    table: int | None = None  # None: main
    src: str | None = None  # preferred source address
    scope_link: bool = False  # a directly connected prefix (no next hop)
    origin: str = "static"  # static | auto | source
    cost: int | None = None  # path cost of an automatic route (for display)
    family: int = 4

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        if self.to == "default":
            return ipaddress.ip_network("0.0.0.0/0" if self.family == 4 else "::/0")
        return ipaddress.ip_network(self.to)

    def batch_line(self) -> str:
        """The ``ip -batch`` line (``-6`` first for IPv6: see :func:`routing_commands`)."""
        return ("-6 " if self.family == 6 else "") + self.ip_args()

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
    family: int = 4

    def ip_args(self) -> str:
        return f"rule add from {self.src} table {self.table} priority {self.priority}"

    def batch_line(self) -> str:
        return ("-6 " if self.family == 6 else "") + self.ip_args()


@dataclass
class NodeRouting:
    routes: list[RouteEntry] = field(default_factory=list)
    rules: list[RuleEntry] = field(default_factory=list)

    def table(self, table: int | None, family: int | None = None) -> list[RouteEntry]:
        return [route for route in self.routes if route.table == table and family in (None, route.family)]


@dataclass(frozen=True)
class Interface:
    """One link end of a node in one address family, with what routing needs to know about it."""

    name: str
    address: str
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    peer_node: str
    peer_address: str
    link_index: int
    cost: int
    position: int = 1  # 1.. in link order among the node's links (its per-source table number)

    @property
    def family(self) -> int:
        return self.subnet.version


FAMILY_NUMBERS = (4, 6)


def _end_address(end, family: int) -> str | None:
    return end.address if family == 4 else end.address6


def _link_subnet(link, family: int) -> str | None:
    return link.subnet if family == 4 else link.subnet6


def interfaces(topo: Topology, node: str, family: int = 4) -> list[Interface]:
    """The node's link ends that carry ``family``, in link order."""
    out = []
    position = 0
    for index, link in enumerate(topo.links):
        if node not in (link.a.node, link.b.node):
            continue
        position += 1
        end, peer = link.end(node), link.peer(node)
        subnet = _link_subnet(link, family)
        if subnet is None:
            continue
        address, peer_address = _end_address(end, family), _end_address(peer, family)
        assert end.interface and address and peer_address, "topology is not resolved"
        out.append(Interface(end.interface, address, ipaddress.ip_network(subnet), peer.node,
                             peer_address, index, link.cost, position))
    return out


def all_interfaces(topo: Topology, node: str) -> list[Interface]:
    """Both families' :func:`interfaces` (IPv4 first)."""
    return [intf for family in FAMILY_NUMBERS for intf in interfaces(topo, node, family)]


def families(topo: Topology) -> list[int]:
    """The address families the topology's links carry."""
    return [family for family in FAMILY_NUMBERS if any(_link_subnet(link, family) for link in topo.links)]


def family_of(address: str) -> int:
    return ipaddress.ip_address(address).version


# -- what each node is ---------------------------------------------------------------------

FORWARDING_SYSCTL = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}


def forwards(topo: Topology, node: str, family: int = 4) -> bool:
    """Whether ``node`` forwards packets of ``family`` (routers, or a host given
    net.ipv4.ip_forward=1 / net.ipv6.conf.all.forwarding=1)."""
    spec = topo.nodes[node]
    return spec.kind == "router" or spec.sysctls.get(FORWARDING_SYSCTL[family]) == "1"


def routing_mode(topo: Topology, node: str) -> str:
    return topo.nodes[node].routing or topo.routing


def source_routing_enabled(topo: Topology, node: str) -> bool:
    """The node's ``source_routing``, else the topology's, else on exactly when the node's
    routing is ``auto``. Only multihomed hosts get rules (see :func:`is_multihomed_host`)."""
    spec = topo.nodes[node]
    if spec.source_routing is not None:
        return spec.source_routing
    if topo.source_routing is not None:
        return topo.source_routing
    return routing_mode(topo, node) == "auto"


def is_multihomed_host(topo: Topology, node: str) -> bool:
    return not forwards(topo, node) and len(topo.links_of(node)) >= 2


def rp_filter(topo: Topology, node: str) -> int:
    """The node's effective IPv4 reverse-path filter mode (0 off, 1 strict, 2 loose).

    The kernel uses max(conf.all, conf.<interface>). A node's interfaces exist before Docker
    writes the container's sysctls, so they keep the value they were created with (the
    Docker host's net.ipv4.conf.default.rp_filter, 0 on a stock kernel; measured) and
    ``conf.all`` decides; mptcpdock sets it to 2 unless the node's sysctls say otherwise."""
    value = topo.nodes[node].sysctls.get("net.ipv4.conf.all.rp_filter", str(DEFAULT_RP_FILTER))
    return int(value) if value.isdigit() else DEFAULT_RP_FILTER


# -- hand-written routes -------------------------------------------------------------------

def normalise_destination(to: str) -> str:
    if to == "default":
        return "default"
    return str(ipaddress.ip_network(to, strict=False))


def resolve_static_route(topo: Topology, node: str, route: Route) -> list[RouteEntry]:
    """A hand-written route with its device and next hop made explicit: one entry per family
    it applies to (``to: default`` over a ``dev``/``link`` of a dual-stack link: both)."""
    to = normalise_destination(route.to)
    if route.via:
        family = family_of(route.via)
    elif to != "default":
        family = ipaddress.ip_network(to).version
    else:
        family = 0  # both, as far as the link carries them
    out = []
    for fam in FAMILY_NUMBERS if family == 0 else (family,):
        own = interfaces(topo, node, fam)
        if route.link:
            link = topo.link(route.link)
            peer_address = _end_address(link.peer(node), fam)
            if peer_address is None:
                continue
            out.append(RouteEntry(to=to, dev=link.end(node).interface or "", via=peer_address, metric=route.metric,
                                  family=fam))
        elif route.via:
            via = ipaddress.ip_address(route.via)
            dev = route.dev or next(intf.name for intf in own if via in intf.subnet)
            out.append(RouteEntry(to=to, dev=dev, via=route.via, metric=route.metric, family=fam))
        else:
            peer = next((intf.peer_address for intf in own if intf.name == route.dev), None)
            if peer is not None:
                out.append(RouteEntry(to=to, dev=route.dev or "", via=peer, metric=route.metric, family=fam))
    return out


def static_routes(topo: Topology, node: str) -> list[RouteEntry]:
    """The node's hand-written routes. A destination given twice gets increasing metrics
    (NeST sends both to the kernel, which refuses the second with 'File exists' and NeST
    ignores that; here the second becomes a working fallback route)."""
    entries: list[RouteEntry] = []
    metrics: dict[tuple[int, str], int] = {}
    for route in topo.nodes[node].routes:
        for entry in resolve_static_route(topo, node, route):
            key = (entry.family, entry.to)
            if key in metrics and entry.metric is None:
                entry = RouteEntry(to=entry.to, dev=entry.dev, via=entry.via, metric=metrics[key] + 1,
                                   family=entry.family)
            metrics[key] = entry.metric or 0
            entries.append(entry)
    return entries


# -- automatic routes ----------------------------------------------------------------------

@dataclass(frozen=True)
class Destination:
    """Something to route to: a link subnet, reached at any of ``terminals`` (the link's
    forwarding ends), or one host address of a host-to-host link (``/32``)."""

    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network
    terminals: tuple[str, ...]
    on_link: tuple[str, ...]  # nodes directly connected to the prefix (they need no route)
    link_index: int


def destinations(topo: Topology, family: int = 4) -> list[Destination]:
    out = []
    host_bits = 32 if family == 4 else 128
    for index, link in enumerate(topo.links):
        subnet = _link_subnet(link, family)
        if subnet is None:
            continue
        ends = (link.a.node, link.b.node)
        terminals = tuple(node for node in ends if forwards(topo, node, family))
        if terminals:
            out.append(Destination(ipaddress.ip_network(subnet), terminals, ends, index))
        else:  # two hosts: each address is reached only at its own node
            for end in (link.a, link.b):
                address = _end_address(end, family)
                assert address, "topology is not resolved"
                out.append(Destination(ipaddress.ip_network(f"{address}/{host_bits}"), (end.node,), ends, index))
    return out


def distances(topo: Topology, source: str, family: int = 4) -> dict[str, int]:
    """Least total link cost from ``source`` to every node it can reach over links carrying
    ``family``, where only nodes forwarding it may be passed through (Dijkstra)."""
    best = {source: 0}
    queue = [(0, source)]
    done: set[str] = set()
    while queue:
        cost, node = heapq.heappop(queue)
        if node in done:
            continue
        done.add(node)
        if node != source and not forwards(topo, node, family):
            continue  # a host is an end point, never a transit
        for link in topo.links_of(node):
            if _link_subnet(link, family) is None:
                continue
            peer = link.peer(node).node
            total = cost + link.cost
            if total < best.get(peer, total + 1):
                best[peer] = total
                heapq.heappush(queue, (total, peer))
    return best


def _cost_to(dist: dict[str, int], terminals: Iterable[str]) -> int | None:
    costs = [dist[node] for node in terminals if node in dist]
    return min(costs) if costs else None


def auto_routes(topo: Topology, node: str, all_distances: dict[str, dict[str, int]] | None = None,
                family: int = 4) -> list[RouteEntry]:
    """Shortest-path routes from ``node`` to every destination it is not on.

    Ties: the first hops that lie on a shortest path are listed in link order, and the
    destinations sharing the same list of tied first hops take them in turn
    (round-robin, destinations in link order). Deterministic, and it spreads a
    multihomed node's traffic over its interfaces like ECMP would: in particular the
    in-kernel MPTCP path manager picks the source of a subflow to an announced address
    from this main table, so spreading gives those subflows different first links.
    Hop-by-hop routing on any shortest-path next hop is loop-free (costs are >= 1).
    """
    all_distances = all_distances or {name: distances(topo, name, family) for name in topo.nodes}
    own = interfaces(topo, node, family)
    turns: dict[tuple[int, ...], int] = {}
    routes = []
    for dest in destinations(topo, family):
        if node in dest.on_link:
            continue
        best = _cost_to(all_distances[node], dest.terminals)
        if best is None:
            continue  # unreachable; path_warnings reports it where it matters
        tied = []
        for intf in own:
            if intf.peer_node in dest.terminals:
                rest: int | None = 0
            elif forwards(topo, intf.peer_node, family):
                rest = _cost_to(all_distances[intf.peer_node], dest.terminals)
            else:
                rest = None
            if rest is not None and intf.cost + rest == best:
                tied.append(intf)
        key = tuple(intf.link_index for intf in tied)
        turn = turns.get(key, 0)
        turns[key] = turn + 1
        chosen = tied[turn % len(tied)]
        routes.append(RouteEntry(to=str(dest.prefix), dev=chosen.name, via=chosen.peer_address,
                                 origin="auto", cost=best, family=family))
    return routes


def _covered(prefix: str, hand: list[RouteEntry]) -> bool:
    network = ipaddress.ip_network(prefix)
    return any(route.to != "default" and route.network().version == network.version
               and network.subnet_of(route.network()) for route in hand)  # type: ignore[arg-type]


# -- per-source tables ----------------------------------------------------------------------

def source_tables(topo: Topology, node: str) -> tuple[list[RuleEntry], list[RouteEntry]]:
    """One table per local address of a multihomed host: its connected subnet, and a
    default route via the interface's peer when the peer forwards. Destinations a table
    cannot route fall through to the main table (the kernel tries the next rule)."""
    rules, routes = [], []
    for intf in all_interfaces(topo, node):
        table = TABLE_BASE + intf.position
        family = intf.family
        rules.append(RuleEntry(src=intf.address, table=table, priority=RULE_PRIORITY_BASE + intf.position,
                               family=family))
        routes.append(RouteEntry(to=str(intf.subnet), dev=intf.name, table=table, src=intf.address,
                                 scope_link=True, origin="source", family=family))
        if forwards(topo, intf.peer_node, family):
            routes.append(RouteEntry(to="default", dev=intf.name, via=intf.peer_address, table=table,
                                     origin="source", family=family))
    return rules, routes


def compute_routing(topo: Topology) -> dict[str, NodeRouting]:
    """Routes and rules for every node of a validated, resolved topology."""
    lab_families = families(topo)
    all_distances = {family: {name: distances(topo, name, family) for name in topo.nodes} for family in lab_families}
    out = {}
    for name in topo.nodes:
        hand = static_routes(topo, name)
        routes = list(hand)
        if routing_mode(topo, name) == "auto":
            for family in lab_families:
                routes += [route for route in auto_routes(topo, name, all_distances[family], family)
                           if not _covered(route.to, hand)]
        rules: list[RuleEntry] = []
        if source_routing_enabled(topo, name) and is_multihomed_host(topo, name):
            rules, table_routes = source_tables(topo, name)
            routes += table_routes
        out[name] = NodeRouting(routes=routes, rules=rules)
    return out


def routing_commands(routing: NodeRouting) -> list[str]:
    """``ip -batch`` lines: rules first, then routes (main table, then per-source tables;
    within a table its connected route before the default that needs it). IPv6 lines start
    with ``-6`` (the node feeds them to ``ip -6 -batch``: ``ip rule`` takes IPv4 otherwise)."""
    return [rule.batch_line() for rule in routing.rules] + [route.batch_line() for route in routing.routes]


# -- walking a packet through the tables -----------------------------------------------------

@dataclass(frozen=True)
class Lookup:
    """The result of one node's route lookup: out of ``dev`` towards ``next_address``."""

    dev: str
    next_address: str  # the next hop (via), or the destination itself on a connected prefix
    table: int | None
    route: str  # the matching prefix, for messages


def lookup(topo: Topology, routing: dict[str, NodeRouting], node: str, src: str | None, dst: str,
           dev: str | None = None) -> Lookup | None:
    """The kernel's choice on ``node`` for a packet from ``src`` (None: not chosen yet)
    to ``dst``: rules by priority, longest prefix first in each table, connected subnets in
    main. With ``dev`` (a socket bound to it, as a subflow of an endpoint with a device is)
    only routes through that interface count, as the kernel skips other output devices.
    None when no table routes it."""
    target = ipaddress.ip_address(dst)
    family = target.version
    own = interfaces(topo, node, family)
    tables: list[int | None] = [rule.table for rule in sorted(routing[node].rules, key=lambda r: r.priority)
                                if src is not None and rule.src == src and rule.family == family]
    for table in tables + [None]:
        candidates: list[tuple[int, int, Lookup]] = []
        if table is None:
            for intf in own:
                if target in intf.subnet:
                    candidates.append((intf.subnet.prefixlen, 0, Lookup(intf.name, dst, None, str(intf.subnet))))
        for route in routing[node].table(table, family):
            prefix = route.network()
            if target in prefix:
                candidates.append((prefix.prefixlen, -(route.metric or 0),
                                   Lookup(route.dev, route.via or dst, table, route.to)))
        candidates = [item for item in candidates if dev is None or item[2].dev == dev]
        if candidates:
            return max(candidates, key=lambda item: (item[0], item[1]))[2]
    return None


def _owner(topo: Topology, address: str) -> tuple[str, str] | None:
    """(node, interface) that holds ``address``."""
    for link in topo.links:
        for end in (link.a, link.b):
            if address in (end.address, end.address6):
                return end.node, end.interface or ""
    return None


def node_addresses(topo: Topology, node: str) -> set[str]:
    """Every address of ``node`` (both families)."""
    return {intf.address for intf in all_interfaces(topo, node)}


@dataclass
class PacketPath:
    """Where a packet went: (node, outgoing interface) per hop, and whether it arrived."""

    hops: list[tuple[str, str]]
    delivered: bool
    problem: str | None = None

    def devices_of(self, node: str) -> list[str]:
        return [dev for name, dev in self.hops if name == node]


def trace_packet(topo: Topology, routing: dict[str, NodeRouting], node: str, src: str, dst: str,
                 bound: str | None = None) -> PacketPath:
    """Follow a packet from ``node`` (source address ``src``) to ``dst`` through the
    computed tables, applying each receiving node's reverse-path filter. ``bound``: the
    sending socket is bound to that interface of ``node`` (the first hop must use it)."""
    hops: list[tuple[str, str]] = []
    current, first = node, True
    family = family_of(dst)
    if family_of(src) != family:
        return PacketPath(hops, False, f"source {src} and destination {dst} are of different address families")
    for _ in range(MAX_HOPS):
        if dst in node_addresses(topo, current):
            return PacketPath(hops, True)
        if not first and not forwards(topo, current, family):
            return PacketPath(hops, False, f"{current} does not forward IPv{family} packets")
        found = lookup(topo, routing, current, src, dst, bound if first else None)
        if found is None:
            through = f" through {bound}, the interface its socket is bound to" if first and bound else ""
            return PacketPath(hops, False, f"{current} has no route to {dst}{through}")
        hops.append((current, found.dev))
        link = next(link for link in topo.links_of(current) if link.end(current).interface == found.dev)
        peer = link.peer(current)
        if _end_address(peer, family) != found.next_address:
            return PacketPath(hops, False, f"{current}'s next hop {found.next_address} is not on {found.dev}")
        problem = _reverse_path_problem(topo, routing, peer.node, peer.interface or "", src, dst)
        if problem:
            return PacketPath(hops, False, problem)
        current, first = peer.node, False
    return PacketPath(hops, False, f"routing loop (more than {MAX_HOPS} hops)")


def _reverse_path_problem(topo: Topology, routing: dict[str, NodeRouting], node: str, arrived_on: str,
                          src: str, dst: str) -> str | None:
    mode = rp_filter(topo, node)
    if mode == 0 or family_of(src) == 6:  # Linux has no reverse-path filter for IPv6
        return None
    back = lookup(topo, routing, node, dst, src)  # the kernel looks up the reverse flow
    if back is None:
        return (f"{node} drops it: no route back to the source {src} "
                f"(reverse-path filter rp_filter={mode} on {arrived_on})")
    if mode == 1 and back.dev != arrived_on:
        return (f"{node} drops it: it arrived on {arrived_on} but the route back to {src} leaves by "
                f"{back.dev} (strict reverse-path filter rp_filter=1)")
    return None


# -- what the checklist asks -----------------------------------------------------------------

@dataclass(frozen=True)
class Attempt:
    """A subflow the in-kernel path manager would try: from ``local`` on ``node`` to ``remote``."""

    node: str
    local: str
    peer: str
    remote: str
    why: str
    bound: str | None = None  # the interface the subflow's socket is bound to (an endpoint's device)


def _endpoints(topo: Topology, node: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(interface, address, flags) of the node's MPTCP endpoints."""
    addresses: dict[str, str] = {}
    for intf in all_interfaces(topo, node):
        addresses.setdefault(intf.name, intf.address)  # the primary (IPv4) address
    return [(ep.interface, ep.address or addresses.get(ep.interface, ""), ep.flags)
            for ep in topo.nodes[node].mptcp.endpoints if ep.interface in addresses]


def families_match(connection: str, local: str, remote: str) -> bool:
    """Whether the kernel opens a subflow local -> remote on a connection whose first
    subflow went to ``connection``: both ends of one family, and an IPv4 subflow on an IPv6
    connection is fine (IPv4-mapped; an IPv4 connection's socket has no IPv6)."""
    local_family, remote_family = family_of(local), family_of(remote)
    return local_family == remote_family and (remote_family == family_of(connection) or family_of(connection) == 6)


def _routed_source(topo: Topology, routing: dict[str, NodeRouting], node: str, dst: str) -> str | None:
    """The source address the kernel picks for an unbound socket on ``node`` to ``dst``."""
    found = lookup(topo, routing, node, None, dst)
    if found is None:
        return None
    return next(intf.address for intf in interfaces(topo, node, family_of(dst)) if intf.name == found.dev)


def subflow_attempts(topo: Topology, routing: dict[str, NodeRouting], client: str, server: str,
                     client_address: str, server_address: str) -> list[Attempt]:
    """The extra subflows of a connection client_address -> server_address (flags, not limits)."""
    attempts = []
    client_eps, server_eps = _endpoints(topo, client), _endpoints(topo, server)
    for interface, address, flags in client_eps:
        if "subflow" in flags and address != client_address and families_match(server_address, address,
                                                                                server_address):
            attempts.append(Attempt(client, address, server, server_address,
                                    f"{client}'s subflow endpoint {interface}", interface))

    def announced(by: str, to: str, eps, initial: str, peer_initial: str) -> None:
        fullmesh = {address: device for device, address, flags in _endpoints(topo, to) if "fullmesh" in flags}
        for interface, address, flags in eps:
            if "signal" not in flags or address == initial:
                continue
            if family_of(address) == family_of(peer_initial):
                fallback = peer_initial
            else:
                fallback = next((intf.address for intf in interfaces(topo, to, family_of(address))), None)
            sources = [a for a in fullmesh if family_of(a) == family_of(address)] or \
                [_routed_source(topo, routing, to, address) or fallback]
            for source in sources:
                if source is not None and families_match(server_address, source, address):
                    attempts.append(Attempt(to, source, by, address, f"{by} signals {address} ({interface})",
                                            fullmesh.get(source)))

    announced(server, client, server_eps, server_address, client_address)
    announced(client, server, client_eps, client_address, server_address)
    return attempts


def _flow_addresses(topo: Topology, routing: dict[str, NodeRouting], src: str, dst: str,
                    src_address: str | None, dst_address: str | None) -> tuple[str | None, str | None]:
    for flow in topo.flows:
        if (flow.src, flow.dst) == (src, dst):
            src_address = src_address or flow.src_address
            dst_address = dst_address or flow.dst_address
            break
    own = all_interfaces(topo, dst)
    dst_address = dst_address or (own[0].address if own else None)
    if dst_address and not src_address:
        src_address = _routed_source(topo, routing, src, dst_address)
    return src_address, dst_address


def path_warnings(topology: Topology, src: str, dst: str, *, src_address: str | None = None,
                  dst_address: str | None = None, routing: dict[str, NodeRouting] | None = None) -> list[str]:
    """Routing reasons why MPTCP subflows between ``src`` (client) and ``dst`` (server) may
    fail, from the routes and rules this module computes (hand-written + auto + source):

    * an address one end signals has no return path from the peer: the peer's SYN reaches
      it, but the answer (sent from the signalled address) is dropped on the way back, as
      in NeST's mega-dumbbell, where h6 answers h1 through eth6a and r4 has no route back to
      the eth6b/eth6c address it comes from (reverse-path filter);
    * an endpoint's interface has no route to the peer's addresses: packets from the
      endpoint's address do not get there, or leave by another interface (destination-only
      routing on a multihomed host, so the subflow has no path of its own).

    The connection's addresses are the flow's (``src_address``/``dst_address`` override
    them; default: ``dst``'s first address and the source ``src``'s routes pick).
    """
    topo = topology
    if any(not link.a.addresses or not link.b.addresses for link in topo.links):
        topo = validate(topo)  # resolve a raw model first
    routing = routing or compute_routing(topo)
    client_address, server_address = _flow_addresses(topo, routing, src, dst, src_address, dst_address)
    if client_address is None or server_address is None:
        return [f"{src} has no route to {dst}'s address {server_address or '(none)'}"]
    warnings = []
    initial = Attempt(src, client_address, dst, server_address, f"the flow {src} -> {dst}")
    for attempt in [initial] + subflow_attempts(topo, routing, src, dst, client_address, server_address):
        warnings += _attempt_warnings(topo, routing, attempt)
    return list(dict.fromkeys(warnings))


def _attempt_warnings(topo: Topology, routing: dict[str, NodeRouting], attempt: Attempt) -> list[str]:
    owner = _owner(topo, attempt.local)
    interface = owner[1] if owner else "?"
    label = f"{attempt.why}: subflow {attempt.local} ({attempt.node}:{interface}) -> {attempt.remote}"
    forward = trace_packet(topo, routing, attempt.node, attempt.local, attempt.remote, attempt.bound)
    if not forward.delivered:
        leaves = f"it leaves {attempt.node} by {forward.hops[0][1]} and " if forward.hops else ""
        return [f"{label}: does not get there: {leaves}{forward.problem}"]
    out = []
    first_dev = forward.hops[0][1] if forward.hops else interface
    if first_dev != interface and is_multihomed_host(topo, attempt.node):
        out.append(f"{label}: leaves {attempt.node} by {first_dev}, not {interface} (destination-only routing; "
                   "the subflow shares that interface's path; set source_routing: true)")
    back = trace_packet(topo, routing, _owner(topo, attempt.remote)[0], attempt.remote, attempt.local)  # type: ignore[index]
    if not back.delivered:
        leaves = back.hops[0][1] if back.hops else "?"
        out.append(f"{label}: no return path: {attempt.peer} answers from {attempt.remote} by {leaves} and "
                   f"{back.problem}")
    return out
