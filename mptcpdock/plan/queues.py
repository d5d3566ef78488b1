"""The round trips that size each link end's default queue (pure).

A queue of one bandwidth-delay product lets a TCP flow keep its bottleneck busy through a
loss: the window halves, the queue drains, the link stays full. The delay that matters is
the *connection's* round trip, not the link's own: in NeST's example 1 every link has
10 ms, but h1 -> h2 crosses three links each way (60 ms round trip), so a queue sized for
one link (20 ms) holds a third of what TCP needs (measured: 12.13 of 18.76 Mbit/s).

The planner knows every route, so for each link end (a node's egress into a link) this
module walks every routed path between two host addresses in both directions (data one
way, ACKs back), adds the propagation delays of every egress on the way (netem delay plus
jitter, as applied: none where impairments are dropped), and keeps the longest round trip
among the paths that leave through that end. :func:`mptcpdock.plan.shaping.choose_queue`
turns it into packets. Paths are walked only between hosts (every node when a lab has
fewer than two), from each of a host's addresses, so per-source routing is followed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..topology.model import Shaping, Topology
from .routing import NodeRouting, trace_packet
from .shaping import without_impairments

#: (node, interface) -> the shaping that node's egress into the link gets.
EgressShaping = dict[tuple[str, str], Shaping]


@dataclass(frozen=True)
class PathRoundTrip:
    """The longest round trip among the routed paths that leave through one link end."""

    rtt_us: int
    src: str  # "node address"
    dst: str

    def describe(self) -> str:
        return f"{self.src} <-> {self.dst}"


def egress_shaping(topology: Topology, *, drop_impairments: bool) -> EgressShaping:
    out: EgressShaping = {}
    for link in topology.links:
        for end in (link.a, link.b):
            shaping = link.shaping_from(end.node)
            out[(end.node, end.interface or "")] = without_impairments(shaping) if drop_impairments else shaping
    return out


def _one_way(hops: list[tuple[str, str]], egress: EgressShaping) -> int:
    return sum((egress[hop].delay or 0) + (egress[hop].jitter or 0) for hop in hops if hop in egress)


def path_ends(topology: Topology) -> list[tuple[str, str]]:
    """(node, address) of every host's interface; every node's when a lab has < 2 hosts."""
    hosts = [name for name, node in topology.nodes.items() if node.kind == "host"]
    names = hosts if len(hosts) >= 2 else list(topology.nodes)
    return [(name, link.end(name).address or "") for name in names for link in topology.links_of(name)
            if link.end(name).address]


def path_round_trips(topology: Topology, routing: dict[str, NodeRouting],
                     egress: EgressShaping) -> dict[tuple[str, str], PathRoundTrip]:
    """(node, interface) -> the longest routed round trip through that egress.

    Empty when no egress has a delay: every queue then falls back to its own link, which
    gives the same answer, and large delay-free labs pay nothing for the walk.
    """
    if not any(shaping.delay or shaping.jitter for shaping in egress.values()):
        return {}
    ends = path_ends(topology)
    longest: dict[tuple[str, str], PathRoundTrip] = {}
    for i, (src_node, src) in enumerate(ends):
        for dst_node, dst in ends[i + 1:]:
            if dst_node == src_node:
                continue
            there = trace_packet(topology, routing, src_node, src, dst)
            back = trace_packet(topology, routing, dst_node, dst, src)
            if not (there.delivered and back.delivered):
                continue
            found = PathRoundTrip(_one_way(there.hops, egress) + _one_way(back.hops, egress),
                                  f"{src_node} {src}", f"{dst_node} {dst}")
            for hop in there.hops + back.hops:
                if hop not in longest or found.rtt_us > longest[hop].rtt_us:
                    longest[hop] = found
    return longest
