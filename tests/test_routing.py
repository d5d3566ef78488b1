"""routing: auto, link costs, hand-written routes winning, per-source policy routing, the packet
walker behind path_warnings, and `mptcpdock routes` on a file. Pure: no Docker."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path

import pytest
from click.testing import CliRunner

from mptcpdock.cli import main
from mptcpdock.topology.loader import load_topology, load_topology_text
from mptcpdock.topology.model import Route
from mptcpdock.plan.commands import make_plan
from mptcpdock.runtime.kernel_routes import differences, parse_kernel
from mptcpdock.plan.routing import (
    RULE_PRIORITY_BASE,
    TABLE_BASE,
    compute_routing,
    interfaces,
    path_warnings,
    routing_commands,
    trace_packet,
)
from mptcpdock.topology.validate import validate

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
AUTO = TOPOLOGIES / "mptcp-mega-dumbbell-auto.yaml"
HAND = TOPOLOGIES / "mptcp-mega-dumbbell.yaml"


def resolved(path_or_text, **changes):
    topology = load_topology(path_or_text) if isinstance(path_or_text, Path) else load_topology_text(path_or_text)
    for key, value in changes.items():
        setattr(topology, key, value)
    return validate(topology)


def main_routes(routing, node):
    return {route.to: route for route in routing[node].routes if route.table is None}


def addresses(topology, family=4):
    return [(node, intf.address) for node in topology.nodes for intf in interfaces(topology, node, family)]


# -- routing: auto ----------------------------------------------------------------------------

def test_auto_routes_every_node_to_every_subnet_it_is_not_on():
    topology = resolved(AUTO)
    routing = compute_routing(topology)
    subnets = {link.subnet for link in topology.links}
    for node in topology.nodes:
        own = {str(intf.subnet) for intf in interfaces(topology, node)}
        assert set(main_routes(routing, node)) == subnets - own, node
        assert all(route.origin == "auto" for route in main_routes(routing, node).values())


def test_auto_routes_only_cross_routers_and_follow_shortest_paths():
    topology = resolved(AUTO)
    routing = compute_routing(topology)
    routers = {name for name, node in topology.nodes.items() if node.kind == "router"}
    router_addresses = {intf.address for name in routers for intf in interfaces(topology, name)}
    for node in topology.nodes:
        for route in main_routes(routing, node).values():
            assert route.via in router_addresses, (node, route)
    # h1 -> r1 -> r3 -> r4 reaches h6's eth6a subnet: cost 3 (the terminal router r4)
    assert main_routes(routing, "h1")["10.0.13.0/24"].cost == 3
    assert main_routes(routing, "r3")["10.0.14.0/24"].dev == "etr3d"  # straight to r5
    assert main_routes(routing, "r4")["10.0.14.0/24"].dev == "etr4a"  # back via r3, never via host h6


def test_every_address_pair_is_reachable_both_ways_in_the_auto_mega_dumbbell():
    topology = resolved(AUTO)
    routing = compute_routing(topology)
    pairs = 0
    for node, source in addresses(topology):
        for other, target in addresses(topology):
            if other == node:
                continue
            there = trace_packet(topology, routing, node, source, target)
            back = trace_packet(topology, routing, other, target, source)
            assert there.delivered and back.delivered, (source, target, there.problem, back.problem)
            pairs += 1
    assert pairs == 914


def test_ties_are_spread_round_robin_and_deterministic():
    topology = resolved(AUTO)
    routing = compute_routing(topology)
    h2 = main_routes(routing, "h2")
    # h2 reaches everything behind r3 at equal cost through r1 (eth2a) and r2 (eth2b):
    # those destinations take the two interfaces in turn, in link order.
    behind_r3 = [f"10.0.{index}.0/24" for index in range(10, 16)]
    assert [h2[prefix].dev for prefix in behind_r3] == ["eth2a", "eth2b"] * 3
    h6 = main_routes(routing, "h6")
    assert [h6[f"10.0.{index}.0/24"].dev for index in range(0, 3)] == ["eth6a", "eth6b", "eth6c"]
    assert compute_routing(resolved(AUTO)) == routing


def test_link_cost_steers_the_path():
    topology = load_topology(AUTO)
    h2_r2 = next(link for link in topology.links if link.a.interface == "eth2b")
    h2_r2.cost = 5
    routing = compute_routing(validate(topology))
    h2 = main_routes(routing, "h2")
    assert {h2[f"10.0.{index}.0/24"].dev for index in range(10, 16)} == {"eth2a"}
    assert h2["10.0.7.0/24"].dev == "eth2a" and h2["10.0.7.0/24"].cost == 3  # r1 -> r3 -> r2 beats 5
    triangle = resolved("""
