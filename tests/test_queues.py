"""Path-aware default queues (pure, no Docker): each link end's default queue is one
bandwidth-delay product over the longest round trip of the routed paths through it, plus
the packets netem's delay line holds at the rate (netem's limit counts them)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

from mptcpdock.plan.commands import make_plan
from mptcpdock.plan.shaping import MIN_QUEUE, MTU_FRAME
from mptcpdock.topology.loader import load_topology, load_topology_text
from mptcpdock.topology.validate import validate

ROOT = Path(__file__).resolve().parent.parent
EX1 = ROOT / "topologies" / "mptcp-default-configuration.yaml"


def bdp_packets(rate_bits: int, rtt_ms: float) -> int:
    return math.ceil(rate_bits / 8 * rtt_ms / 1000 / MTU_FRAME)


def held(rate_bits: int, delay_ms: float) -> int:
    """Frames in netem's delay line at ``rate_bits``: they count against its limit."""
    return math.ceil(rate_bits / 8 * delay_ms / 1000 / MTU_FRAME)


def queues(plan) -> dict[tuple[str, str], object]:
    return {(node.name, dev): planned.queue for node in plan.nodes.values()
            for dev, planned in node.shaping.items() if planned.queue}


def test_ex1_bottleneck_queues_hold_one_bdp_of_the_path_round_trip():
    """h1 -> h2 crosses three 10 ms links each way: 60 ms, not one link's 20 ms."""
    chosen = queues(make_plan(validate(load_topology(EX1))))
    for end in (("r2", "etr2b"), ("r2", "etr2c"), ("h2", "eth2a")):
        assert chosen[end].packets == bdp_packets(10_000_000, 60) + held(10_000_000, 10) == 50 + 9, (end, chosen[end])
        assert "60 ms" in chosen[end].reason and "h1 10.0.0.1 <-> h2" in chosen[end].reason
        assert chosen[end].reason.endswith(", + 9 in netem's 10 ms delay line"), chosen[end].reason
    assert chosen[("h1", "eth1a")].packets == bdp_packets(100_000_000, 60) + held(100_000_000, 10)
    # h2 answers from 192.168.11.2 through eth2a (its main table), so no routed path leaves
    # by eth2b: that end keeps its own link's round trip.
    assert chosen[("h2", "eth2b")].packets == bdp_packets(10_000_000, 20) + held(10_000_000, 10)
    assert "this link's round trip" in chosen[("h2", "eth2b")].reason


def test_the_plan_applies_the_queue_it_reports():
    plan = make_plan(validate(load_topology(EX1)))
    lines = plan.nodes["r2"].phases["qdiscs"]
    assert any("dev etr2b" in line and "netem" in line and "limit 59" in line for line in lines), lines


def test_without_impairments_the_delays_do_not_count():
    """On a kernel without netem the delays do not exist, so the queues are the floor's
    (and no delay line holds packets)."""
    chosen = queues(make_plan(validate(load_topology(EX1)), drop_impairments=True))
    assert chosen[("r2", "etr2b")].packets == bdp_packets(10_000_000, 20) == 17
    assert "20 ms floor" in chosen[("r2", "etr2b")].reason


CHAIN = """
name: q-chain
nodes:
  h1: {}
  r1: {kind: router}
  h2: {}
  h3: {}
routing: auto
links:
  - {endpoints: [h1, r1], rate: 100mbit, delay: 40ms, jitter: 5ms}
  - {endpoints: [r1, h2], rate: 10mbit, delay: 1ms}
  - {endpoints: [r1, h3], rate: 1mbit, queue: 30}
  - {endpoints: [h3, h2], rate: 100kbit}
"""


def chain_queues(text: str = CHAIN) -> dict:
    return queues(make_plan(validate(load_topology_text(textwrap.dedent(text), source="q.yaml"))))


def test_jitter_counts_in_the_round_trip_and_the_longest_path_wins():
    chosen = chain_queues()
    # h1 <-> h2: (40 + 5 + 1) ms each way = 92 ms; r1's egress to h2 sees it.
    assert chosen[("r1", "eth1")].packets == bdp_packets(10_000_000, 92) + held(10_000_000, 1)
    assert "92 ms" in chosen[("r1", "eth1")].reason


def test_explicit_queue_and_the_packet_floor_win():
    chosen = chain_queues()
    assert chosen[("r1", "eth2")].packets == 30 and chosen[("r1", "eth2")].reason == "set by queue:"
    assert chosen[("h3", "eth1")].packets == MIN_QUEUE  # 100 kbit: a BDP is under one packet
    assert "floor" in chosen[("h3", "eth1")].reason
