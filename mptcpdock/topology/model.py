"""The topology model: what a user asked for, as typed dataclasses.

Both front ends (YAML in :mod:`mptcpdock.topology.loader`, Python in :mod:`mptcpdock.api` and
:mod:`mptcpdock.compat.nest`) build these objects; everything after them (validate, plan,
apply, run, report) reads only these objects.

Units: rates in bit/s, delays in microseconds, loss in percent, queue limits in packets,
flow and event times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

NodeKind = Literal["host", "router"]
RoutingMode = Literal["static", "auto"]
EndpointFlag = Literal["signal", "subflow", "backup", "fullmesh", "laminar"]
#: Endpoint flags mptcpdock knows. Others (newer kernels') pass validation when they are one
#: lower-case word; ``up`` accepts a flag only when the probe found that both the kernel and
#: the image's iproute2 have it (laminar: kernel 6.18).
ENDPOINT_FLAGS: tuple[str, ...] = ("signal", "subflow", "backup", "fullmesh", "laminar")
PATH_MANAGERS: tuple[str, ...] = ("kernel", "userspace")
#: mptcpd plugins of the node image: Debian's mptcpd-plugins (sspi: meant to announce one
#: address per other interface, but 0.13 announces nothing, see docs/topology.md; addr_adv: adds
#: in-kernel endpoints, which the userspace path manager ignores) and mptcpdock's own mesh
#: (images/node/mesh/mesh.c: a server announces its other addresses, a client opens a subflow
#: from each of its other addresses, up to the node's subflows limit).
MPTCPD_PLUGINS: tuple[str, ...] = ("sspi", "addr_adv", "mesh")
PROTOCOLS: tuple[str, ...] = ("mptcp", "tcp", "udp")
TOOLS: tuple[str, ...] = ("iperf3", "command")
#: What a link carries: IPv4 only (the default), IPv6 only, or both (dual stack).
FAMILIES: tuple[str, ...] = ("ipv4", "ipv6", "dual")
#: The default IPv6 pool: a ULA prefix (RFC 4193; never a global address), /64 per link.
DEFAULT_POOL6 = "fd6d:7064:6b00::/48"


@dataclass(frozen=True)
class RateTrace:
    """A bandwidth trace replayed on one link direction during runs (``trace: FILE``).

    ``segments`` is a step function: (start second, bit/s) pairs, the first at 0, each rate
    holding until the next start; the trace wraps after ``period`` seconds. Mahimahi files
    (one millisecond timestamp per 1500-byte delivery opportunity) are binned into
    :data:`TRACE_BIN` windows when read; CSV files (``time,rate``) give the steps directly.
    """

    path: str  # as resolved (absolute, or relative to the topology file's folder)
    format: str  # mahimahi | csv
    segments: tuple[tuple[float, int], ...]
    period: float  # seconds

    def rate_at(self, t: float) -> int:
        """The trace's rate at ``t`` seconds (wrapping)."""
        t = t % self.period if self.period > 0 else t
        rate = self.segments[0][1]
        for start, value in self.segments:
            if start > t:
                break
            rate = value
        return rate

    def mean_rate(self, start: float, end: float) -> float:
        """The time-weighted mean rate over [start, end) seconds (wrapping)."""
        if end <= start:
            return float(self.rate_at(start))
        total, t = 0.0, start
        while t < end - 1e-12:
            phase = t % self.period
            index = max(i for i, (s, _) in enumerate(self.segments) if s <= phase + 1e-12)
            next_start = self.segments[index + 1][0] if index + 1 < len(self.segments) else self.period
            step_end = min(end, t + (next_start - phase))
            if step_end <= t:  # numerical edge: move on by a microsecond
                step_end = t + 1e-6
            total += self.segments[index][1] * (step_end - t)
            t = step_end
        return total / (end - start)

    @property
    def max_rate(self) -> int:
        return max(rate for _, rate in self.segments)


#: Mahimahi traces are binned into windows of this many seconds when read.
TRACE_BIN = 0.1


