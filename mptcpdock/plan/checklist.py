"""NeST's MPTCP checklist (``show_mptcp_checklist``), per flow, plus the subflows a flow
should open and, after a run, how many it did (pure: a resolved topology in, text out).

The checks are NeST's: at least one MPTCP flow; for each MPTCP flow, both ends have MPTCP
enabled, an end is multihomed *and* multiaddressed, the source has a ``subflow``/``fullmesh``
endpoint and the destination a ``signal`` endpoint. Passing them does not promise extra
subflows; :func:`expected_subflows` says which ones the kernel's in-kernel path manager
should open, and why.

How the expected subflows are derived (the in-kernel path manager of Linux >= 5.19, the
client being the flow's ``src``, the server its ``dst``; ``-R`` does not change who connects):

1. The *initial* subflow goes from the source address (``src_address``, else the address of
   the interface the source's routes use towards ``dst_address``) to ``dst_address``.
2. Each ``subflow`` endpoint of the client whose address is not the initial subflow's own
   opens one subflow from that address to ``dst_address`` (a ``fullmesh`` one: to every
   address of the server the client knows). The subflow is *bound to the endpoint's
   interface*, so it fails when the client has no route to the server through that
   interface. An endpoint on the initial subflow's own address opens nothing.
3. Each ``signal`` endpoint of the server whose address is not ``dst_address`` is announced
   (ADD_ADDR). The client accepts at most its ``add_addr_accepted`` limit (kernel default
   0) of them, and opens one subflow to each accepted address from the address its routes
   pick (from each ``fullmesh`` endpoint instead, when it has some).
4. Only subflows that can work are expected: the client's first hop must exist (through
   the bound interface, if any), the SYN must get to the remote address and the answer
   back to the local address through every node's tables and reverse-path filter
   (:func:`mptcpdock.plan.routing.trace_packet`; e.g. in NeST's mega-dumbbell h6 answers h1's
   subflows to its other addresses through eth6a, and r4 drops them: no route back to their
   source). :func:`mptcpdock.plan.routing.path_warnings` is listed with the flow as well.
5. The client opens at most its ``subflows`` limit of additional subflows (kernel default 2)
   and the server accepts at most its own ``subflows`` limit of joins.

Expected subflows per MPTCP connection = 1 (initial) + min(routable candidates, client
limit, server limit). With ``streams: N``, iperf3 opens N such connections.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from ..topology.model import Topology
from .routing import compute_routing, families_match, lookup, path_warnings, trace_packet

#: The kernel's defaults for ``ip mptcp limits`` (a fresh network namespace).
KERNEL_DEFAULT_SUBFLOWS = 2
KERNEL_DEFAULT_ADD_ADDR_ACCEPTED = 0
MAX_SUBFLOWS = 8  # the kernel's limit on subflows per connection


@dataclass
class Check:
    name: str
    passed: bool
    reason: str


@dataclass
class CandidateSubflow:
    local: str
    remote: str
    origin: str  # initial | subflow endpoint | fullmesh endpoint | ADD_ADDR
    interface: str | None  # the client's egress interface (bound one, else the route's)
    routable: bool
    note: str


@dataclass
class FlowChecklist:
    flow: str
    src: str
    dst: str
    protocol: str
    checks: list[Check] = field(default_factory=list)
    candidates: list[CandidateSubflow] = field(default_factory=list)
    expected_subflows: int = 1  # per connection, the initial one included
    reasoning: list[str] = field(default_factory=list)
    routing_warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


@dataclass
class Checklist:
    mptcp_flow_exists: Check
    flows: list[FlowChecklist]

    def flow(self, name: str) -> FlowChecklist:
        return next(item for item in self.flows if item.flow == name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Checklist":
        """The checklist :meth:`to_dict` wrote (checklist.json)."""
        flows = [FlowChecklist(
            flow=item["flow"], src=item["src"], dst=item["dst"], protocol=item["protocol"],
            checks=[Check(**check) for check in item.get("checks", [])],
            candidates=[CandidateSubflow(**c) for c in item.get("candidates", [])],
            expected_subflows=item.get("expected_subflows", 1), reasoning=item.get("reasoning", []),
            routing_warnings=item.get("routing_warnings", [])) for item in data.get("flows", [])]
        return cls(Check(**data["mptcp_flow_exists"]), flows)


# -- routing lookups on the end hosts (main table, as the kernel does without policy rules) ------


@dataclass(frozen=True)
class RouteChoice:
    interface: str
    source: str  # the address the kernel would pick: the interface's own
    via: str | None


def node_interfaces(topology: Topology, node: str, family: int | None = None
                    ) -> dict[str, tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    """interface -> (address, subnet) of a resolved topology's node: of ``family`` (4 or 6),
    or the primary one (IPv4, else IPv6) of each interface."""
    out = {}
    for link in topology.links_of(node):
        end = link.end(node)
        assert end.interface and end.addresses
        pairs = [(end.address, link.subnet), (end.address6, link.subnet6)]
        for address, subnet in pairs:
            if address and subnet and (family is None or ipaddress.ip_address(address).version == family):
                out[end.interface] = (address, ipaddress.ip_network(subnet))
                break
    return out


def lookup_route(topology: Topology, node: str, address: str, *, source: str | None = None,
                 interface: str | None = None, tables: dict | None = None) -> RouteChoice | None:
    """The route ``node`` uses towards ``address`` for a packet from ``source`` (policy rules,
    then the main table; see :func:`mptcpdock.plan.routing.lookup`). With ``interface`` (a socket
    bound to it, as subflows of an endpoint are) only routes through it count. None: no route."""
    routing = tables or compute_routing(topology)
    target = ipaddress.ip_address(address)
    interfaces = node_interfaces(topology, node, target.version)
    if interface is not None and interface not in interfaces:
        return None  # the interface carries no address of the target's family
    found = lookup(topology, routing, node, source, address, interface)
    if found is None:
        return None
    return RouteChoice(found.dev, source or interfaces[found.dev][0], found.next_address)


def owner_interface(topology: Topology, node: str, address: str) -> str | None:
    for family in (4, 6):
        for name, (addr, _) in node_interfaces(topology, node, family).items():
            if addr == address:
                return name
    return None


# -- the checks ---------------------------------------------------------------------------------


def mptcp_enabled(topology: Topology, node: str) -> tuple[bool, str]:
    settings = topology.nodes[node]
    if not settings.mptcp.enabled:
        return False, f"{node} has mptcp.enabled: false"
    if settings.sysctls.get("net.mptcp.enabled") == "0":
        return False, f"{node} sets sysctl net.mptcp.enabled=0"
    return True, f"{node} has net.mptcp.enabled=1"


def multihomed_check(topology: Topology, src: str, dst: str) -> Check:
    facts = []
    passed = False
    for node in (src, dst):
        interfaces = node_interfaces(topology, node)
        subnets = {subnet for _, subnet in interfaces.values()}
        listed = ", ".join(f"{name} {addr}/{subnet.prefixlen}" for name, (addr, subnet) in interfaces.items())
        facts.append(f"{node} has {len(interfaces)} interface(s) in {len(subnets)} subnet(s) ({listed})")
        passed = passed or (len(interfaces) >= 2 and len(subnets) >= 2)
    return Check("an end is multihomed and multiaddressed", passed, "; ".join(facts))


def endpoint_check(topology: Topology, node: str, flags: tuple[str, ...], role: str) -> Check:
    found = [f"{ep.interface} [{', '.join(ep.flags)}]" for ep in topology.nodes[node].mptcp.endpoints
             if set(ep.flags) & set(flags)]
    name = f"a {'/'.join(flags)} endpoint on the {role}"
    if found:
        return Check(name, True, f"{node}: " + "; ".join(found))
    return Check(name, False, f"{node} has no endpoint flagged {' or '.join(flags)}")


def flow_checks(topology: Topology, flow_name: str) -> list[Check]:
    flow = next(f for f in topology.flows if f.name == flow_name)
    checks = []
    for role, node in (("source", flow.src), ("destination", flow.dst)):
        enabled, reason = mptcp_enabled(topology, node)
        checks.append(Check(f"{role} {node} is MPTCP-enabled", enabled, reason))
    checks.append(multihomed_check(topology, flow.src, flow.dst))
    checks.append(endpoint_check(topology, flow.src, ("subflow", "fullmesh"), "source"))
    checks.append(endpoint_check(topology, flow.dst, ("signal",), "destination"))
    return checks


# -- the expected subflows ----------------------------------------------------------------------


def _limits(topology: Topology, node: str) -> tuple[int, int]:
    mptcp = topology.nodes[node].mptcp
    subflows = mptcp.subflows if mptcp.subflows is not None else KERNEL_DEFAULT_SUBFLOWS
    accepted = mptcp.add_addr_accepted if mptcp.add_addr_accepted is not None else KERNEL_DEFAULT_ADD_ADDR_ACCEPTED
    return subflows, accepted


def _endpoint_address(topology: Topology, node: str, endpoint) -> str:
    return endpoint.address or node_interfaces(topology, node)[endpoint.interface][0]


def _assess(topology: Topology, client: str, server: str, local: str, remote: str, origin: str,
            bound: str | None) -> CandidateSubflow:
    """Whether a subflow local -> remote can work: the client's first hop (through the bound
    interface, if any), then the packet's whole way there and the answer's way back through
    every node's tables and reverse-path filter (:func:`mptcpdock.plan.routing.trace_packet`)."""
    tables = compute_routing(topology)
    route = lookup_route(topology, client, remote, source=local, interface=bound, tables=tables)
    if route is None:
        if bound:
            usual = lookup_route(topology, client, remote, source=local, tables=tables)
            where = f"its routes to {remote} use {usual.interface}" if usual else f"it has no route to {remote}"
            return CandidateSubflow(local, remote, origin, bound, False,
                                    f"bound to {client}'s {bound}, but {where}: the kernel cannot send this SYN")
        return CandidateSubflow(local, remote, origin, None, False, f"{client} has no route to {remote}")
    forward = trace_packet(topology, tables, client, local, remote, bound)
    if not forward.delivered:
        return CandidateSubflow(local, remote, origin, route.interface, False,
                                f"the SYN does not get there: {forward.problem}")
    back = trace_packet(topology, tables, server, remote, local)
    if not back.delivered:
        leaves = back.hops[0][1] if back.hops else "?"
        return CandidateSubflow(local, remote, origin, route.interface, False,
                                f"no way back: {server} answers from {remote} via {leaves} and {back.problem}")
    note = f"{client} sends via {route.interface}"
    remote_interface = owner_interface(topology, server, remote)
    answer = back.hops[0][1] if back.hops else None
    if remote_interface and answer and answer != remote_interface:
        note += f"; {server} answers from {remote} via {answer}, not {remote_interface} (asymmetric return)"
    return CandidateSubflow(local, remote, origin, route.interface, True, note)


