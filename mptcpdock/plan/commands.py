"""The plan: everything ``up`` will do, as data, computed without Docker.

A :class:`Plan` holds, per node, the container settings (image, capabilities, sysctls)
and the commands of each configuration phase as ``ip -batch`` / ``tc -batch`` lines.
The runtime applies exactly these lines; the trace (``commands.sh``) prints them; unit
tests read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .. import NODE_IMAGE
from ..topology.model import Topology
from .routing import NodeRouting, compute_routing, routing_commands
from .queues import EgressShaping, PathRoundTrip, egress_shaping, path_round_trips
from .shaping import ShapingPlan, choose_queue, plan_shaping

CAPABILITIES = ("NET_ADMIN", "NET_RAW")
#: Phases, in the order they are applied inside each node.
PHASES = ("addresses", "routes", "mptcp", "qdiscs")


@dataclass(frozen=True)
class InterfacePlan:
    name: str
    link: str
    address: str  # the primary address: IPv4, or IPv6 on an IPv6-only link
    prefixlen: int
    peer_node: str
    peer_interface: str
    peer_address: str
    address6: str | None = None  # the IPv6 address of a dual-stack or IPv6-only link
    prefixlen6: int | None = None
    peer_address6: str | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """(address, prefix length) of every address, IPv4 first."""
        out = [(self.address, self.prefixlen)]
        if self.address6 and self.address6 != self.address:
            out.append((self.address6, self.prefixlen6 or 64))
        return out


@dataclass
class NodePlan:
    name: str
    kind: str
    image: str
    sysctls: dict[str, str]
    cap_add: tuple[str, ...]
    privileged: bool
    interfaces: list[InterfacePlan] = field(default_factory=list)
    #: phase -> lines; "qdiscs" lines are for ``tc -batch``, the others for ``ip -batch``.
    phases: dict[str, list[str]] = field(default_factory=dict)
    routing: NodeRouting = field(default_factory=NodeRouting)
    monitor: bool = False
    #: interface -> its egress shaping as planned (tc lines and the queue with its reason).
    shaping: dict[str, ShapingPlan] = field(default_factory=dict)
    engine: str | None = None  # the topology's engine name; None: the environment's only engine
    #: the userspace path manager daemon's command line (mptcpd), started after configuration
    daemon: list[str] = field(default_factory=list)
    path_manager: str | None = None  # as the topology asks (None: the kernel's default)

    def ip_lines(self) -> list[str]:
        return [line for phase in PHASES if phase != "qdiscs" for line in self.phases.get(phase, [])]

    def tc_lines(self) -> list[str]:
        return list(self.phases.get("qdiscs", []))

    def interface(self, name: str) -> InterfacePlan:
        return next(intf for intf in self.interfaces if intf.name == name)


@dataclass(frozen=True)
class LinkPlan:
    name: str
    subnet: str
    a_node: str
    a_interface: str
    a_address: str
    b_node: str
    b_interface: str
    b_address: str
    needs_netem: bool
    driver: str = "bridge"  # bridge (one engine) | overlay (a swarm's attachable overlay network)
    a_engine: str | None = None
    b_engine: str | None = None

    @property
    def crosses(self) -> bool:
        return self.a_engine != self.b_engine
    subnet6: str | None = None


@dataclass
class Plan:
    lab: str
    topology: Topology  # resolved
    nodes: dict[str, NodePlan]
    links: list[LinkPlan]
    impairments_dropped: bool = False

    @property
    def netem_links(self) -> list[str]:
        return [link.name for link in self.links if link.needs_netem]

    @property
    def leaf_qdiscs(self) -> dict[str, list[str]]:
        """AQM qdisc -> the link ends that ask for it ("r1-r2 (r1's egress)"), for the probe check."""
        out: dict[str, list[str]] = {}
        for link in self.topology.links:
            for node in (link.a.node, link.b.node):
                kind = link.shaping_from(node).qdisc
                if kind:
                    out.setdefault(kind, []).append(f"{link.name} ({node}'s egress)")
        return out

    @property
    def engines(self) -> list[str | None]:
        """The engines the lab's nodes use, in the topology's order (``[None]``: the environment's)."""
        used = {node.engine for node in self.nodes.values()}
        return [name for name in self.topology.engines if name in used] or [None]

    def placement_lines(self) -> list[str]:
        """What ``plan`` prints about engines: per engine its nodes, then each crossing link."""
        topo = self.topology
        if not topo.engines and not any(link.driver == "overlay" for link in self.links):
            return []
        lines = ["# placement" + (f" ({topo.placement})" if topo.engines else "") + f", mtu {topo.mtu or 'default'}:"]
        for engine in self.engines:
            spec = topo.engines.get(engine) if engine else None
            where = (spec.host or (f"context {spec.context}" if spec.context else None)) if spec else None
            nodes = [name for name, node in self.nodes.items() if node.engine == engine]
            lines.append(f"#   engine {engine or '(environment)'} [{where or 'the environment engine'}]: "
                         f"{len(nodes)} nodes: {' '.join(nodes)}")
        crossing = [link for link in self.links if link.crosses]
        overlays = [link for link in self.links if link.driver == "overlay"]
        lines.append(f"#   {len(crossing)} of {len(self.links)} links cross engines; "
                     f"{len(overlays)} overlay networks, {len(self.links) - len(overlays)} bridges")
        for link in overlays:
            lines.append(f"#   overlay {link.name}: {link.a_node}@{link.a_engine or '-'} <-> "
                         f"{link.b_node}@{link.b_engine or '-'}" + ("" if link.crosses else " (same engine)"))
        return lines

    def trace_lines(self) -> list[tuple[str, str]]:
        """(node, shell command) for every configuration command, in apply order."""
        out: list[tuple[str, str]] = []
        for node in self.nodes.values():
            for phase in PHASES:
                tool = "tc" if phase == "qdiscs" else "ip"
                out += [(node.name, f"{tool} {line}") for line in node.phases.get(phase, [])]
        return out


def default_sysctls(kind: str, mptcp_enabled: bool, ipv6: bool = False) -> dict[str, str]:
    """Per-container sysctls, set at create time (containers cannot write /proc/sys).
    ``ipv6``: the node has an IPv6 address (else IPv6 stays disabled in it)."""
    out = {
        "net.ipv4.ip_forward": "1" if kind == "router" else "0",
        "net.mptcp.enabled": "1" if mptcp_enabled else "0",
        # Loose reverse-path filtering, as mptcp.dev recommends for multihomed hosts: a
        # packet is accepted if its source is reachable through any interface.
        "net.ipv4.conf.all.rp_filter": "2",
        "net.ipv4.conf.default.rp_filter": "2",
        # Every run starts from fresh TCP state rather than cached per-destination metrics.
        "net.ipv4.tcp_no_metrics_save": "1",
        # Only the addresses mptcpdock assigns carry traffic: without an IPv6 one, no IPv6.
        "net.ipv6.conf.all.disable_ipv6": "0" if ipv6 else "1",
        "net.ipv6.conf.default.disable_ipv6": "0" if ipv6 else "1",
    }
    if ipv6:
        # Addresses are set, never learnt: no router advertisements taken, none asked for.
        out["net.ipv6.conf.all.accept_ra"] = "0"
        out["net.ipv6.conf.default.accept_ra"] = "0"
        out["net.ipv6.conf.all.router_solicitations"] = "0"
        out["net.ipv6.conf.default.router_solicitations"] = "0"
        out["net.ipv6.conf.all.forwarding"] = "1" if kind == "router" else "0"
    return out


#: Set to 0 on every MPTCP node whose kernel has it (6.12+): after SYNs with MPTCP options are
#: dropped (a blackhole event, a link down during a handshake), the kernel otherwise disables
#: MPTCP in that namespace for an hour (default 3600 s), and every later run there is TCP.
BLACKHOLE_TIMEOUT = "net.mptcp.blackhole_timeout"


def apply_kernel_sysctls(plan: "Plan", *, has_blackhole_timeout: bool,
                         path_manager_sysctls: Callable[[str], dict[str, str]] | None = None) -> None:
    """Add the sysctls that depend on the Docker host's kernel (known after the probe) to
    every MPTCP node of ``plan``; a node's own setting wins. ``path_manager_sysctls``: the
    probe's mapping of a path manager to this kernel's knob (net.mptcp.path_manager on 6.15+,
    net.mptcp.pm_type before)."""
    for node in plan.nodes.values():
        if node.sysctls.get("net.mptcp.enabled") != "1":
            continue
        if has_blackhole_timeout:
            node.sysctls.setdefault(BLACKHOLE_TIMEOUT, "0")
        if node.path_manager and path_manager_sysctls is not None:
            for key, value in path_manager_sysctls(node.path_manager).items():
                node.sysctls.setdefault(key, value)


def _interfaces(topo: Topology, node: str) -> list[InterfacePlan]:
    out = []
    for link in topo.links_of(node):
        end, peer = link.end(node), link.peer(node)
        assert link.name and end.interface and end.addresses
        assert peer.interface and peer.addresses
        primary_subnet = link.subnet or link.subnet6
        assert primary_subnet
        out.append(InterfacePlan(
            name=end.interface, link=link.name, address=end.addresses[0],
            prefixlen=int(primary_subnet.split("/")[1]), peer_node=peer.node,
            peer_interface=peer.interface, peer_address=peer.addresses[0],
            address6=end.address6, prefixlen6=int(link.subnet6.split("/")[1]) if link.subnet6 else None,
            peer_address6=peer.address6,
        ))
    return out


#: Segments in ~1 ms at the slowest rate, above which no cap is set (the kernel's default is 65535).
GSO_CAP_LIMIT = 64
MSS = 1448


def gso_max_segs(topology: Topology) -> int | None:
    """How many segments one GSO packet may hold on every interface of the lab (None: no cap).

    ``gso_max_segs:`` in the topology sets it: a number, ``kernel`` (no cap), or ``auto``,
    the rule below.

    A TCP sender hands veths packets of up to 64 KB (GSO), and they cross every hop
    unsegmented: a queue limit counts each as ONE packet, so a "17-packet" queue held up to
    ~1 MB (0.3-0.9 s at 10 Mbit; measured 390 ms RTT for cubic, 260 ms for MPTCP subflows).
    Capping GSO packets at about 1 ms of the lab's slowest shaped rate (1 segment at
    10 Mbit) makes queues hold what they would on a wire. None: no rate, or fast enough.
    """
    if topology.gso_max_segs == "kernel":
        return None
    if isinstance(topology.gso_max_segs, int):
        return topology.gso_max_segs
    rates = [link.shaping_from(node).rate for link in topology.links for node in (link.a.node, link.b.node)]
    known = [rate for rate in rates if rate]
    if not known:
        return None
    segments = max(1, min(known) // 8 // 1000 // MSS)
    return segments if segments < GSO_CAP_LIMIT else None


def _address_lines(interfaces: list[InterfacePlan], gso_segments: int | None = None,
                   mtu: int | None = None) -> list[str]:
    lines = []
    for intf in interfaces:
        for address, prefixlen in intf.addresses:
            if ":" in address:  # nodad: usable at once (the lab assigned it, no one else has it)
                lines.append(f"-6 addr add {address}/{prefixlen} dev {intf.name} nodad")
            else:
                lines.append(f"addr add {address}/{prefixlen} dev {intf.name}")
        if mtu is not None:
            lines.append(f"link set dev {intf.name} mtu {mtu}")
        if gso_segments is not None:
            lines.append(f"link set dev {intf.name} gso_max_segs {gso_segments}")
        lines.append(f"link set dev {intf.name} up")
    return lines


def _mptcp_lines(topo: Topology, node: str, interfaces: list[InterfacePlan]) -> list[str]:
    mptcp = topo.nodes[node].mptcp
    if not mptcp.enabled:
        return []
    lines = []
    limits = []
    if mptcp.subflows is not None:
        limits += ["subflows", str(mptcp.subflows)]
    if mptcp.add_addr_accepted is not None:
        limits += ["add_addr_accepted", str(mptcp.add_addr_accepted)]
    if limits:
        lines.append("mptcp limits set " + " ".join(limits))
    addresses = {intf.name: intf.address for intf in interfaces}
    explicit = any(endpoint.id is not None for endpoint in mptcp.endpoints)  # else the kernel's 1, 2, ... match
    for endpoint, eid in zip(mptcp.endpoints, endpoint_ids(mptcp.endpoints)):
        address = endpoint.address or addresses[endpoint.interface]
        ident = f" id {eid}" if explicit else ""
        port = f" port {endpoint.port}" if endpoint.port is not None else ""
        lines.append(f"mptcp endpoint add {address} dev {endpoint.interface}{ident}{port} " + " ".join(endpoint.flags))
    return lines


def endpoint_ids(endpoints: list) -> list[int]:
    """The id of each endpoint as ``up`` adds it: its own ``id``, else the lowest id from 1
    that no endpoint of the node claims (what the kernel would pick in this order)."""
    taken = {ep.id for ep in endpoints if ep.id is not None}
    out, next_id = [], 1
    for endpoint in endpoints:
        if endpoint.id is not None:
            out.append(endpoint.id)
            continue
        while next_id in taken:
            next_id += 1
        out.append(next_id)
        taken.add(next_id)
    return out


#: Where mptcpd is in the node image (Debian's mptcpd package), and its log in the node.
MPTCPD = "/usr/libexec/mptcpd"
MPTCPD_LOG = "/var/log/mptcpd.log"


def daemon_command(topo: Topology, node: str) -> list[str]:
    """mptcpd's command line for a node on the userspace path manager ([] otherwise): the
    chosen plugin as the only and default path manager, told about addresses that exist
    already (the node's are added before it starts), link-local and loopback ones skipped."""
    mptcp = topo.nodes[node].mptcp
    if not mptcp.uses_mptcpd:
        return []
    argv = [MPTCPD, "--log=stderr", f"--load-plugins={mptcp.mptcpd_plugin}", f"--path-manager={mptcp.mptcpd_plugin}",
            "--notify-flags=existing,skip_link_local,skip_loopback"]
    if mptcp.mptcpd_addr_flags:
        argv.append("--addr-flags=" + ",".join(mptcp.mptcpd_addr_flags))
    return argv


def netem_event_egresses(topology: Topology) -> set[tuple[str, str]]:
    """(node, interface) of every egress a ``set:`` event gives delay, jitter or loss: it
    gets a netem leaf from the start (changing the leaf's kind mid-run would replace it)."""
    out: set[tuple[str, str]] = set()
    for event in topology.events:
        if event.set is None or not event.set.needs_netem or event.link is None:
            continue
        link = topology.link(event.link)
        for end in (link.a, link.b):
            if event.from_node in (None, end.node):
                out.add((end.node, end.interface or ""))
    return out


def _node_shaping(topo: Topology, node: str, egress: EgressShaping,
                  round_trips: dict[tuple[str, str], PathRoundTrip],
                  netem_leaves: set[tuple[str, str]] = frozenset()) -> dict[str, ShapingPlan]:  # type: ignore[assignment]
    """interface -> its shaping plan, each default queue sized by the paths through it."""
    out: dict[str, ShapingPlan] = {}
    for link in topo.links_of(node):
        interface = link.end(node).interface or ""
        shaping = egress[(node, interface)]
        path = round_trips.get((node, interface))
        choice = choose_queue(shaping, path.rtt_us, path.describe()) if path else choose_queue(shaping)
        out[interface] = plan_shaping(interface, shaping, choice, netem_leaf=(node, interface) in netem_leaves)
    return out


def make_plan(topology: Topology, *, drop_impairments: bool = False) -> Plan:
    """Plan a *validated* topology (see :func:`mptcpdock.topology.validate.validate`)."""
    routing = compute_routing(topology)
    gso_segments = gso_max_segs(topology)
    egress = egress_shaping(topology, drop_impairments=drop_impairments)
    round_trips = path_round_trips(topology, routing, egress)
    netem_leaves = set() if drop_impairments else netem_event_egresses(topology)
    nodes: dict[str, NodePlan] = {}
    for name, node in topology.nodes.items():
        interfaces = _interfaces(topology, name)
        shaping = _node_shaping(topology, name, egress, round_trips, netem_leaves)
        sysctls = default_sysctls(node.kind, node.mptcp.enabled, ipv6=any(intf.address6 for intf in interfaces))
        if node.mptcp.enabled and node.mptcp.scheduler:
            sysctls["net.mptcp.scheduler"] = node.mptcp.scheduler
        sysctls.update(node.sysctls)
        nodes[name] = NodePlan(
            name=name,
            kind=node.kind,
            image=node.image or NODE_IMAGE,
            sysctls=sysctls,
            cap_add=CAPABILITIES,
            privileged=node.privileged,
            interfaces=interfaces,
            phases={
                "addresses": _address_lines(interfaces, gso_segments, topology.mtu),
                "routes": routing_commands(routing[name]),
                "mptcp": _mptcp_lines(topology, name, interfaces),
                "qdiscs": [line for planned in shaping.values() for line in planned.commands],
            },
            routing=routing[name],
            monitor=node.mptcp.monitor,
            shaping=shaping,
            engine=node.engine,
            daemon=daemon_command(topology, name),
            path_manager=node.mptcp.path_manager if node.mptcp.enabled else None,
        )
    links = []
    for link in topology.links:
        assert link.name and (link.subnet or link.subnet6)
        links.append(LinkPlan(
            name=link.name, subnet=link.subnet or link.subnet6 or "",
            a_node=link.a.node, a_interface=link.a.interface or "", a_address=(link.a.addresses or [""])[0],
            b_node=link.b.node, b_interface=link.b.interface or "", b_address=(link.b.addresses or [""])[0],
            subnet6=link.subnet6,
            needs_netem=link.shaping_from(link.a.node).needs_netem or link.shaping_from(link.b.node).needs_netem
            or any((end.node, end.interface) in netem_event_egresses(topology) for end in (link.a, link.b)),
            driver="overlay" if topology.is_overlay(link) else "bridge",
            a_engine=topology.nodes[link.a.node].engine, b_engine=topology.nodes[link.b.node].engine,
        ))
    return Plan(lab=topology.name, topology=topology, nodes=nodes, links=links,
                impairments_dropped=drop_impairments and any(link.needs_netem for link in links))