#: The leaf qdiscs a link end may ask for with ``qdisc:`` (each probed on the Docker host's kernel).
AQM_QDISCS: tuple[str, ...] = ("fq_codel", "codel", "pie", "cake", "red", "fq")
#: netem's parameters beyond delay/jitter/loss (``Shaping`` fields).
NETEM_EXTRAS: tuple[str, ...] = ("corrupt", "duplicate", "reorder", "reorder_correlation", "distribution")
DISTRIBUTIONS: tuple[str, ...] = ("normal", "pareto", "paretonormal")
#: netem's correlated loss models (``loss: {model: ..., ...}``): each one's parameters, in
#: netem's order, and the default iproute2 gives a parameter left out (percent; a function of
#: the first parameter for the second).
LOSS_MODELS: dict[str, tuple[str, ...]] = {
    "gemodel": ("p", "r", "1-h", "1-k"),  # Gilbert-Elliott: good->bad, bad->good, loss in bad, loss in good
    "state": ("p13", "p31", "p32", "p23", "p14"),  # the 4-state Markov model (Salsano et al.)
}


@dataclass(frozen=True)
class LossModel:
    """netem's ``loss gemodel P R 1-H 1-K`` or ``loss state P13 P31 P32 P23 P14``: every
    parameter in percent, in netem's order (the loader fills in iproute2's defaults)."""

    model: str
    params: tuple[tuple[str, float], ...]

    @classmethod
    def with_defaults(cls, model: str, given: dict[str, float]) -> "LossModel":
        """iproute2's defaults for what is not given: gemodel r = 100 - p, 1-h = 100, 1-k = 0;
        state p31 = 100 - p13, p32 = 0, p23 = 100, p14 = 0."""
        names = LOSS_MODELS[model]
        first = given.get(names[0], 0.0)
        defaults = {"gemodel": {"r": 100 - first, "1-h": 100.0, "1-k": 0.0},
                    "state": {"p31": 100 - first, "p32": 0.0, "p23": 100.0, "p14": 0.0}}[model]
        return cls(model, tuple((name, given.get(name, defaults.get(name, 0.0))) for name in names))

    def value(self, name: str) -> float:
        return dict(self.params)[name]

    def netem_args(self) -> list[str]:
        return ["loss", self.model, *(f"{value:g}%" for _, value in self.params)]

    def describe(self) -> str:
        return f"loss {self.model} " + " ".join(f"{name} {value:g}%" for name, value in self.params)

    def stationary_loss(self) -> float:
        """The long-run fraction of packets lost (0..1), as netem's chain runs it: gemodel
        loses a packet with the loss probability of the state it was in; the 4-state model
        loses it when the step lands in state 3 (burst) or 4 (isolated loss)."""
        v = {name: value / 100 for name, value in self.params}
        if self.model == "gemodel":
            p, r = v["p"], v["r"]
            if p + r == 0:
                return v["1-k"]  # it never leaves the good state it starts in
            return (r * v["1-k"] + p * v["1-h"]) / (p + r)
        pi = _stationary(self.transitions())
        return pi[2] + pi[3]

    def transitions(self) -> list[list[float]]:
        """The 4-state model's transition matrix (rows: from state 1..4)."""
        v = {name: value / 100 for name, value in self.params}
        p13, p31, p32, p23, p14 = (v[name] for name in LOSS_MODELS["state"])
        return [[1 - p13 - p14, 0.0, p13, p14],
                [0.0, 1 - p23, p23, 0.0],
                [p31, p32, 1 - p31 - p32, 0.0],
                [1.0, 0.0, 0.0, 0.0]]


def _stationary(matrix: list[list[float]], steps: int = 20_000) -> list[float]:
    """A Markov chain's long-run state occupancy from state 1 (netem's start), by averaging the
    distribution over ``steps`` steps (exact enough, and defined for chains that are not
    irreducible)."""
    n = len(matrix)
    dist, total = [1.0] + [0.0] * (n - 1), [0.0] * n
    for _ in range(steps):
        dist = [sum(dist[i] * matrix[i][j] for i in range(n)) for j in range(n)]
        total = [t + d for t, d in zip(total, dist)]
    return [t / steps for t in total]


