"""Check a topology completely and fill in every default, before anything is created.

:func:`validate` returns a *resolved* copy of the topology: every link has a name, a subnet
and per-end interface names and addresses; every flow has a name, a port and a destination
address. Every problem raises :class:`TopologyError` naming the field and the fix.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import re
from collections import Counter

from ..errors import TopologyError
from .model import (AQM_QDISCS, DISTRIBUTIONS, ENDPOINT_FLAGS, FAMILIES, MPTCPD_PLUGINS, OVERLAY_MODES, OVERLAY_MTU,
                    PATH_MANAGERS, PLACEMENTS, PROTOCOLS, TOOLS, Event, Flow, Link, Shaping, Topology)
from .placement import place

LAB_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")
NODE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,30}$")
IFNAME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]{0,14}$")
LINK_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
SYSCTL_RE = re.compile(r"^net\.[a-z0-9_]+(\.[a-z0-9_-]+)+$")
TOKEN_RE = re.compile(r"^[a-zA-Z0-9_.-]+$")
#: a sysctl's value: one token, or several separated by single spaces (net.ipv4.tcp_wmem's
#: "min default max"); Docker writes it to /proc/sys as given, no shell in between
SYSCTL_VALUE_RE = re.compile(r"^[a-zA-Z0-9_.-]+( [a-zA-Z0-9_.-]+)*$")
RESERVED_IFNAMES = {"lo", "all", "default"}
ENGINE_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,30}$")
ENGINE_SCHEMES = ("unix://", "tcp://", "ssh://", "npipe://", "http://", "https://")
MIN_MTU, MAX_MTU = 576, 9000
MAX_LIMIT = 8  # the kernel's MPTCP_PM_ADDR_MAX / subflow limit
MAX_ENDPOINTS = 8  # MPTCP_PM_ADDR_MAX: endpoints per namespace (pm_netlink selftest)
MAX_ENDPOINT_ID = 255  # ids are a u8; 0 is the initial subflow's
FLAG_RE = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
DEFAULT_PORT = 5201


class _Checker:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def fail(self, field: str, message: str, fix: str | None = None) -> TopologyError:
        return TopologyError(message, field=field, fix=fix, source=self.topology.source,
                             line=self._line(field))

    def _line(self, field: str) -> int | None:
        return line_of(self.topology, field)


def line_of(topology: Topology, field: str) -> int | None:
    """The line of ``field`` in the topology's file, or of its nearest parent that has one."""
    path = field
    while path:
        if path in topology.locations:
            return topology.locations[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def validate(topology: Topology) -> Topology:
    """Check ``topology`` and return a resolved deep copy (the input is left unchanged)."""
    resolved = copy.deepcopy(topology)
    resolved.locations = topology.locations
    check = _Checker(resolved)
    _check_top(check, resolved)
    _check_nodes(check, resolved)
    _resolve_links(check, resolved)
    _check_engines(check, resolved)
    _check_shaping(check, resolved)
    _check_mptcp(check, resolved)
    _check_routes(check, resolved)
    _resolve_flows(check, resolved)
    _check_events(check, resolved)
    return resolved


def _check_top(check: _Checker, topo: Topology) -> None:
    if not LAB_NAME_RE.match(topo.name):
        raise check.fail("name", f"lab name {topo.name!r} is not usable in Docker names",
                         "use 1-24 lower-case letters, digits, '-' or '_', starting with a letter or digit")
    if topo.routing not in ("static", "auto"):
        raise check.fail("routing", f"unknown routing mode {topo.routing!r}", "write 'static' or 'auto'")
    try:
        pool = ipaddress.IPv4Network(topo.address_pool)
    except ValueError as exc:
        raise check.fail("address_pool", f"{topo.address_pool!r} is not an IPv4 prefix ({exc})",
                         "write e.g. 10.0.0.0/8") from None
    if not 8 <= topo.link_prefix <= 31 or topo.link_prefix < pool.prefixlen:
        raise check.fail("link_prefix", f"link_prefix {topo.link_prefix} does not fit the pool {pool}",
                         f"use a prefix length between {pool.prefixlen} and 31, e.g. 24")
    if not 68 <= topo.snaplen <= 262144:
        raise check.fail("snaplen", f"snaplen {topo.snaplen} out of range",
                         "write 68..262144 (bytes per captured packet; 200 keeps the headers with every TCP option)")
    if topo.family not in FAMILIES:
        raise check.fail("family", f"unknown address family {topo.family!r}", "write ipv4, ipv6 or dual")
    _check_gso_max_segs(check, topo.gso_max_segs)
    try:
        pool6 = ipaddress.IPv6Network(topo.address_pool6)
    except ValueError as exc:
        raise check.fail("address_pool6", f"{topo.address_pool6!r} is not an IPv6 prefix ({exc})",
                         "write a ULA prefix such as fd00:1::/48") from None
    _check_lab_prefix6(check, "address_pool6", pool6)
    if not 16 <= topo.link_prefix6 <= 127 or topo.link_prefix6 < pool6.prefixlen:
        raise check.fail("link_prefix6", f"link_prefix6 {topo.link_prefix6} does not fit the pool {pool6}",
                         f"use a prefix length between {pool6.prefixlen} and 127, e.g. 64")


def _check_lab_prefix6(check: _Checker, field: str, prefix: ipaddress.IPv6Network) -> None:
    """Lab IPv6 addresses are unique local ones (fc00::/7): never a global address, which
    some other network owns, nor link-local, loopback or multicast ones."""
    if not prefix.subnet_of(ipaddress.IPv6Network("fc00::/7")):
        raise check.fail(field, f"{prefix} is not a unique local (ULA) prefix",
                         "use a prefix inside fc00::/7, e.g. fd00:1::/64 (labs never use global addresses)")


def _check_nodes(check: _Checker, topo: Topology) -> None:
    if not topo.nodes:
        raise check.fail("nodes", "the topology has no nodes", "add at least two nodes")
    lowered = Counter(name.lower() for name in topo.nodes)
    for name, node in topo.nodes.items():
        path = f"nodes.{name}"
        if not NODE_NAME_RE.match(name) or len(name) < 2:
            raise check.fail(path, f"node name {name!r} is not usable as a container or host name",
                             "use 2-31 letters, digits, '-' or '_', starting with a letter or digit")
        if lowered[name.lower()] > 1:
            raise check.fail(path, f"node name {name!r} differs from another only in case",
                             "give every node a distinct name")
        if node.kind not in ("host", "router"):
            raise check.fail(f"{path}.kind", f"unknown kind {node.kind!r}", "write 'host' or 'router'")
        if node.routing not in (None, "static", "auto"):
            raise check.fail(f"{path}.routing", f"unknown routing mode {node.routing!r}", "write 'static' or 'auto'")
        if node.image is not None and not re.match(r"^[a-z0-9][a-z0-9_.:/@-]*$", node.image):
            raise check.fail(f"{path}.image", f"{node.image!r} is not an image reference",
                             "write e.g. mptcpdock/node:0.1.0")
        for key, value in node.sysctls.items():
            if not SYSCTL_RE.match(key):
                raise check.fail(f"{path}.sysctls.{key}", f"sysctl {key!r} cannot be set per container",
                                 "only net.* sysctls are namespaced; write e.g. net.ipv4.tcp_congestion_control")
            if not SYSCTL_VALUE_RE.match(value):
                raise check.fail(f"{path}.sysctls.{key}", f"value {value!r} is not a number, a word or numbers "
                                 "separated by single spaces", "write e.g. 1, cubic or '4096 131072 6291456'")


def _check_engines(check: _Checker, topo: Topology) -> None:
    """Engines, each node's engine (placed when not given), overlays and the lab's MTU."""
    if topo.placement not in PLACEMENTS:
        raise check.fail("placement", f"unknown placement {topo.placement!r}", "write 'manual' or 'auto'")
    if topo.overlays not in OVERLAY_MODES:
        raise check.fail("overlays", f"unknown overlays mode {topo.overlays!r}",
                         "write 'crossing' (links between engines) or 'all' (every link, e.g. on a one-node swarm)")
    for name, spec in topo.engines.items():
        path = f"engines.{name}"
        if not ENGINE_NAME_RE.match(name):
            raise check.fail(path, f"engine name {name!r} is not usable", "use 1-31 letters, digits, '.', '-' or '_'")
        if spec.host is not None and spec.context is not None:
            raise check.fail(path, f"engine {name!r} has both host and context", "give one of them")
        if spec.host is not None and not spec.host.startswith(ENGINE_SCHEMES):
            raise check.fail(f"{path}.host", f"{spec.host!r} is not a Docker engine URL",
                             "write it as DOCKER_HOST would be, e.g. tcp://127.0.0.1:2375 or ssh://user@host")
        if spec.context is not None and not ENGINE_NAME_RE.match(spec.context):
            raise check.fail(f"{path}.context", f"{spec.context!r} is not a Docker context name",
                             "'docker context ls' lists them")
    environment = [name for name, spec in topo.engines.items() if spec.is_environment]
    if len(environment) > 1:
        raise check.fail(f"engines.{environment[1]}", f"engines {environment[0]!r} and {environment[1]!r} are both "
                         "the environment's engine (no host or context)", "give one of them a host: or context:")
    for name, node in topo.nodes.items():
        if node.engine is None:
            continue
        if not topo.engines:
            raise check.fail(f"nodes.{name}.engine", f"node {name!r} asks for engine {node.engine!r}, but the lab "
                             "declares no engines", f"declare it: 'engines: {{{node.engine}: {{host: URL}}}}'")
        if node.engine not in topo.engines:
            raise check.fail(f"nodes.{name}.engine", f"unknown engine {node.engine!r}",
                             "use one of: " + ", ".join(topo.engines))
    if topo.engines:
        if topo.placement == "auto":
            placement = place(topo)
        else:
            first = next(iter(topo.engines))
            placement = {name: node.engine or first for name, node in topo.nodes.items()}
        for name, engine in placement.items():
            topo.nodes[name].engine = engine
    overlay = any(topo.is_overlay(link) for link in topo.links)
    if topo.mtu is not None:
        if not MIN_MTU <= topo.mtu <= MAX_MTU:
            raise check.fail("mtu", f"mtu {topo.mtu} is out of range", f"use {MIN_MTU}..{MAX_MTU}, e.g. 1450")
        if overlay and topo.mtu > OVERLAY_MTU:
            raise check.fail("mtu", f"mtu {topo.mtu} is more than an overlay network carries ({OVERLAY_MTU})",
                             f"use at most {OVERLAY_MTU}, or remove mtu: to get {OVERLAY_MTU}")
    elif overlay:
        topo.mtu = OVERLAY_MTU


#: What ``gso_max_segs:`` takes besides a number of segments.
GSO_MODES = ("auto", "kernel")
MAX_GSO_SEGS = 65535  # the kernel's default and upper bound


def _check_gso_max_segs(check: _Checker, value: int | str) -> None:
    if isinstance(value, int):
        if not 1 <= value <= MAX_GSO_SEGS:
            raise check.fail("gso_max_segs", f"gso_max_segs {value} is out of range",
                             f"use 1..{MAX_GSO_SEGS} segments, or auto, or kernel")
    elif value not in GSO_MODES:
        raise check.fail("gso_max_segs", f"unknown gso_max_segs {value!r}",
                         "use auto (the default cap), kernel (no cap) or a number of segments such as 1")


def _resolve_links(check: _Checker, topo: Topology) -> None:
    names: Counter[str] = Counter()
    for index, link in enumerate(topo.links):
        path = f"links[{index}]"
        for side, end in (("0", link.a), ("1", link.b)):
            if end.node not in topo.nodes:
                raise check.fail(f"{path}.endpoints[{side}]", f"unknown node {end.node!r}",
                                 "declare it under 'nodes:' or fix the spelling; nodes: " + ", ".join(topo.nodes))
        if link.a.node == link.b.node:
            raise check.fail(f"{path}.endpoints", f"link joins {link.a.node!r} to itself", "join two different nodes")
        if link.name is None:
            base = f"{link.a.node}-{link.b.node}"
            names[base] += 1
            link.name = base if names[base] == 1 else f"{base}-{names[base]}"
        if not LINK_NAME_RE.match(link.name):
            raise check.fail(f"{path}.name", f"link name {link.name!r} is not usable in Docker names",
                             "use letters, digits, '.', '-' or '_'")
        if link.cost < 1:
            raise check.fail(f"{path}.cost", f"cost {link.cost} must be at least 1", "write a whole number >= 1")
    duplicate = [name for name, count in Counter(link.name for link in topo.links).items() if count > 1]
    if duplicate:
        index = [link.name for link in topo.links].index(duplicate[0], 1)
        raise check.fail(f"links[{index}].name", f"duplicate link name {duplicate[0]!r}", "give each link its own name")
    _resolve_interfaces(check, topo)
    _resolve_subnets(check, topo)


def _resolve_interfaces(check: _Checker, topo: Topology) -> None:
    taken: dict[str, set[str]] = {name: set() for name in topo.nodes}
    for index, link in enumerate(topo.links):
        for side, end in (("0", link.a), ("1", link.b)):
            if end.interface is None:
                continue
            field = f"links[{index}].endpoints[{side}]"
            if not IFNAME_RE.match(end.interface) or end.interface in RESERVED_IFNAMES:
                raise check.fail(field, f"interface name {end.interface!r} is not valid for ip",
                                 "use 1-15 letters, digits, '-' or '_', starting with a letter")
            if end.interface in taken[end.node]:
                raise check.fail(field, f"node {end.node!r} already has an interface {end.interface!r}",
                                 "give each interface of a node its own name")
            taken[end.node].add(end.interface)
    counters = {name: 0 for name in topo.nodes}
    for link in topo.links:
        for end in (link.a, link.b):
            if end.interface is None:
                while f"eth{counters[end.node]}" in taken[end.node]:
                    counters[end.node] += 1
                end.interface = f"eth{counters[end.node]}"
                taken[end.node].add(end.interface)


def link_family(topo: Topology, link: Link) -> str:
    """What ``link`` carries: its own ``family``; else the topology's, made dual by a subnet
    of the other family given on the link."""
    if link.family is not None:
        return link.family
    family = topo.family
    if family == "ipv4" and link.subnet6:
        return "dual"
    if family == "ipv6" and link.subnet:
        return "dual"
    return family


def _resolve_subnets(check: _Checker, topo: Topology) -> None:
    families: list[str] = []
    for index, link in enumerate(topo.links):
        if link.family is not None and link.family not in FAMILIES:
            raise check.fail(f"links[{index}].family", f"unknown address family {link.family!r}",
                             "write ipv4, ipv6 or dual")
        family = link_family(topo, link)
        if family == "ipv4" and link.subnet6:
            raise check.fail(f"links[{index}].subnet6", "an IPv4-only link (family: ipv4) with an IPv6 subnet",
                             "remove subnet6, or write family: dual")
        if family == "ipv6" and link.subnet:
            raise check.fail(f"links[{index}].subnet", "an IPv6-only link (family: ipv6) with an IPv4 subnet",
                             "remove subnet, or write family: dual")
        families.append(family)
    _resolve_subnets_of(check, topo, [f != "ipv6" for f in families], 4)
    _resolve_subnets_of(check, topo, [f != "ipv4" for f in families], 6)
    for index, link in enumerate(topo.links):
        _resolve_addresses(check, link, index)


_FAMILY_FIELDS = {
    4: ("subnet", "address_pool", "link_prefix", ipaddress.IPv4Network, 31, "10.0.1.0/24"),
    6: ("subnet6", "address_pool6", "link_prefix6", ipaddress.IPv6Network, 127, "fd00:1::/64"),
}


def _resolve_subnets_of(check: _Checker, topo: Topology, carries: list[bool], family: int) -> None:
    """Check the links' explicit subnets of ``family`` (``subnet`` or ``subnet6``) and give
    every other link that carries it the next free block of the pool."""
    key, pool_key, prefix_key, network, longest, example = _FAMILY_FIELDS[family]
    explicit: list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for index, link in enumerate(topo.links):
        given = getattr(link, key)
        if given is None:
            continue
        field = f"links[{index}].{key}"
        try:
            subnet = network(given, strict=True)
        except ValueError as exc:
            hint = " (an IPv6 prefix goes in subnet6)" if family == 4 and ":" in given else ""
            raise check.fail(field, f"{given!r} is not an IPv{family} subnet ({exc}){hint}",
                             f"write a network address with its prefix, e.g. {example}") from None
        if family == 6:
            _check_lab_prefix6(check, field, subnet)  # type: ignore[arg-type]
        if subnet.prefixlen > longest:
            raise check.fail(field, f"{key} {subnet} has room for fewer than two hosts",
                             f"use a /{longest} or a shorter prefix such as /{64 if family == 6 else 24}")
        for other_index, other in explicit:
            if subnet.overlaps(other):  # type: ignore[arg-type]
                raise check.fail(field, f"{key} {subnet} overlaps links[{other_index}]'s {other}",
                                 f"give every link a {key} of its own")
        explicit.append((index, subnet))
        setattr(link, key, str(subnet))
    pool = network(getattr(topo, pool_key))
    prefix = getattr(topo, prefix_key)
    blocks = pool.subnets(new_prefix=prefix)
    for index, link in enumerate(topo.links):
        if getattr(link, key) is None and carries[index]:
            for block in blocks:
                if not any(block.overlaps(used) for _, used in explicit):  # type: ignore[arg-type]
                    setattr(link, key, str(block))
                    explicit.append((index, block))
                    break
            else:
                raise check.fail(pool_key, f"pool {pool} has no free /{prefix} for link {link.name!r}",
                                 f"use a larger {pool_key} or a longer {prefix_key}")


def _host_addresses(subnet: ipaddress.IPv4Network) -> list[ipaddress.IPv4Address]:
    if subnet.prefixlen == 31:
        return [subnet.network_address, subnet.broadcast_address]
    return [subnet.network_address + 1, subnet.network_address + 2]


def _resolve_addresses(check: _Checker, link: Link, index: int) -> None:
    if link.subnet is None:
        for side, end in (("0", link.a), ("1", link.b)):
            if end.address is not None:
                raise check.fail(f"links[{index}].endpoints[{side}].address",
                                 f"an IPv4 address {end.address} on a link without IPv4",
                                 "remove it, or give the link an IPv4 subnet (family: dual)")
    else:
        _resolve_addresses4(check, link, index)
    if link.subnet6 is None:
        for side, end in (("0", link.a), ("1", link.b)):
            if end.address6 is not None:
                raise check.fail(f"links[{index}].endpoints[{side}].address6",
                                 f"an IPv6 address {end.address6} on a link without IPv6",
                                 "remove it, or give the link an IPv6 subnet (subnet6:, or family: dual)")
    else:
        _resolve_addresses6(check, link, index)


def _resolve_addresses4(check: _Checker, link: Link, index: int) -> None:
    subnet = ipaddress.IPv4Network(link.subnet or "")
    used: set[ipaddress.IPv4Address] = set()
    for side, end in (("0", link.a), ("1", link.b)):
        if end.address is None:
            continue
        field = f"links[{index}].endpoints[{side}].address"
        try:
            address = ipaddress.IPv4Address(end.address.split("/")[0])
        except ValueError:
            raise check.fail(field, f"{end.address!r} is not an IPv4 address", "write e.g. 10.0.1.1") from None
        if address not in subnet or (subnet.prefixlen < 31 and address in (subnet.network_address, subnet.broadcast_address)):
            raise check.fail(field, f"{address} is not a host address of the link's subnet {subnet}",
                             f"pick an address inside {subnet}")
        if address in used:
            raise check.fail(field, f"both ends of the link have address {address}", "give each end its own address")
        used.add(address)
        end.address = str(address)
    candidates = [addr for addr in subnet.hosts()] if subnet.prefixlen < 31 else _host_addresses(subnet)
    free = (addr for addr in candidates if addr not in used)
    for end in (link.a, link.b):
        if end.address is None:
            end.address = str(next(free))



def _resolve_addresses6(check: _Checker, link: Link, index: int) -> None:
    subnet = ipaddress.IPv6Network(link.subnet6 or "")
    used: set[ipaddress.IPv6Address] = set()
    for side, end in (("0", link.a), ("1", link.b)):
        if end.address6 is None:
            continue
        field = f"links[{index}].endpoints[{side}].address6"
        try:
            address = ipaddress.IPv6Address(end.address6.split("/")[0])
        except ValueError:
            raise check.fail(field, f"{end.address6!r} is not an IPv6 address", "write e.g. fd00:1::1") from None
        if address not in subnet or address == subnet.network_address:
            raise check.fail(field, f"{address} is not a host address of the link's subnet6 {subnet}",
                             f"pick an address inside {subnet} other than {subnet.network_address}")
        if address in used:
            raise check.fail(field, f"both ends of the link have address {address}", "give each end its own address")
        used.add(address)
        end.address6 = str(address)
    free = (subnet.network_address + i for i in range(1, 4) if subnet.network_address + i not in used)
    for end in (link.a, link.b):
        if end.address6 is None:
            end.address6 = str(next(free))


def _check_shaping(check: _Checker, topo: Topology) -> None:
    for link in topo.links:  # a traced direction without a rate runs at its trace's peak outside runs
        for shaping in (link.shaping, *link.egress.values()):
            if shaping.trace is not None and shaping.rate is None:
                shaping.rate = shaping.trace.max_rate
    for index, link in enumerate(topo.links):
        for node in (link.a.node, link.b.node):
            shaping = link.shaping_from(node)
            field = f"links[{index}]" if node not in link.egress else f"links[{index}].egress.{node}"
            if shaping.queue is not None and not 1 <= shaping.queue <= 100_000:
                raise check.fail(f"{field}.queue", f"queue limit {shaping.queue} is out of range",
                                 "write a number of packets between 1 and 100000")
            if shaping.jitter and not shaping.delay:
                raise check.fail(f"{field}.jitter", "jitter without delay", "give a delay at least as large as the jitter")
            if shaping.rate is not None and shaping.rate > 100 * 10**9:
                raise check.fail(f"{field}.rate", "rate above 100gbit", "write a rate a veth can carry")
            _check_netem_extras(check, shaping, field)


def _check_netem_extras(check: _Checker, shaping: Shaping, field: str) -> None:
    if shaping.qdisc is not None:
        if shaping.qdisc not in AQM_QDISCS:
            raise check.fail(f"{field}.qdisc", f"unknown qdisc {shaping.qdisc!r}", "write one of " + ", ".join(AQM_QDISCS))
        if shaping.needs_netem:
            raise check.fail(f"{field}.qdisc", f"qdisc {shaping.qdisc} and delay/jitter/loss/corrupt/duplicate/"
                             "reorder both need the leaf under htb (netem is a leaf too)",
                             "impair the other end's egress (egress: {node: ...}) or drop the qdisc")
    for key in ("corrupt", "duplicate", "reorder", "reorder_correlation"):
        value = getattr(shaping, key)
        if value is not None and not 0 <= value <= 100:
            raise check.fail(f"{field}.{key}", f"{key} {value:g}% is out of range", "write 0..100%")
    model = shaping.loss_model
    if model is not None and model.model == "state":
        for first, second in (("p13", "p14"), ("p31", "p32")):
            if model.value(first) + model.value(second) > 100:
                raise check.fail(f"{field}.loss", f"loss state: {first} + {second} = "
                                 f"{model.value(first) + model.value(second):g}% leave a state more than always",
                                 f"make {first} + {second} at most 100%")
    if shaping.reorder and not shaping.delay:
        raise check.fail(f"{field}.reorder", "reorder without delay: netem reorders by sending some packets "
                         "at once and delaying the rest", "give a delay, e.g. delay: 10ms")
    if shaping.reorder_correlation and shaping.reorder is None:
        raise check.fail(f"{field}.reorder_correlation", "reorder_correlation without reorder", "give reorder: 25%")
    if shaping.distribution is not None:
        if shaping.distribution not in DISTRIBUTIONS:
            raise check.fail(f"{field}.distribution", f"unknown distribution {shaping.distribution!r}",
                             "write one of " + ", ".join(DISTRIBUTIONS))
        if shaping.jitter is None:  # (an egress's jitter: 0ms switches an inherited one off)
            raise check.fail(f"{field}.distribution", "a delay distribution without jitter",
                             "give a jitter (the distribution's spread), e.g. jitter: 2ms")


def _interfaces(topo: Topology, node: str) -> dict[str, str]:
    """interface name -> its primary address (IPv4, else IPv6), for one node."""
    out: dict[str, str] = {}
    for link in topo.links_of(node):
        end = link.end(node)
        assert end.interface and end.addresses
        out[end.interface] = end.addresses[0]
    return out


def interface_addresses(topo: Topology, node: str) -> dict[str, list[str]]:
    """interface name -> every address of a resolved topology's node (IPv4 first)."""
    return {link.end(node).interface or "": link.end(node).addresses for link in topo.links_of(node)}


def _family(address: str) -> int:
    return ipaddress.ip_address(address).version


def _check_mptcp(check: _Checker, topo: Topology) -> None:
    for name, node in topo.nodes.items():
        path = f"nodes.{name}.mptcp"
        mptcp = node.mptcp
        for key in ("subflows", "add_addr_accepted"):
            value = getattr(mptcp, key)
            if value is not None and not 0 <= value <= MAX_LIMIT:
                raise check.fail(f"{path}.limits.{key}", f"{key} {value} is outside the kernel's range 0..{MAX_LIMIT}",
                                 f"write a number from 0 to {MAX_LIMIT}")
        _check_pm(check, name, node.mptcp, path)
        interfaces = interface_addresses(topo, name)
        if len(mptcp.endpoints) > MAX_ENDPOINTS:
            raise check.fail(f"{path}.endpoints[{MAX_ENDPOINTS}]", f"{len(mptcp.endpoints)} endpoints; the kernel "
                             f"keeps at most {MAX_ENDPOINTS} per node (MPTCP_PM_ADDR_MAX)",
                             f"keep {MAX_ENDPOINTS} endpoints or fewer")
        seen: dict[str, int] = {}
        ids: dict[int, int] = {}
        for index, endpoint in enumerate(mptcp.endpoints):
            field = f"{path}.endpoints[{index}]"
            if endpoint.interface not in interfaces:
                raise check.fail(field, f"node {name!r} has no interface {endpoint.interface!r}",
                                 "use one of: " + (", ".join(interfaces) or "(no interfaces: add a link)"))
            _check_flags(check, endpoint.flags, f"{field}.flags")
            if "signal" in endpoint.flags and "fullmesh" in endpoint.flags:
                raise check.fail(f"{field}.flags", "the kernel rejects signal together with fullmesh",
                                 "use [signal] or [subflow, fullmesh]")
            own = interfaces[endpoint.interface]
            if endpoint.address in ("ipv4", "ipv6"):  # the interface's address of that family
                wanted = 4 if endpoint.address == "ipv4" else 6
                matching = [a for a in own if _family(a) == wanted]
                if not matching:
                    raise check.fail(f"{field}.address", f"{endpoint.interface} has no {endpoint.address} address",
                                     "use one of: " + ", ".join(own))
                endpoint.address = matching[0]
            address = endpoint.address or own[0]
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise check.fail(f"{field}.address", f"{address!r} is not an IP address",
                                 "write e.g. 10.0.1.1, fd00:1::1, ipv4 or ipv6") from None
            if endpoint.address and str(ipaddress.ip_address(endpoint.address)) not in own:
                raise check.fail(f"{field}.address", f"{endpoint.address} is not an address of {endpoint.interface}",
                                 "omit it or write one of: " + ", ".join(own))
            address = str(ipaddress.ip_address(address))
            if endpoint.address:
                endpoint.address = address
            if address in seen:
                raise check.fail(field, f"endpoints[{seen[address]}] already has address {address}",
                                 "give each address one endpoint (the kernel refuses a duplicate)")
            seen[address] = index
            if endpoint.id is not None:
                if not 1 <= endpoint.id <= MAX_ENDPOINT_ID:
                    raise check.fail(f"{field}.id", f"endpoint id {endpoint.id} is outside 1..{MAX_ENDPOINT_ID}",
                                     f"write an id from 1 to {MAX_ENDPOINT_ID} (0 is the initial subflow's)")
                if endpoint.id in ids:
                    raise check.fail(f"{field}.id", f"endpoints[{ids[endpoint.id]}] already has id {endpoint.id}",
                                     "give each endpoint its own id, or leave ids out")
                ids[endpoint.id] = index
            if endpoint.port is not None:
                if "signal" not in endpoint.flags:
                    raise check.fail(f"{field}.port", "a port needs the signal flag (the port is announced "
                                     "with the address, and the kernel listens on it)", "add signal to the flags")
                if "subflow" in endpoint.flags:
                    raise check.fail(f"{field}.port", "the kernel refuses a port on a subflow endpoint",
                                     "remove subflow from the flags, or the port")
                if not 1 <= endpoint.port <= 65535:
                    raise check.fail(f"{field}.port", f"port {endpoint.port} out of range", "use 1..65535")
            if not mptcp.enabled:
                raise check.fail(field, f"node {name!r} has MPTCP disabled but declares endpoints",
                                 "remove the endpoints or enable MPTCP")


def _check_flags(check: _Checker, flags: tuple[str, ...], field: str) -> None:
    """Known flags pass; a misspelt one fails here; another lower-case word may be a newer
    kernel's flag and is checked against the probe at ``up``."""
    for flag in flags:
        if flag in ENDPOINT_FLAGS:
            continue
        close = difflib.get_close_matches(flag, ENDPOINT_FLAGS, n=1, cutoff=0.75)
        if close or not FLAG_RE.match(flag):
            hint = f"did you mean {close[0]}? " if close else ""
            raise check.fail(field, f"unknown endpoint flag {flag!r}",
                             f"{hint}use signal, subflow, backup, fullmesh and/or laminar")


def _check_pm(check: _Checker, name: str, mptcp, path: str) -> None:
    """Path manager, scheduler and mptcpd (what this kernel offers is checked at up)."""
    if mptcp.path_manager is not None and mptcp.path_manager not in PATH_MANAGERS:
        raise check.fail(f"{path}.path_manager", f"unknown path manager {mptcp.path_manager!r}",
                         "write kernel or userspace")
    if mptcp.scheduler is not None and not TOKEN_RE.match(mptcp.scheduler):
        raise check.fail(f"{path}.scheduler", f"{mptcp.scheduler!r} is not a scheduler name", "write e.g. default")
    if mptcp.mptcpd is not None and mptcp.mptcpd != "none":
        if mptcp.path_manager != "userspace":
            raise check.fail(f"{path}.mptcpd", "mptcpd's plugins drive the userspace path manager",
                             "add 'path_manager: userspace', or remove mptcpd (the kernel path manager follows "
                             "the endpoints)")
        if mptcp.mptcpd not in MPTCPD_PLUGINS:
            raise check.fail(f"{path}.mptcpd", f"unknown mptcpd plugin {mptcp.mptcpd!r}",
                             "use one of: " + ", ".join(MPTCPD_PLUGINS))
    for flag in mptcp.mptcpd_addr_flags:
        if flag not in ("subflow", "signal", "backup", "fullmesh"):
            raise check.fail(f"{path}.mptcpd.addr_flags", f"unknown address flag {flag!r}",
                             "use subflow, signal, backup and/or fullmesh")
    if not mptcp.enabled and (mptcp.path_manager or mptcp.scheduler):
        field = f"{path}.path_manager" if mptcp.path_manager else f"{path}.scheduler"
        raise check.fail(field, f"node {name!r} has MPTCP disabled", "remove it or enable MPTCP")
    if mptcp.path_manager == "userspace" and mptcp.endpoints:
        raise check.fail(f"{path}.endpoints", "endpoints are the kernel path manager's rules; the userspace "
                         "path manager (mptcpd) ignores them", "remove the endpoints, or use path_manager: kernel")


def _check_routes(check: _Checker, topo: Topology) -> None:
    link_names = {link.name for link in topo.links}
    for name, node in topo.nodes.items():
        interfaces = _interfaces(topo, name)
        subnets = [ipaddress.ip_network(subnet) for link in topo.links_of(name)
                   for subnet in (link.subnet, link.subnet6) if subnet]
        for index, route in enumerate(node.routes):
            field = f"nodes.{name}.routes[{index}]"
            destination = None
            if route.to != "default":
                try:
                    destination = ipaddress.ip_network(route.to, strict=False)
                except ValueError:
                    raise check.fail(f"{field}.to", f"{route.to!r} is not a destination",
                                     "write 'default', an address or a prefix such as 10.0.1.0/24 or fd00:1::/64") from None
            given = [key for key in ("via", "dev", "link") if getattr(route, key)]
            if len(given) != 1 and not (set(given) == {"via", "dev"}):
                raise check.fail(field, "a route needs exactly one of via, dev or link (or via with dev)",
                                 "write e.g. 'via: 10.0.0.2', 'dev: eth0' or 'link: h1-r1'")
            if route.dev and route.dev not in interfaces:
                raise check.fail(f"{field}.dev", f"node {name!r} has no interface {route.dev!r}",
                                 "use one of: " + ", ".join(interfaces))
            if route.link:
                if route.link not in link_names:
                    raise check.fail(f"{field}.link", f"unknown link {route.link!r}", "use one of: " + ", ".join(sorted(link_names)))  # type: ignore[arg-type]
                if name not in (topo.link(route.link).a.node, topo.link(route.link).b.node):
                    raise check.fail(f"{field}.link", f"link {route.link!r} does not touch {name!r}",
                                     "route through one of this node's own links")
            if route.via:
                try:
                    via = ipaddress.ip_address(route.via)
                except ValueError:
                    raise check.fail(f"{field}.via", f"{route.via!r} is not an IP address", "write e.g. 10.0.0.2") from None
                if destination is not None and destination.version != via.version:
                    raise check.fail(f"{field}.via", f"next hop {via} is not of the destination {destination}'s "
                                     "address family", "use a next hop of the same family")
                if not any(via.version == subnet.version and via in subnet for subnet in subnets):
                    raise check.fail(f"{field}.via", f"next hop {via} is not on any of {name!r}'s links",
                                     "use the address of a directly connected neighbour")
            if destination is not None and not route.via:
                link = topo.link(route.link) if route.link else next(
                    (item for item in topo.links_of(name) if item.end(name).interface == route.dev), None)
                if link is not None and (link.subnet6 if destination.version == 6 else link.subnet) is None:
                    raise check.fail(f"{field}.to", f"{destination} is IPv{destination.version} but link "
                                     f"{link.name!r} carries no IPv{destination.version}",
                                     "route it over a link of that family")
            if route.metric is not None and not 0 <= route.metric <= 65535:
                raise check.fail(f"{field}.metric", f"metric {route.metric} out of range", "write 0..65535")


#: The placeholders a command flow's argv may hold (each replaced inside its argument, no shell).
COMMAND_PLACEHOLDERS = ("{dst_address}", "{src_address}", "{port}", "{duration}")


def _check_flow_traffic(check: _Checker, flow: Flow, path: str) -> None:
    """udp, bitrate, bytes and command flows: what goes with what."""
    if flow.tool == "command":
        if not flow.command:
            raise check.fail(f"{path}.command", "tool: command needs the client's argument list",
                             "write e.g. command: [curl, -s, -o, /dev/null, 'http://{dst_address}:{port}/']")
        if flow.protocol == "udp":
            raise check.fail(f"{path}.protocol", "a command flow is tcp or mptcp (mptcpize wraps TCP sockets)",
                             "write protocol: tcp or mptcp, or use tool: iperf3 for UDP")
        for key in ("bitrate", "bytes"):
            if getattr(flow, key) is not None:
                raise check.fail(f"{path}.{key}", f"{key} is an iperf3 option; a command flow sends what its "
                                 "command sends", f"remove {key} or use tool: iperf3")
        if flow.streams != 1 or flow.reverse or flow.congestion:
            raise check.fail(path, "streams, reverse and congestion are iperf3 options", "remove them from the command flow")
        for key in ("command", "server"):
            for i, arg in enumerate(getattr(flow, key)):
                for piece in re.findall(r"\{[a-z_]*\}", arg):
                    if piece not in COMMAND_PLACEHOLDERS:
                        raise check.fail(f"{path}.{key}[{i}]", f"unknown placeholder {piece}",
                                         "use " + ", ".join(COMMAND_PLACEHOLDERS))
    else:
        for key in ("command", "server"):
            if getattr(flow, key):
                raise check.fail(f"{path}.{key}", f"{key} is for tool: command flows", "add 'tool: command' or remove it")
    if flow.protocol == "udp":
        if flow.congestion:
            raise check.fail(f"{path}.congestion", "UDP has no congestion control", "remove congestion")
        if flow.baseline:
            raise check.fail(f"{path}.baseline", "baseline compares an MPTCP flow with single-path TCP",
                             "remove 'baseline' or use protocol: mptcp")
    if flow.bitrate is not None and flow.bitrate < 1000:
        raise check.fail(f"{path}.bitrate", f"bitrate {flow.bitrate} bit/s is too small", "write e.g. 5mbit")


def _resolve_flows(check: _Checker, topo: Topology) -> None:
    names: Counter[str] = Counter()
    ports: dict[tuple[str, int], str] = {}
    next_port: dict[str, int] = {}
    for index, flow in enumerate(topo.flows):
        path = f"flows[{index}]"
        for key in ("src", "dst"):
            if getattr(flow, key) not in topo.nodes:
                raise check.fail(f"{path}.{key}", f"unknown node {getattr(flow, key)!r}",
                                 "use one of: " + ", ".join(topo.nodes))
        if flow.src == flow.dst:
            raise check.fail(path, "a flow from a node to itself", "pick two different nodes")
        if flow.protocol not in PROTOCOLS:
            raise check.fail(f"{path}.protocol", f"unknown protocol {flow.protocol!r}", "write mptcp, tcp or udp")
        if flow.tool not in TOOLS:
            raise check.fail(f"{path}.tool", f"unknown tool {flow.tool!r}", "write iperf3 or command")
        _check_flow_traffic(check, flow, path)
        if flow.protocol == "mptcp":
            for key in ("src", "dst"):
                if not topo.nodes[getattr(flow, key)].mptcp.enabled:
                    raise check.fail(f"{path}.protocol", f"MPTCP flow but node {getattr(flow, key)!r} has MPTCP disabled",
                                     "enable MPTCP on that node or use protocol: tcp")
        if flow.baseline and flow.protocol != "mptcp":
            raise check.fail(f"{path}.baseline", "baseline compares an MPTCP flow with single-path TCP",
                             "remove 'baseline' or use protocol: mptcp")
        if flow.streams < 1 or flow.streams > 128:
            raise check.fail(f"{path}.streams", f"{flow.streams} streams", "write 1..128")
        if flow.duration <= 0:
            raise check.fail(f"{path}.duration", "duration must be positive", "write e.g. duration: 10")
        if flow.congestion is not None and not TOKEN_RE.match(flow.congestion):
            raise check.fail(f"{path}.congestion", f"{flow.congestion!r} is not an algorithm name", "write e.g. cubic")
        dst_list = [a for addresses in interface_addresses(topo, flow.dst).values() for a in addresses]
        src_list = [a for addresses in interface_addresses(topo, flow.src).values() for a in addresses]
        dst_addresses, src_addresses = set(dst_list), set(src_list)
        if not dst_addresses or not src_addresses:
            raise check.fail(path, "an end of the flow has no links", "connect both nodes")
        if flow.family is not None and flow.family not in ("ipv4", "ipv6"):
            raise check.fail(f"{path}.family", f"unknown address family {flow.family!r}", "write ipv4 or ipv6")
        for key in ("dst_address", "src_address"):
            value = getattr(flow, key)
            if value is not None:
                try:
                    setattr(flow, key, str(ipaddress.ip_address(value)))
                except ValueError:
                    raise check.fail(f"{path}.{key}", f"{value!r} is not an IP address",
                                     "write e.g. 10.0.1.2 or fd00:1::2") from None
        if flow.dst_address is None:
            wanted = {"ipv4": 4, "ipv6": 6}.get(flow.family or "")
            if wanted is None and flow.src_address is not None:
                wanted = _family(flow.src_address)
            candidates = [a for a in dst_list if wanted is None or _family(a) == wanted]
            if not candidates:
                raise check.fail(f"{path}.family", f"{flow.dst!r} has no IPv{wanted} address",
                                 "use one of: " + ", ".join(dst_list))
            flow.dst_address = candidates[0]
        elif flow.dst_address not in dst_addresses:
            raise check.fail(f"{path}.dst_address", f"{flow.dst_address!r} is not an address of {flow.dst!r}",
                             "use one of: " + ", ".join(dst_list))
        elif flow.family is not None and _family(flow.dst_address) != int(flow.family[-1]):
            raise check.fail(f"{path}.family", f"dst_address {flow.dst_address} is not {flow.family}",
                             "remove family, or pick an address of that family")
        if flow.src_address is not None and flow.src_address not in src_addresses:
            raise check.fail(f"{path}.src_address", f"{flow.src_address!r} is not an address of {flow.src!r}",
                             "use one of: " + ", ".join(src_list))
        if flow.src_address is not None and _family(flow.src_address) != _family(flow.dst_address):
            raise check.fail(f"{path}.src_address", f"src_address {flow.src_address} and dst_address "
                             f"{flow.dst_address} are of different families", "pick addresses of one family")
        if flow.name is None:
            base = f"{flow.src}-{flow.dst}"
            names[base] += 1
            flow.name = base if names[base] == 1 else f"{base}-{names[base]}"
        if not LINK_NAME_RE.match(flow.name):
            raise check.fail(f"{path}.name", f"flow name {flow.name!r} is not a plain name", "use letters, digits, '.', '-' or '_'")
        if flow.port is None:
            port = next_port.get(flow.dst, DEFAULT_PORT)
            while (flow.dst, port) in ports:
                port += 1
            flow.port = port
            next_port[flow.dst] = port + 1
        if not 1024 <= flow.port <= 65535:
            raise check.fail(f"{path}.port", f"port {flow.port} out of range", "use 1024..65535")
        if (flow.dst, flow.port) in ports:
            raise check.fail(f"{path}.port", f"port {flow.port} on {flow.dst!r} is already used by flow {ports[(flow.dst, flow.port)]!r}",
                             "give each flow to the same node its own port")
        ports[(flow.dst, flow.port)] = flow.name
    duplicate = [name for name, count in Counter(f.name for f in topo.flows).items() if count > 1]
    if duplicate:
        index = [flow.name for flow in topo.flows].index(duplicate[0], 1)
        raise check.fail(f"flows[{index}].name", f"duplicate flow name {duplicate[0]!r}", "give each flow its own name")


def run_end(topo: Topology) -> float | None:
    """Seconds after t=0 when the last flow ends (None without flows)."""
    return max((flow.start + flow.duration for flow in topo.flows), default=None)


def _check_events(check: _Checker, topo: Topology) -> None:
    end = run_end(topo)
    links = {link.name: link for link in topo.links}
    for index, event in enumerate(topo.events):
        path = f"events[{index}]"
        if event.action is None:
            raise check.fail(path, "an event needs exactly one action",
                             "give one of: state, blackhole, set (with link:), endpoint, limits (with node:)")
        _check_event_times(check, event, path, end)
        if event.action in ("state", "blackhole", "set"):
            if event.link is None:
                raise check.fail(path, f"a {event.action} event needs a link", "add 'link: NAME'; links: "
                                 + ", ".join(links))
            if event.node is not None:
                raise check.fail(f"{path}.node", f"a {event.action} event acts on a link, not a node",
                                 "remove 'node:' (use 'from: NODE' to change one direction only)")
            if event.link not in links:
                raise check.fail(f"{path}.link", f"unknown link {event.link!r}",
                                 "use one of: " + ", ".join(str(name) for name in links))
            link = links[event.link]
            if event.from_node is not None:
                if event.action == "state":
                    raise check.fail(f"{path}.from", "a link goes down or up at both ends",
                                     "remove 'from:', or use 'blackhole:' with 'from:' to drop one direction")
                if event.from_node not in (link.a.node, link.b.node):
                    raise check.fail(f"{path}.from", f"node {event.from_node!r} is not an end of link {event.link!r}",
                                     f"use {link.a.node!r} or {link.b.node!r}")
            if event.set is not None:
                _check_event_set(check, event, link, path)
        else:
            if event.node is None:
                raise check.fail(path, f"an {event.action} event needs a node", "add 'node: NAME'")
            if event.link is not None or event.from_node is not None:
                raise check.fail(path, f"an {event.action} event acts on a node", "remove 'link:'/'from:'")
            if event.node not in topo.nodes:
                raise check.fail(f"{path}.node", f"unknown node {event.node!r}", "use one of: " + ", ".join(topo.nodes))
            if not topo.nodes[event.node].mptcp.enabled:
                raise check.fail(f"{path}.node", f"node {event.node!r} has MPTCP disabled",
                                 "enable MPTCP on that node or remove the event")
            if event.endpoint is not None:
                interfaces = _interfaces(topo, event.node)
                if event.endpoint.interface not in interfaces:
                    raise check.fail(f"{path}.endpoint.interface",
                                     f"node {event.node!r} has no interface {event.endpoint.interface!r}",
                                     "use one of: " + ", ".join(interfaces))
                _check_flags(check, event.endpoint.flags, f"{path}.endpoint.flags")
                if "signal" in event.endpoint.flags and "fullmesh" in event.endpoint.flags:
                    raise check.fail(f"{path}.endpoint.flags", "the kernel rejects signal together with fullmesh",
                                     "use [signal] or [subflow, fullmesh]")
            if event.limits is not None:
                for key, value in event.limits.items():
                    if key not in ("subflows", "add_addr_accepted"):
                        raise check.fail(f"{path}.limits.{key}", f"unknown limit {key!r}",
                                         "use subflows and/or add_addr_accepted")
                    if not 0 <= value <= MAX_LIMIT:
                        raise check.fail(f"{path}.limits.{key}", f"{key} {value} is outside the kernel's range "
                                         f"0..{MAX_LIMIT}", f"write a number from 0 to {MAX_LIMIT}")


def _check_event_times(check: _Checker, event: Event, path: str, end: float | None) -> None:
    for i, t in enumerate(event.t):
        if t < 0:
            field = f"{path}.t[{i}]" if len(event.t) > 1 else f"{path}.t"
            raise check.fail(field, f"t={t:g} s is in the past (before the run's t=0)", "write a time >= 0")
    if event.every is not None:
        if event.every <= 0:
            raise check.fail(f"{path}.every", "every must be positive", "write e.g. 'every: 2s'")
        if event.until is None:
            raise check.fail(f"{path}.every", "every without until", "add 'until: 20s' (the last time it may happen)")
        if len(event.t) > 1:
            raise check.fail(f"{path}.t", "a repeating event takes one start time", "write 't: 2' with every/until")
        start = event.t[0] if event.t else event.every
        if event.until < start:
            raise check.fail(f"{path}.until", f"until {event.until:g} s is before the first time {start:g} s",
                             "make until later than t")
    elif event.until is not None:
        raise check.fail(f"{path}.until", "until without every", "add 'every: 2s', or list the times in t")
    times = event.times()
    if not times:
        raise check.fail(path, "the event never happens", "give t (seconds after t=0)")
    if end is not None:
        late = [t for t in times if t > end + 1e-9]
        if late:
            field = f"{path}.until" if event.every is not None else f"{path}.t"
            raise check.fail(field, f"t={late[0]:g} s is after the run ends (t={end:g} s, the end of the last flow)",
                             f"pick times from 0 to {end:g} s, or make the flows longer")


def _check_event_set(check: _Checker, event: Event, link: Link, path: str) -> None:
    values = event.set
    assert values is not None
    if values.trace is not None:
        raise check.fail(f"{path}.set.trace", "a trace is a link's, not an event's", "write 'trace:' on the link")
    if values.queue is not None and not 1 <= values.queue <= 100_000:
        raise check.fail(f"{path}.set.queue", f"queue limit {values.queue} is out of range",
                         "write a number of packets between 1 and 100000")
    if values.rate is not None and values.rate > 100 * 10**9:
        raise check.fail(f"{path}.set.rate", "rate above 100gbit", "write a rate a veth can carry")
    senders = [event.from_node] if event.from_node else [link.a.node, link.b.node]
    for node in senders:
        shaping = link.shaping_from(node)
        if values.rate is not None and shaping.rate is None:
            raise check.fail(f"{path}.set.rate", f"link {link.name!r} has no rate from {node!r}, so there is no htb "
                             "class to change", "give the link a starting 'rate:' (the class the event changes "
                             "must exist from the start)")
        if values.rate is not None and shaping.trace is not None:
            raise check.fail(f"{path}.set.rate", f"link {link.name!r} replays a trace from {node!r}; its next "
                             "step would undo this rate", "remove the rate from this event, or the trace")


def node_addresses(topo: Topology, node: str) -> dict[str, str]:
    """interface -> address of a resolved topology's node."""
    return _interfaces(topo, node)