def expected_subflows(topology: Topology, flow_name: str) -> tuple[list[CandidateSubflow], int, list[str]]:
    """(candidate subflows with the initial one first, expected subflows per connection, reasoning)."""
    flow = next(f for f in topology.flows if f.name == flow_name)
    client, server = flow.src, flow.dst
    remote0 = flow.dst_address or ""
    reasoning: list[str] = []
    route0 = lookup_route(topology, client, remote0, source=flow.src_address)
    local0 = flow.src_address or (route0.source if route0 else "?")
    if route0 is None:
        initial = CandidateSubflow(local0, remote0, "initial", None, False, f"{client} has no route to {remote0}")
    else:
        initial = _assess(topology, client, server, local0, remote0, "initial", None)
        if not initial.routable:
            reasoning.append(f"the initial subflow itself cannot work ({initial.note}): the flow will fail")
    if flow.protocol != "mptcp":
        return [initial], 1, [f"protocol {flow.protocol}: a single path, {local0} -> {remote0}"]

    client_subflows, client_accepts = _limits(topology, client)
    server_subflows, _ = _limits(topology, server)
    client_pm, server_pm = topology.nodes[client].mptcp, topology.nodes[server].mptcp
    client_mesh = client_pm.uses_mptcpd and client_pm.mptcpd_plugin == "mesh"
    server_mesh = server_pm.uses_mptcpd and server_pm.mptcpd_plugin == "mesh"
    if client_pm.path_manager == "userspace":
        reasoning += _userspace_reasoning(topology, client, "client")
        # the kernel opens nothing by itself; mptcpd's plugin decides (mesh: up to the subflows limit)
        client_subflows = client_subflows if client_mesh else 0
    else:
        reasoning.append(f"limits: {client} opens up to {client_subflows} additional subflow(s) and accepts "
                         f"{client_accepts} ADD_ADDR; {server} accepts up to {server_subflows} join(s)")
    if server_pm.path_manager == "userspace":
        reasoning += _userspace_reasoning(topology, server, "server")
        # joins are accepted as the daemon's plugin allows: sspi keeps one subflow per interface of
        # the server, and with nothing announced every join comes to the initial subflow's address
        sspi = server_pm.uses_mptcpd and server_pm.mptcpd_plugin == "sspi"
        server_subflows = 0 if sspi else MAX_SUBFLOWS
    endpoints = [] if client_pm.path_manager == "userspace" else topology.nodes[client].mptcp.endpoints
    fullmesh = [ep for ep in endpoints if "fullmesh" in ep.flags]
    announced: list[tuple[str, str]] = []  # (address, interface) the server signals
    if server_mesh:  # mptcpdock's plugin announces the server's other addresses, up to its subflows limit
        announced = _other_addresses(topology, server, remote0)[:_limits(topology, server)[0]]
    for ep in topology.nodes[server].mptcp.endpoints if server_pm.path_manager != "userspace" else []:
        if "signal" not in ep.flags:
            continue
        address = _endpoint_address(topology, server, ep)
        if address == remote0:
            reasoning.append(f"{server}'s signal endpoint {ep.interface} is the address the flow connects to: "
                             "nothing to announce")
        elif not families_match(remote0, address, address):
            reasoning.append(f"{server} signals {address} ({ep.interface}), an IPv{ipaddress.ip_address(address).version} "
                             f"address the IPv4 connection to {remote0} cannot use")
        else:
            announced.append((address, ep.interface))
    if client_pm.path_manager == "userspace":
        for address, interface in announced:
            reasoning.append(f"{server} announces {address} ({interface}); {client}'s userspace path manager "
                             "opens no subflow to it (its mptcpd plugin does not follow ADD_ADDRs)")
        accepted = []
    else:
        accepted = announced[:client_accepts]
        for address, interface in announced[client_accepts:]:
            reasoning.append(f"{server} announces {address} ({interface}) but {client} accepts only "
                             f"{client_accepts} ADD_ADDR (limits add_addr_accepted)")
    known_remotes = [remote0] + [address for address, _ in accepted]

    candidates: list[CandidateSubflow] = []
    for ep in endpoints:
        if not {"subflow", "fullmesh"} & set(ep.flags):
            continue
        address = _endpoint_address(topology, client, ep)
        if address == local0 and "fullmesh" not in ep.flags:
            reasoning.append(f"{client}'s subflow endpoint {ep.interface} is the initial subflow's own address "
                             f"({address}): it opens nothing")
            continue
        remotes = known_remotes if "fullmesh" in ep.flags else [remote0]
        kind = "fullmesh endpoint" if "fullmesh" in ep.flags else "subflow endpoint"
        for remote in remotes:
            if not families_match(remote0, address, remote):
                continue  # the kernel pairs addresses of one family only
            if (address, remote) != (local0, remote0):
                candidates.append(_assess(topology, client, server, address, remote,
                                          f"{kind} {ep.interface}", ep.interface))
    if client_mesh:
        for address, interface in _other_addresses(topology, client, local0):
            candidates.append(_assess(topology, client, server, address, remote0,
                                      f"mesh subflow from {interface}", None))
    if not fullmesh:
        for address, interface in accepted:
            route = lookup_route(topology, client, address)
            local = route.source if route else local0
            candidates.append(_assess(topology, client, server, local, address, f"ADD_ADDR of {interface}", None))
    unique: dict[tuple[str, str], CandidateSubflow] = {}
    for candidate in candidates:
        unique.setdefault((candidate.local, candidate.remote), candidate)
    candidates = list(unique.values())
    routable = [c for c in candidates if c.routable]
    extra = min(len(routable), client_subflows, server_subflows)
    if len(routable) > extra:
        reasoning.append(f"{len(routable)} routable candidate(s) but the limits allow {extra}")
    if not candidates:
        reasoning.append("no candidate for an additional subflow: the connection stays on one path")
    return [initial] + candidates, 1 + extra, reasoning