@dataclass
class Shaping:
    """Egress shaping of one link end. ``None`` means 'not set'."""

    rate: int | None = None  # bit/s
    delay: int | None = None  # microseconds
    jitter: int | None = None  # microseconds
    loss: float | None = None  # percent (random loss; ``loss_model`` for netem's correlated models)
    queue: int | None = None  # packets
    trace: RateTrace | None = None  # the rate follows this trace during runs
    qdisc: str | None = None  # the leaf under htb: an AQM of AQM_QDISCS (None: pfifo, or netem when impaired)
    corrupt: float | None = None  # percent (netem)
    duplicate: float | None = None  # percent (netem)
    reorder: float | None = None  # percent sent at once, the rest delayed (netem; needs delay)
    reorder_correlation: float | None = None  # percent
    distribution: str | None = None  # of the jitter: normal | pareto | paretonormal (netem; needs jitter)
    loss_model: LossModel | None = None  # ``loss: {model: gemodel|state, ...}`` (instead of ``loss``)

    def merged(self, override: "Shaping | None") -> "Shaping":
        """This shaping with every field ``override`` sets replaced."""
        if override is None:
            return replace(self)
        # a loss percentage and a loss model are one setting: the override's replaces either
        overrides_loss = override.loss is not None or override.loss_model is not None
        return Shaping(
            rate=override.rate if override.rate is not None else self.rate,
            delay=override.delay if override.delay is not None else self.delay,
            jitter=override.jitter if override.jitter is not None else self.jitter,
            loss=override.loss if overrides_loss else self.loss,
            loss_model=override.loss_model if overrides_loss else self.loss_model,
            queue=override.queue if override.queue is not None else self.queue,
            trace=override.trace if override.trace is not None else self.trace,
            **{key: getattr(override, key) if getattr(override, key) is not None else getattr(self, key)
               for key in NETEM_EXTRAS + ("qdisc",)},
        )

    @property
    def needs_netem(self) -> bool:
        return bool(self.delay or self.jitter or self.loss or self.loss_model or self.corrupt or self.duplicate
                    or self.reorder)

    @property
    def is_empty(self) -> bool:
        return (self.rate is None and not self.needs_netem and self.queue is None and self.trace is None
                and self.qdisc is None)


@dataclass
class Endpoint:
    """An MPTCP endpoint on one interface of a node (``ip mptcp endpoint add``)."""

    interface: str
    flags: tuple[str, ...] = ("subflow",)
    address: str | None = None  # default: the interface's address (its IPv4 one when it has both)
    id: int | None = None  # the endpoint id, 1..255 (default: the kernel picks)
    port: int | None = None  # signal endpoints only: announced with, and listening on, this port


@dataclass
class Mptcp:
    enabled: bool = True
    subflows: int | None = None  # ip mptcp limits set subflows N
    add_addr_accepted: int | None = None  # ip mptcp limits set add_addr_accepted N
    endpoints: list[Endpoint] = field(default_factory=list)
    monitor: bool = False  # run `ip mptcp monitor` on this node during experiments
    path_manager: str | None = None  # kernel | userspace (None: the kernel's default, kernel)
    scheduler: str | None = None  # net.mptcp.scheduler (None: the kernel's default)
    #: userspace path manager: the mptcpd plugin run in the node (None: sspi); "none": no mptcpd
    mptcpd: str | None = None
    #: mptcpd --addr-flags (the flags of the addresses it manages, e.g. subflow, signal)
    mptcpd_addr_flags: tuple[str, ...] = ()

    @property
    def uses_mptcpd(self) -> bool:
        return self.enabled and self.path_manager == "userspace" and self.mptcpd != "none"

    @property
    def mptcpd_plugin(self) -> str:
        return self.mptcpd or "sspi"


@dataclass
class Route:
    """A static route. ``to`` is 'default', a prefix or an address.

    The next hop is given by exactly one of ``via`` (an address), ``link`` (the peer on that
    link) or ``dev`` (an interface: the next hop is that interface's peer).
    """

    to: str
    via: str | None = None
    dev: str | None = None
    link: str | None = None
    metric: int | None = None