name: tri
routing: auto
nodes: {ra: {kind: router}, rb: {kind: router}, rc: {kind: router}, hh: {}}
links:
  - {endpoints: [ra, rc], cost: 3}
  - {endpoints: [ra, rb]}
  - {endpoints: [rb, rc]}
  - {endpoints: [rc, hh]}
""")
    ra = main_routes(compute_routing(triangle), "ra")
    rc_hh = triangle.links[3].subnet
    assert ra[rc_hh].dev == interfaces(triangle, "ra")[1].name and ra[rc_hh].cost == 2


def test_hand_written_routes_win_for_their_destination():
    topology = load_topology(AUTO)
    topology.nodes["h2"].routes = [Route(to="10.0.13.0/24", dev="eth2a"), Route(to="10.0.12.0/22", dev="eth2b"),
                                   Route(to="default", dev="eth2a")]
    routing = compute_routing(validate(topology))
    h2 = [route for route in routing["h2"].routes if route.table is None]
    assert [(r.to, r.dev, r.origin) for r in h2 if r.origin == "static"] == [
        ("10.0.13.0/24", "eth2a", "static"), ("10.0.12.0/22", "eth2b", "static"), ("default", "eth2a", "static")]
    auto = {r.to for r in h2 if r.origin == "auto"}
    assert not auto & {"10.0.12.0/24", "10.0.13.0/24", "10.0.14.0/24", "10.0.15.0/24"}
    assert "10.0.11.0/24" in auto  # outside the hand route's /22; 'default' suppresses nothing


def test_routing_per_node_and_static_labs_untouched():
    topology = load_topology(HAND)
    hand = compute_routing(validate(topology))
    assert all(route.origin == "static" for routes in hand.values() for route in routes.routes)
    assert not any(routes.rules for routes in hand.values())
    topology.nodes["r4"].routing = "auto"
    mixed = compute_routing(validate(topology))
    assert "10.0.14.0/24" in main_routes(mixed, "r4")  # r4 now knows the way back to eth6b
    assert mixed["r5"] == hand["r5"]


def test_host_to_host_links_get_host_routes_and_hosts_never_forward():
    topology = resolved("""
name: hh
routing: auto
nodes: {h1: {}, h2: {}, h3: {}, r1: {kind: router}}
links:
  - {endpoints: ["h1:a0", "r1:r0"]}
  - {endpoints: ["r1:r1", "h2:b0"]}
  - {endpoints: ["h1:a1", "h2:b1"]}
  - {endpoints: ["h2:b2", "h3:c0"]}