def _other_addresses(topology: Topology, node: str, address0: str) -> list[tuple[str, str]]:
    """(address, interface) of ``node``'s addresses of ``address0``'s family on its other
    interfaces, in interface order: what the mesh plugin announces or opens subflows from."""
    own = owner_interface(topology, node, address0)
    out: list[tuple[str, str]] = []
    for link in topology.links_of(node):
        end = link.end(node)
        if end.interface == own:
            continue
        out += [(address, end.interface or "") for address in end.addresses
                if families_match(address0, address, address)]
    return out


def _userspace_reasoning(topology: Topology, node: str, role: str) -> list[str]:
    """What the userspace path manager on ``node`` will do, in place of the endpoint rules."""
    mptcp = topology.nodes[node].mptcp
    lines = [f"{node} ({role}) uses the userspace path manager: the kernel follows no endpoints or limits "
             "there; a daemon decides which addresses to announce and which subflows to open"]
    if role == "server":
        lines.append(f"{node} accepts the peer's joins while a process listens to the kernel's MPTCP events "
                     "(mptcpd, or the node's monitor); the peer's kernel path manager opens them")
    if not mptcp.uses_mptcpd:
        lines.append(f"{node} runs no mptcpd ('mptcpd: false'): nothing announces addresses or opens subflows "
                     "unless you drive the path manager yourself")
    elif mptcp.mptcpd_plugin == "sspi":
        lines.append(f"mptcpd's sspi plugin on {node}: on each new connection it means to announce (ADD_ADDR) the "
                     f"addresses of {node}'s other interfaces, but mptcpd 0.13 (the image's) sends them with the "
                     "placeholder address id 0, which its library refuses: nothing is announced, and sspi closes "
                     f"a joining subflow on an interface of {node} that already carries the connection")
    elif mptcp.mptcpd_plugin == "mesh":
        subflows, _ = _limits(topology, node)
        if role == "server":
            lines.append(f"mptcpdock's mesh plugin on {node} (server): on each new connection it announces "
                         f"(ADD_ADDR, with ids it allocates) the addresses of {node}'s other interfaces of the "
                         f"connection's family, up to {subflows} (its subflows limit); the peer's kernel path "
                         "manager opens a subflow to each it accepts (its add_addr_accepted limit)")
        else:
            lines.append(f"mptcpdock's mesh plugin on {node} (client): on each new connection it opens one "
                         f"subflow from each address of {node}'s other interfaces of the connection's family to "
                         f"the server's address, up to {subflows} (its subflows limit)")
    else:
        lines.append(f"mptcpd's {mptcp.mptcpd_plugin} plugin on {node} adds its addresses to the kernel path "
                     "manager's endpoints, which the userspace path manager does not follow: expect no "
                     "additional subflow")
    return lines