@dataclass
class Node:
    name: str
    kind: NodeKind = "host"
    image: str | None = None
    sysctls: dict[str, str] = field(default_factory=dict)
    mptcp: Mptcp = field(default_factory=Mptcp)
    routes: list[Route] = field(default_factory=list)
    routing: RoutingMode | None = None  # None: the topology's
    source_routing: bool | None = None  # None: the topology's
    privileged: bool = False
    engine: str | None = None  # a name under the topology's engines:; None: placed by validate


@dataclass
class LinkEnd:
    node: str
    interface: str | None = None  # default: eth0, eth1, ... in link order on that node
    address: str | None = None  # default: assigned from the link's subnet (None on an IPv6-only link)
    address6: str | None = None  # default: assigned from the link's subnet6 (None without IPv6)
    capture: bool = False  # run: tcpdump on this interface into captures/<node>-<interface>.pcap

    @property
    def addresses(self) -> list[str]:
        """This end's addresses, IPv4 first."""
        return [a for a in (self.address, self.address6) if a]


@dataclass
class Link:
    a: LinkEnd
    b: LinkEnd
    name: str | None = None  # default: "<a>-<b>" (+ "-2", "-3" for parallel links)
    subnet: str | None = None  # default: the next block of the topology's address pool (None: IPv6 only)
    subnet6: str | None = None  # IPv6 prefix; default (on ipv6/dual links): the next /64 of address_pool6
    family: str | None = None  # ipv4 | ipv6 | dual; None: the topology's (subnet6 alone makes it dual)
    shaping: Shaping = field(default_factory=Shaping)  # both directions
    egress: dict[str, Shaping] = field(default_factory=dict)  # per sending node, over `shaping`
    cost: int = 1  # for routing: auto

    def end(self, node: str) -> LinkEnd:
        if self.a.node == node:
            return self.a
        if self.b.node == node:
            return self.b
        raise KeyError(node)

    def peer(self, node: str) -> LinkEnd:
        return self.b if self.a.node == node else self.a

    def shaping_from(self, node: str) -> Shaping:
        """The shaping applied on ``node``'s egress into this link."""
        return self.shaping.merged(self.egress.get(node))


@dataclass
class Flow:
    src: str
    dst: str
    name: str | None = None  # default: "<src>-<dst>" (+ "-2", ...)
    dst_address: str | None = None  # default: dst's first address (of ``family``)
    family: str | None = None  # ipv4 | ipv6: which of dst's addresses the default dst_address is
    src_address: str | None = None  # bind the client to this address
    start: float = 0.0  # seconds after the run starts
    duration: float = 10.0  # seconds
    streams: int = 1
    protocol: str = "mptcp"
    congestion: str | None = None  # e.g. cubic, reno, bbr
    tool: str = "iperf3"
    port: int | None = None  # default: 5201, 5202, ... per destination node
    reverse: bool = False  # iperf3 -R: the server sends
    baseline: bool = False  # mptcp only: afterwards, single-path TCP over each of its paths, for comparison
    bitrate: int | None = None  # bit/s: iperf3 -b (udp: the target rate; iperf3's default is 1 Mbit/s)
    bytes: int | None = None  # iperf3 -n: a sized flow; its completion time is reported; duration is its deadline
    command: list[str] = field(default_factory=list)  # tool: command: the client's argv (under mptcpize for mptcp)
    server: list[str] = field(default_factory=list)  # tool: command: the server's argv ([] = no server)


EVENT_ACTIONS: tuple[str, ...] = ("state", "blackhole", "set", "endpoint", "limits")


@dataclass
class EndpointChange:
    """An event's endpoint action: the endpoint on ``interface`` gets exactly ``flags``
    (added when the node has none there), or is removed."""

    interface: str
    flags: tuple[str, ...] = ()
    remove: bool = False