""")
    routing = compute_routing(topology)
    direct = topology.links[2]
    r = main_routes(routing, "r1")
    assert r[f"{direct.a.address}/32"].dev == "r0" and r[f"{direct.b.address}/32"].dev == "r1"
    h3_address = topology.links[3].b.address
    assert f"{h3_address}/32" not in main_routes(routing, "h1")  # only through host h2: no route
    assert f"{topology.links[3].a.address}/32" in main_routes(routing, "h1")  # h2's own address


# -- source routing ---------------------------------------------------------------------------

def test_source_routing_is_on_by_default_with_auto_on_multihomed_hosts_only():
    routing = compute_routing(resolved(AUTO))
    assert {node for node, r in routing.items() if r.rules} == {"h2", "h3", "h4", "h6"}
    h6 = routing["h6"]
    assert [(rule.src, rule.table, rule.priority) for rule in h6.rules] == [
        ("10.0.13.2", TABLE_BASE + 1, RULE_PRIORITY_BASE + 1), ("10.0.14.2", TABLE_BASE + 2, RULE_PRIORITY_BASE + 2),
        ("10.0.15.2", TABLE_BASE + 3, RULE_PRIORITY_BASE + 3)]
    table = [(r.to, r.via, r.dev) for r in h6.table(TABLE_BASE + 2)]
    assert table == [("10.0.14.0/24", None, "eth6b"), ("default", "10.0.14.1", "eth6b")]
    assert not any(r.rules for r in compute_routing(resolved(AUTO, source_routing=False)).values())


def test_source_routing_for_hand_routed_labs_and_per_node():
    assert not any(r.rules for r in compute_routing(resolved(HAND)).values())
    with_rules = compute_routing(resolved(HAND, source_routing=True))
    assert {node for node, r in with_rules.items() if r.rules} == {"h2", "h3", "h4", "h6"}
    topology = load_topology(AUTO)
    topology.nodes["h2"].source_routing = False
    assert not compute_routing(validate(topology))["h2"].rules


def test_plan_routes_phase_has_rules_then_routes_and_each_table_in_order():
    plan = make_plan(resolved(AUTO))
    lines = plan.nodes["h6"].phases["routes"]
    assert lines[:3] == [f"rule add from 10.0.1{3 + i}.2 table {1001 + i} priority {1001 + i}" for i in range(3)]
    connected = lines.index("route add 10.0.14.0/24 dev eth6b scope link src 10.0.14.2 table 1002")
    assert lines[connected + 1] == "route add default via 10.0.14.1 dev eth6b table 1002"
    assert ("h6", "ip rule add from 10.0.14.2 table 1002 priority 1002") in plan.trace_lines()
    assert routing_commands(plan.nodes["h6"].routing) == lines


# -- the packet walker and path_warnings --------------------------------------------------------

def test_walker_reproduces_the_seeds_stranded_h1_subflow_and_its_cause():
    topology = resolved(HAND)
    routing = compute_routing(topology)
    forward = trace_packet(topology, routing, "h1", "10.0.0.1", "10.0.14.2")
    assert forward.delivered and [node for node, _ in forward.hops] == ["h1", "r1", "r3", "r5"]
    back = trace_packet(topology, routing, "h6", "10.0.14.2", "10.0.0.1")
    assert not back.delivered and back.hops[0] == ("h6", "eth6a")
    assert "r4 drops it: no route back to the source 10.0.14.2" in (back.problem or "")
    warnings = path_warnings(topology, "h1", "h6")
    assert any("10.0.14.2" in w and "no return path" in w and "r4" in w for w in warnings)
    assert any("10.0.15.2" in w and "no return path" in w for w in warnings)


def test_source_routing_or_rp_filter_off_gives_h1_its_return_path():
    sourced = resolved(HAND, source_routing=True)
    assert not [w for w in path_warnings(sourced, "h1", "h6") if "no return path" in w]
    back = trace_packet(sourced, compute_routing(sourced), "h6", "10.0.14.2", "10.0.0.1")
    assert back.delivered and back.hops[0] == ("h6", "eth6b")
    loose_off = load_topology(HAND)
    for node in loose_off.nodes.values():
        node.sysctls.update({"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0"})
    assert not [w for w in path_warnings(validate(loose_off), "h1", "h6") if "no return path" in w]


def test_auto_routes_make_loose_rp_filter_pass_and_strict_needs_source_routing():
    plain = resolved(AUTO, source_routing=False)
    assert path_warnings(plain, "h1", "h6") == []
    strict = load_topology(AUTO)
    strict.source_routing = False
    for node in strict.nodes.values():
        node.sysctls["net.ipv4.conf.all.rp_filter"] = "1"
    warnings = path_warnings(validate(strict), "h1", "h6")
    assert any("10.0.14.2" in w and "strict reverse-path filter" in w for w in warnings)
    strict.source_routing = True
    assert not [w for w in path_warnings(validate(strict), "h1", "h6") if "no return path" in w]


def test_path_warnings_name_endpoints_without_a_path_of_their_own():
    hand = resolved(HAND)
    warnings = path_warnings(hand, "h2", "h6")
    # h2's subflow endpoint eth2b -> 10.0.13.2: the kernel binds the subflow to eth2b (the
    # endpoint's device), and the seed routes 10.0.13.0/24 via eth2a only.
    assert any("10.0.2.1 (h2:eth2b) -> 10.0.13.2: does not get there: h2 has no route to 10.0.13.2 "
               "through eth2b" in w for w in warnings)
    assert path_warnings(resolved(AUTO), "h2", "h6") == []
    unsourced = path_warnings(resolved(AUTO, source_routing=False), "h2", "h6")
    assert any("leaves h2 by eth2b, not eth2a" in w for w in unsourced)


def test_path_warnings_accepts_an_unresolved_model_and_explicit_addresses():
    raw = load_topology(HAND)
    assert path_warnings(raw, "h1", "h6", src_address="10.0.0.1", dst_address="10.0.13.2") == \
        path_warnings(resolved(HAND), "h1", "h6")
    assert raw.links[0].subnet == "10.0.0.0/24" and raw.links[0].a.address is None  # not modified


def test_auto_routing_on_nest_example_1():
    topology = load_topology(TOPOLOGIES / "mptcp-default-configuration.yaml")
    for node in topology.nodes.values():
        node.routes = []
    topology.routing = "auto"
    topology = validate(topology)
    routing = compute_routing(topology)
    for node, source in addresses(topology):
        for other, target in addresses(topology):
            if other != node:
                assert trace_packet(topology, routing, node, source, target).delivered, (source, target)
    assert routing["h2"].rules and not routing["h1"].rules


# -- mptcpdock routes ---------------------------------------------------------------------------

def test_routes_command_on_a_file():
    result = CliRunner().invoke(main, ["routes", str(AUTO), "h6"])
    assert result.exit_code == 0, result.output
    assert "== h6" in result.output and "from 10.0.14.2" in result.output
    assert "10.0.14.1" in result.output and "source" in result.output
    everything = CliRunner().invoke(main, ["routes", str(AUTO)])
    assert everything.output.count("== ") == 12
    missing = CliRunner().invoke(main, ["routes", str(AUTO), "h9"])
    assert missing.exit_code == 1 and "no node 'h9'" in missing.output


def test_kernel_comparison_parses_ip_output():
    routing = compute_routing(resolved(AUTO))["h6"]
    rules = "0:\tfrom all lookup local\n" + "\n".join(
        f"{r.priority}:\tfrom {r.src} lookup {r.table}" for r in routing.rules) + "\n32766:\tfrom all lookup main\n"
    routes = []
    for r in routing.routes:
        line = f"{r.to}" + (f" via {r.via}" if r.via else "") + f" dev {r.dev}"
        routes.append(line + (f" table {r.table}" if r.table else "") + (" scope link" if r.scope_link else ""))
    routes.append("10.0.13.0/24 dev eth6a proto kernel scope link src 10.0.13.2")
    routes.append("local 10.0.13.2 dev eth6a table local proto kernel scope host src 10.0.13.2")
    kernel = parse_kernel(rules + "---\n" + "\n".join(routes))
    assert differences(routing, kernel) == []
    less = copy.deepcopy(kernel)
    less.routes.discard(("1002", "default", "10.0.14.1", "eth6b"))
    assert differences(routing, less) == ["missing route: default via 10.0.14.1 dev eth6b table 1002"]


@pytest.mark.parametrize("path", sorted(TOPOLOGIES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_topology_routes_without_loops(path):
    topology = validate(load_topology(path))
    routing = compute_routing(topology)
    for node, source in addresses(topology) + addresses(topology, 6):
        for other, target in addresses(topology) + addresses(topology, 6):
            if other != node and ipaddress.ip_address(source).version == ipaddress.ip_address(target).version:
                path_taken = trace_packet(topology, routing, node, source, target)
                assert "loop" not in (path_taken.problem or ""), (source, target)
    for node in topology.nodes:
        for route in routing[node].routes:
            assert route.to == "default" or ipaddress.ip_network(route.to)


def test_a_subflow_bound_to_its_endpoints_device_leaves_by_it():
    """simult_flows' ns1 has a default route per interface (ns1eth2's with metric 101) and a
    subflow endpoint with 'dev ns1eth2': the kernel binds that subflow to ns1eth2, so it
    takes ns1eth2's default route, not the preferred one through ns1eth1."""
    topology = validate(load_topology(TOPOLOGIES / "simult-flows" / "unbalanced-bwidth.yaml"))
    assert path_warnings(topology, "ns1", "ns3", dst_address="10.0.3.3") == []
    routing = compute_routing(topology)
    bound = trace_packet(topology, routing, "ns1", "10.0.2.1", "10.0.3.3", bound="ns1eth2")
    assert bound.delivered and bound.hops[0] == ("ns1", "ns1eth2")
    assert trace_packet(topology, routing, "ns1", "10.0.2.1", "10.0.3.3").hops[0] == ("ns1", "ns1eth1")