def make_checklist(topology: Topology) -> Checklist:
    """The checklist of a *resolved* topology's flows."""
    mptcp_flows = [flow.name for flow in topology.flows if flow.protocol == "mptcp"]
    exists = Check("at least one MPTCP flow", bool(mptcp_flows),
                   ", ".join(str(name) for name in mptcp_flows) if mptcp_flows else "every flow is protocol: tcp")
    flows = []
    for flow in topology.flows:
        assert flow.name
        item = FlowChecklist(flow=flow.name, src=flow.src, dst=flow.dst, protocol=flow.protocol)
        if flow.protocol == "mptcp":
            item.checks = flow_checks(topology, flow.name)
            item.routing_warnings = list(path_warnings(topology, flow.src, flow.dst, src_address=flow.src_address,
                                                       dst_address=flow.dst_address))
        item.candidates, item.expected_subflows, item.reasoning = expected_subflows(topology, flow.name)
        flows.append(item)
    return Checklist(exists, flows)


# -- rendering ----------------------------------------------------------------------------------


def _mark(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def render_checklist(checklist: Checklist, outcomes: dict[str, dict[str, Any]] | None = None) -> str:
    """The checklist as text; with ``outcomes`` (flow -> summary 'subflows' dict) the after-run part too."""
    lines = ["MPTCP checklist (before traffic)", f"[{_mark(checklist.mptcp_flow_exists.passed)}] "
             f"{checklist.mptcp_flow_exists.name}: {checklist.mptcp_flow_exists.reason}"]
    for item in checklist.flows:
        initial = item.candidates[0]
        lines.append("")
        lines.append(f"flow {item.flow} ({item.protocol}): {item.src} {initial.local} -> {item.dst} {initial.remote}")
        for check in item.checks:
            lines.append(f"  [{_mark(check.passed)}] {check.name}: {check.reason}")
        lines.append(f"  expected subflows per connection: {item.expected_subflows}"
                     + (f" (1 initial + {item.expected_subflows - 1} additional)" if item.protocol == "mptcp" else ""))
        for candidate in item.candidates:
            state = "expected" if candidate.routable else "not expected"
            lines.append(f"    {candidate.origin:<26} {candidate.local} -> {candidate.remote}  [{state}] {candidate.note}")
        for reason in item.reasoning:
            lines.append(f"  - {reason}")
        if item.protocol == "mptcp":
            if item.routing_warnings:
                lines.append("  routing warnings:")
                lines += [f"    ! {warning}" for warning in item.routing_warnings]
            else:
                lines.append("  routing warnings: none")
    if outcomes is not None:
        lines += ["", render_after_run(checklist, outcomes).rstrip("\n")]
    return "\n".join(lines) + "\n"


def render_after_run(checklist: Checklist, outcomes: dict[str, dict[str, Any]]) -> str:
    """The after-run part alone: per flow, subflows expected vs established, and why."""
    lines = ["After the run: subflows expected vs established (per MPTCP connection)"]
    for item in checklist.flows:
        outcome = outcomes.get(item.flow)
        if outcome is None:
            lines.append(f"  {item.flow}: no result")
            continue
        lines += ["  " + line for line in render_outcome(item, outcome)]
    return "\n".join(lines) + "\n"


def render_outcome(item: FlowChecklist, outcome: dict[str, Any]) -> list[str]:
    """Lines explaining one flow's subflows after the run, from the monitor and ss samples."""
    established = outcome.get("established")
    source = outcome.get("source") or "no monitor"
    verdict = ("as expected" if established == item.expected_subflows
               else "MORE than expected" if established is not None and established > item.expected_subflows
               else "fewer than expected" if established is not None else "unknown")
    lines = [f"{item.flow}: {established if established is not None else '?'} established, "
             f"{item.expected_subflows} expected ({verdict}; {source}; "
             f"{outcome.get('seen_in_samples', '?')} seen in ss samples)"]
    for connection in outcome.get("connections", []):
        lines.append(f"  connection token {connection.get('token')}: {len(connection.get('subflows', []))} subflow(s)")
        for subflow in connection.get("subflows", []):
            lines.append(f"    established {subflow}")
        for address in connection.get("announced", []):
            lines.append(f"    peer announced {address}")
        for failure in connection.get("failed", []):
            lines.append(f"    failed      {failure} (monitor SF_CLOSED)")
    for attempt in outcome.get("failed_attempts", []):
        lines.append(f"  tried, never established (ss samples): {attempt}")
    if established is not None and established < item.expected_subflows:
        missing = [c for c in item.candidates[1:] if c.routable
                   and not any(f"{c.local}" in s and f"{c.remote}" in s
                               for conn in outcome.get("connections", []) for s in conn.get("subflows", []))]
        for candidate in missing:
            lines.append(f"  missing: {candidate.origin} {candidate.local} -> {candidate.remote}")
        if item.routing_warnings:
            lines.append("  the routing warnings above are the likely reason")
    return lines