@dataclass
class Event:
    """Something that happens to the lab during a run, at ``times()`` seconds after t=0.

    ``t`` is one time or a list; with ``every`` the event repeats from ``t`` (default:
    ``every``) up to ``until``. Exactly one action: ``state`` (link down/up, both ends),
    ``blackhole`` (packets dropped, interfaces up), ``set`` (shaping changed in place; only
    the named parameters), ``endpoint`` or ``limits`` (a node's MPTCP settings).
    """

    t: tuple[float, ...] = ()
    every: float | None = None
    until: float | None = None
    link: str | None = None
    node: str | None = None
    from_node: str | None = None  # `from:` a link event applies to that node's egress only
    state: str | None = None  # down | up
    blackhole: bool | None = None
    set: Shaping | None = None
    endpoint: EndpointChange | None = None
    limits: dict[str, int] | None = None  # subflows, add_addr_accepted
    label: str | None = None

    @property
    def action(self) -> str | None:
        given = [name for name in EVENT_ACTIONS if getattr(self, name) is not None]
        return given[0] if len(given) == 1 else None

    def times(self) -> list[float]:
        if self.every is None:
            return list(self.t)
        start = self.t[0] if self.t else self.every
        out, k = [], 0
        while self.until is not None and start + k * self.every <= self.until + 1e-9 and k < 100_000:
            out.append(round(start + k * self.every, 6))
            k += 1
        return out


PLACEMENTS: tuple[str, ...] = ("manual", "auto")
OVERLAY_MODES: tuple[str, ...] = ("crossing", "all")
#: The MTU of a Docker overlay network's interfaces (1500 minus VXLAN's 50 bytes); pinned on
#: every link of a lab that has an overlay, so local and remote paths carry the same packets.
OVERLAY_MTU = 1450


@dataclass
class EngineSpec:
    """One Docker engine a lab may place nodes on (``engines: {NAME: {host: URL}}``).

    Exactly one of ``host`` (a DOCKER_HOST-style URL) or ``context`` (a Docker context), or
    neither: the engine mptcpdock would talk to anyway (``--context``, DOCKER_HOST, ...)."""

    name: str
    host: str | None = None
    context: str | None = None

    @property
    def is_environment(self) -> bool:
        return self.host is None and self.context is None


@dataclass
class Topology:
    name: str
    nodes: dict[str, Node] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    flows: list[Flow] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    routing: RoutingMode = "static"
    source_routing: bool | None = None  # None: on with routing auto, off with static
    address_pool: str = "10.0.0.0/8"
    link_prefix: int = 24  # prefix length of subnets taken from the pool
    family: str = "ipv4"  # what links carry unless they say: ipv4 | ipv6 | dual
    address_pool6: str = DEFAULT_POOL6
    link_prefix6: int = 64
    allow_no_impairments: bool = False  # proceed without delay/jitter/loss when netem is missing
    #: engine name -> engine; empty: one engine, the environment's (every node's engine is None)
    engines: dict[str, EngineSpec] = field(default_factory=dict)
    placement: str = "manual"  # manual: unplaced nodes go to the first engine; auto: balanced partition
    overlays: str = "crossing"  # crossing: overlays only for links between engines; all: every link
    mtu: int | None = None  # pinned on every interface; validate sets OVERLAY_MTU when a link is an overlay
    #: segments per GSO packet on every interface: "auto" (about 1 ms of the slowest rate, see
    #: plan.commands.gso_max_segs), "kernel" (no cap: the kernel's default), or a number
    gso_max_segs: int | str = "auto"
    snaplen: int = 200  # bytes kept per captured packet (headers with every TCP option)
    source: str | None = None  # the file this topology came from (for errors)
    locations: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def crosses(self, link: Link) -> bool:
        """Whether ``link``'s ends sit on different engines (resolved topologies only)."""
        return self.nodes[link.a.node].engine != self.nodes[link.b.node].engine

    def is_overlay(self, link: Link) -> bool:
        """Whether ``link`` becomes a swarm overlay network rather than a bridge on one engine."""
        return self.overlays == "all" or self.crosses(link)

    def links_of(self, node: str) -> list[Link]:
        return [link for link in self.links if node in (link.a.node, link.b.node)]

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)
