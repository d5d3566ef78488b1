"""Pure tests of the topology pipeline (no Docker): load (YAML) -> validate (resolve) ->
plan (ip/tc lines), shaping and units; and every class of bad input, each with its one-line
error naming the file, the line or field, and the fix.

The last section drives the same bad inputs through the ``mptcpdock`` command line and
checks with the Docker engine that nothing was created (those tests are marked ``docker``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from mptcpdock import NODE_IMAGE
from mptcpdock.errors import TopologyError
from mptcpdock.topology.loader import load_topology, load_topology_text, topology_to_dict, topology_to_yaml
from mptcpdock.topology.model import Link, LinkEnd, Node, Shaping, Topology
from mptcpdock.plan.commands import CAPABILITIES, default_sysctls, make_plan
from mptcpdock.plan.shaping import MIN_QUEUE, MTU_FRAME, default_queue, htb_burst, plan_shaping, without_impairments
from mptcpdock.topology.units import (
    UnitError,
    format_rate,
    format_time_us,
    parse_percent,
    parse_rate,
    parse_seconds,
    parse_time_us,
)
from mptcpdock.topology.validate import validate

ROOT = Path(__file__).resolve().parent.parent
EX1 = ROOT / "topologies" / "mptcp-default-configuration.yaml"
BAD_LAB = "t2-bad"


def load(text: str, source: str = "test.yaml") -> Topology:
    return load_topology_text(textwrap.dedent(text), source=source)


def resolved(text: str) -> Topology:
    return validate(load(text))


# -- units -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, bits", [
    ("10mbit", 10_000_000), ("10Mbit", 10_000_000), ("1.5gbit", 1_500_000_000), ("500kbit", 500_000),
    ("64bit", 64), ("100m", 100_000_000), (" 2 mbit ", 2_000_000), (1_000_000, 1_000_000),
])
def test_parse_rate(text, bits):
    assert parse_rate(text) == bits


@pytest.mark.parametrize("text, fragment, fix", [
    ("10mbps", "ambiguous", "10mbit"),  # tc reads bps as BYTES per second
    ("10MBps", "ambiguous", "10mbit"),
    ("fast", "not a rate", "10mbit"),
    ("10 mb/s", "not a rate", "10mbit"),
    (0, "must be positive", "10mbit"),
    (-5, "must be positive", "10mbit"),
    ("4bit", "too small", "8bit"),
    (True, "not a rate", "10mbit"),
])
def test_parse_rate_rejects(text, fragment, fix):
    with pytest.raises(UnitError) as caught:
        parse_rate(text)
    assert fragment in str(caught.value)
    assert fix in caught.value.fix


@pytest.mark.parametrize("text, micros", [
    ("10ms", 10_000), ("250us", 250), ("1s", 1_000_000), ("1.5ms", 1_500), (5, 5_000), (0.5, 500), ("7", 7_000),
])
def test_parse_time_us(text, micros):
    assert parse_time_us(text) == micros


@pytest.mark.parametrize("text", ["soon", "10 minutes", "-3ms", "10mss", True])
def test_parse_time_rejects(text):
    with pytest.raises(UnitError) as caught:
        parse_time_us(text)
    assert "10ms" in caught.value.fix


def test_parse_seconds_and_percent():
    assert parse_seconds(20) == 20.0
    assert parse_seconds("500ms") == 0.5
    assert parse_seconds("2s") == 2.0
    assert parse_percent("1%") == 1.0
    assert parse_percent(0.5) == 0.5
    for bad in ("101%", "lots", True):
        with pytest.raises(UnitError):
            parse_percent(bad)


@pytest.mark.parametrize("bits", [10_000_000, 1_500_000_000, 500_000, 64, 2_500_000])
def test_format_rate_round_trips(bits):
    assert parse_rate(format_rate(bits)) == bits


def test_format_time():
    assert format_time_us(10_000) == "10ms"
    assert format_time_us(250) == "250us"
    assert format_time_us(2_000_000) == "2s"
    assert parse_time_us(format_time_us(1_500)) == 1_500


# -- loader --------------------------------------------------------------------------------

TWO_FORMS = """\
name: forms
nodes:
  h1: {}
  h2: {}
  r1: {kind: router}
links:
  - endpoints: ["h1:wan0", r1]
    rate: 10mbit
  - endpoints:
      - {node: r1, interface: down0, address: 10.9.0.1}
      - h2
    subnet: 10.9.0.0/24
"""


def test_loader_endpoint_forms():
    topo = load(TWO_FORMS)
    first, second = topo.links
    assert first.a == LinkEnd(node="h1", interface="wan0")
    assert first.b == LinkEnd(node="r1")
    assert second.a == LinkEnd(node="r1", interface="down0", address="10.9.0.1")
    assert second.b == LinkEnd(node="h2")
    assert first.shaping.rate == 10_000_000 and second.subnet == "10.9.0.0/24"


def test_loader_egress_override():
    topo = load("""\
        name: eg
        nodes: {h1: {}, h2: {}}
        links:
          - endpoints: [h1, h2]
            rate: 10mbit
            delay: 5ms
            egress:
              h2: {rate: 2mbit, loss: 1%}
        """)
    link = topo.links[0]
    assert link.shaping_from("h1") == Shaping(rate=10_000_000, delay=5_000)
    assert link.shaping_from("h2") == Shaping(rate=2_000_000, delay=5_000, loss=1.0)


def test_loader_egress_names_only_the_links_nodes():
    with pytest.raises(TopologyError) as caught:
        load("""\
            name: eg
            nodes: {h1: {}, h2: {}}
            links:
              - endpoints: [h1, h2]
                egress: {h3: {rate: 2mbit}}
            """)
    assert caught.value.field == "links[0].egress.h3" and caught.value.line == 5


def test_loader_flow_stop_and_duration():
    topo = load("""\
        name: fl
        nodes: {h1: {}, h2: {}}
        links: [{endpoints: [h1, h2]}]
        flows:
          - {src: h1, dst: h2, start: 5, stop: 20}
          - {src: h1, dst: h2, start: 2s, duration: 500ms}
          - {src: h2, dst: h1}
        """)
    durations = [(flow.start, flow.duration) for flow in topo.flows]
    assert durations == [(5.0, 15.0), (2.0, 0.5), (0.0, 10.0)]


@pytest.mark.parametrize("flow, fragment", [
    ("{src: h1, dst: h2, duration: 5, stop: 10}", "both duration and stop"),
    ("{src: h1, dst: h2, start: 10, stop: 10}", "is not after start"),
])
def test_loader_flow_time_errors(flow, fragment):
    with pytest.raises(TopologyError) as caught:
        load(f"name: fl\nnodes: {{h1: {{}}, h2: {{}}}}\nlinks: [{{endpoints: [h1, h2]}}]\nflows:\n  - {flow}\n")
    assert fragment in caught.value.message and caught.value.field == "flows[0].stop" and caught.value.line == 5


def test_loader_duplicate_keys_anywhere():
    with pytest.raises(TopologyError) as caught:
        load("""\
            name: dup
            nodes:
              h1:
                kind: host
                kind: router
              h2: {}
            """)
    assert caught.value.field == "nodes.h1.kind" and caught.value.line == 5


def test_loader_mptcp_forms():
    topo = load("""\
        name: mp
        nodes:
          h1:
            mptcp:
              limits: {subflows: 2, add_addr_accepted: 3}
              endpoints: {eth0: [subflow, backup], eth1: "signal"}
          h2:
            mptcp:
              endpoints:
                - {interface: eth0, flags: "subflow, fullmesh"}
                - {interface: eth1}
          h3: {mptcp: false}
        links: [{endpoints: [h1, h2]}, {endpoints: [h1, h2]}, {endpoints: [h1, h3]}]
        """)
    h1, h2, h3 = (topo.nodes[name].mptcp for name in ("h1", "h2", "h3"))
    assert (h1.subflows, h1.add_addr_accepted) == (2, 3)
    assert [(ep.interface, ep.flags) for ep in h1.endpoints] == [("eth0", ("subflow", "backup")), ("eth1", ("signal",))]
    assert [(ep.interface, ep.flags) for ep in h2.endpoints] == [("eth0", ("subflow", "fullmesh")), ("eth1", ("subflow",))]
    assert not h3.enabled


def test_loader_records_lines_and_source(tmp_path):
    path = tmp_path / "lines.yaml"
    path.write_text(TWO_FORMS)
    topo = load_topology(path)
    assert topo.source == str(path)
    assert topo.locations["links[1].endpoints[0].address"] == 10
    assert topo.locations["nodes.r1"] == 5


def test_yaml_round_trip():
    original = load(EX1.read_text(), source=str(EX1))
    again = load(topology_to_yaml(original))
    assert topology_to_dict(again) == topology_to_dict(original)
    assert validate(again).links == validate(original).links


# -- validate: what it resolves --------------------------------------------------------------

AUTO = """\
name: auto
nodes: {ha: {}, hb: {}, rc: {kind: router}}
links:
  - {endpoints: [ha, rc], subnet: 10.0.1.0/24}
  - {endpoints: [ha, rc]}
  - {endpoints: ["rc:up0", hb]}
  - endpoints: [{node: hb, interface: wan, address: 10.0.3.9}, rc]
  - {endpoints: [ha, hb], subnet: 10.9.9.0/31}
flows:
  - {src: ha, dst: hb}
  - {src: ha, dst: hb, protocol: tcp}
  - {src: hb, dst: ha, port: 6000}
"""


def test_validate_link_names():
    topo = resolved(AUTO)
    assert [link.name for link in topo.links] == ["ha-rc", "ha-rc-2", "rc-hb", "hb-rc", "ha-hb"]


def test_validate_interface_names_follow_link_order_and_skip_taken_names():
    topo = resolved(AUTO)
    ends = [(link.a.node, link.a.interface, link.b.node, link.b.interface) for link in topo.links]
    assert ends == [
        ("ha", "eth0", "rc", "eth0"),
        ("ha", "eth1", "rc", "eth1"),
        ("rc", "up0", "hb", "eth0"),
        ("hb", "wan", "rc", "eth2"),
        ("ha", "eth2", "hb", "eth1"),
    ]


def test_validate_interface_auto_name_skips_an_explicit_eth_name():
    topo = resolved("""\
        name: skip
        nodes: {h1: {}, h2: {}, h3: {}}
        links: [{endpoints: [h1, h2]}, {endpoints: ["h1:eth0", h3]}]
        """)
    assert [link.a.interface for link in topo.links] == ["eth1", "eth0"]


def test_validate_subnets_from_the_pool_skip_explicit_ones():
    """Like NeST's AddressHelper: each link without a subnet takes the next free block."""
    topo = resolved(AUTO)
    assert [link.subnet for link in topo.links] == [
        "10.0.1.0/24", "10.0.0.0/24", "10.0.2.0/24", "10.0.3.0/24", "10.9.9.0/31"]


def test_validate_addresses_first_end_gets_the_first_host():
    topo = resolved(AUTO)
    addresses = [(link.a.address, link.b.address) for link in topo.links]
    assert addresses == [
        ("10.0.1.1", "10.0.1.2"),
        ("10.0.0.1", "10.0.0.2"),
        ("10.0.2.1", "10.0.2.2"),
        ("10.0.3.9", "10.0.3.1"),  # the explicit address is kept, the other end takes the first free host
        ("10.9.9.0", "10.9.9.1"),  # a /31 has two usable addresses (RFC 3021)
    ]


def test_validate_custom_pool_and_prefix():
    topo = resolved("""\
        name: pool
        address_pool: 172.20.0.0/16
        link_prefix: 30
        nodes: {h1: {}, h2: {}, h3: {}}
        links: [{endpoints: [h1, h2]}, {endpoints: [h2, h3]}]
        """)
    assert [(l.subnet, l.a.address, l.b.address) for l in topo.links] == [
        ("172.20.0.0/30", "172.20.0.1", "172.20.0.2"), ("172.20.0.4/30", "172.20.0.5", "172.20.0.6")]


def test_validate_flows_names_ports_addresses():
    topo = resolved(AUTO)
    assert [(f.name, f.port, f.dst_address) for f in topo.flows] == [
        ("ha-hb", 5201, "10.0.2.2"), ("ha-hb-2", 5202, "10.0.2.2"), ("hb-ha", 6000, "10.0.1.1")]


def test_validate_leaves_its_input_alone():
    topo = load(AUTO)
    validate(topo)
    assert topo.links[1].name is None and topo.links[1].subnet is None and topo.links[1].a.interface is None


def test_validate_python_model_without_yaml():
    topo = Topology(name="py", nodes={"h1": Node("h1"), "h2": Node("h2")},
                    links=[Link(LinkEnd("h1"), LinkEnd("h2"), shaping=Shaping(rate=5_000_000))])
    link = validate(topo).links[0]
    assert (link.name, link.subnet, link.a.interface, link.a.address) == ("h1-h2", "10.0.0.0/24", "eth0", "10.0.0.1")


# -- plan ------------------------------------------------------------------------------------

def ex1_plan(drop: bool = False):
    return make_plan(validate(load_topology(EX1)), drop_impairments=drop)


def htb(dev: str, rate: str, burst: int, quantum: int) -> list[str]:
    return [f"qdisc add dev {dev} root handle 1: htb default 1",
            f"class add dev {dev} parent 1: classid 1:1 htb rate {rate}bit ceil {rate}bit "
            f"burst {burst} cburst {burst} quantum {quantum}"]


FAST = ("100000000", 62_500, 200_000)  # 100 Mbit: burst = 5 ms at the rate; quantum capped
SLOW = ("10000000", 6_250, 125_000)  # 10 Mbit: burst = 5 ms at the rate (4.1 frames)


def test_plan_ex1_ip_lines():
    plan = ex1_plan()
    # Every interface: GSO packets capped at about 1 ms of the slowest rate (10 Mbit: 1 segment).
    assert plan.nodes["h1"].ip_lines() == [
        "addr add 10.0.0.1/24 dev eth1a", "link set dev eth1a gso_max_segs 1", "link set dev eth1a up",
        "route add default via 10.0.0.2 dev eth1a",
        "mptcp limits set subflows 1 add_addr_accepted 1",
        "mptcp endpoint add 10.0.0.1 dev eth1a subflow",
    ]
    assert plan.nodes["h2"].ip_lines() == [
        "addr add 192.168.10.2/24 dev eth2a", "link set dev eth2a gso_max_segs 1", "link set dev eth2a up",
        "addr add 192.168.11.2/24 dev eth2b", "link set dev eth2b gso_max_segs 1", "link set dev eth2b up",
        "route add 10.0.0.0/24 via 192.168.10.1 dev eth2a",
        "route add 10.0.0.0/24 via 192.168.11.1 dev eth2b metric 1",  # the seed's duplicate: a fallback
        "mptcp limits set subflows 1 add_addr_accepted 1",
        "mptcp endpoint add 192.168.11.2 dev eth2b signal",
    ]
    assert plan.nodes["r1"].ip_lines() == [
        "addr add 10.0.0.2/24 dev etr1a", "link set dev etr1a gso_max_segs 1", "link set dev etr1a up",
        "addr add 12.0.0.1/24 dev etr1b", "link set dev etr1b gso_max_segs 1", "link set dev etr1b up",
        "route add 192.168.10.0/24 via 12.0.0.2 dev etr1b",
        "route add 192.168.11.0/24 via 12.0.0.2 dev etr1b",
    ]
    assert plan.nodes["r2"].ip_lines() == [
        "addr add 12.0.0.2/24 dev etr2a", "link set dev etr2a gso_max_segs 1", "link set dev etr2a up",
        "addr add 192.168.10.1/24 dev etr2b", "link set dev etr2b gso_max_segs 1", "link set dev etr2b up",
        "addr add 192.168.11.1/24 dev etr2c", "link set dev etr2c gso_max_segs 1", "link set dev etr2c up",
        "route add 10.0.0.0/24 via 12.0.0.1 dev etr2a",
    ]


def test_plan_ex1_tc_lines_with_netem():
    """Queues are one BDP of the 60 ms path round trip h1 <-> h2, plus the frames netem holds in its 10 ms delay line (tests/test_queues.py)."""
    plan = ex1_plan()
    assert plan.nodes["h1"].tc_lines() == htb("eth1a", *FAST) + [
        "qdisc add dev eth1a parent 1:1 handle 10: netem delay 10000us limit 579"]
    assert plan.nodes["r2"].tc_lines() == (
        htb("etr2a", *FAST) + ["qdisc add dev etr2a parent 1:1 handle 10: netem delay 10000us limit 579"]
        + htb("etr2b", *SLOW) + ["qdisc add dev etr2b parent 1:1 handle 10: netem delay 10000us limit 59"]
        + htb("etr2c", *SLOW) + ["qdisc add dev etr2c parent 1:1 handle 10: netem delay 10000us limit 59"])
    assert plan.netem_links == ["h1-r1", "r1-r2", "r2-h2", "r2-h2-2"]
    assert not plan.impairments_dropped


def test_plan_ex1_tc_lines_without_netem():
    plan = ex1_plan(drop=True)
    assert plan.impairments_dropped
    assert plan.nodes["h2"].tc_lines() == (
        htb("eth2a", *SLOW) + ["qdisc add dev eth2a parent 1:1 handle 10: pfifo limit 17"]
        + htb("eth2b", *SLOW) + ["qdisc add dev eth2b parent 1:1 handle 10: pfifo limit 17"])
    assert not any("netem" in line for node in plan.nodes.values() for line in node.tc_lines())


def test_plan_ex1_containers():
    plan = ex1_plan()
    assert {name: node.image for name, node in plan.nodes.items()} == dict.fromkeys(["h1", "h2", "r1", "r2"], NODE_IMAGE)
    assert plan.nodes["r1"].sysctls["net.ipv4.ip_forward"] == "1"
    assert plan.nodes["h1"].sysctls["net.ipv4.ip_forward"] == "0"
    assert all(node.sysctls["net.mptcp.enabled"] == "1" for node in plan.nodes.values())
    assert all(node.cap_add == CAPABILITIES and not node.privileged for node in plan.nodes.values())
    assert [(i.name, i.address, i.peer_node, i.peer_interface) for i in plan.nodes["h2"].interfaces] == [
        ("eth2a", "192.168.10.2", "r2", "etr2b"), ("eth2b", "192.168.11.2", "r2", "etr2c")]
    assert plan.nodes["h2"].monitor and not plan.nodes["h1"].monitor


def test_plan_sysctls_defaults_and_overrides():
    assert default_sysctls("router", True)["net.ipv4.ip_forward"] == "1"
    assert default_sysctls("host", False)["net.mptcp.enabled"] == "0"
    plan = make_plan(resolved("""\
        name: sc
        nodes:
          h1: {sysctls: {net.ipv4.tcp_congestion_control: reno, net.ipv4.conf.all.rp_filter: 0}}
          h2: {mptcp: {enabled: false}}
        links: [{endpoints: [h1, h2]}]
        """))
    assert plan.nodes["h1"].sysctls["net.ipv4.tcp_congestion_control"] == "reno"
    assert plan.nodes["h1"].sysctls["net.ipv4.conf.all.rp_filter"] == "0"
    assert plan.nodes["h2"].sysctls["net.mptcp.enabled"] == "0"
    assert not any(line.startswith("mptcp") for line in plan.nodes["h2"].ip_lines())


@pytest.mark.parametrize("value, ok", [
    ("'4096 131072 6291456'", True), ("bbr", True), ("'4096  131072'", False), ("'1; reboot'", False),
    ("'$(id)'", False), ("''", False),
])
def test_sysctl_values_are_tokens_or_numbers_separated_by_single_spaces(value, ok):
    """net.ipv4.tcp_wmem takes "min default max"; anything a shell would read is refused."""
    text = f"name: sv\nnodes:\n  h1: {{sysctls: {{net.ipv4.tcp_wmem: {value}}}}}\n  h2: {{}}\nlinks: [{{endpoints: [h1, h2]}}]\n"
    if ok:
        plan = make_plan(resolved(text))
        assert plan.nodes["h1"].sysctls["net.ipv4.tcp_wmem"] == value.strip("'")
        return
    with pytest.raises(TopologyError) as caught:
        resolved(text)
    assert caught.value.field == "nodes.h1.sysctls.net.ipv4.tcp_wmem" and "'4096 131072 6291456'" in str(caught.value)


def test_the_kernel_gso_simult_case_is_unbalanced_bwidth_without_the_gso_cap():
    """topologies/simult-flows/unbalanced-bwidth-kernel-gso.yaml is the selftest's case with only
    ``gso_max_segs: kernel``: the same nodes, links, flows and plan, less the cap's lines."""
    folder = ROOT / "topologies" / "simult-flows"
    base_topology = validate(load_topology(folder / "unbalanced-bwidth.yaml"))
    variant_topology = validate(load_topology(folder / "unbalanced-bwidth-kernel-gso.yaml"))
    assert (base_topology.gso_max_segs, variant_topology.gso_max_segs) == ("auto", "kernel")
    assert variant_topology.flows == base_topology.flows and variant_topology.links == base_topology.links
    assert variant_topology.nodes == base_topology.nodes
    base, variant = make_plan(base_topology), make_plan(variant_topology)
    capped = {name: [line for line in node.phases["addresses"] if "gso_max_segs" in line] for name, node in base.nodes.items()}
    assert capped["ns1"] == ["link set dev ns1eth1 gso_max_segs 1", "link set dev ns1eth2 gso_max_segs 1"]
    uncapped = {name: {phase: [line for line in lines if "gso_max_segs" not in line] for phase, lines in node.phases.items()}
                for name, node in base.nodes.items()}
    assert {name: node.phases for name, node in variant.nodes.items()} == uncapped


@pytest.mark.parametrize("value, segments", [
    (None, 1), ("auto", 1), ("kernel", None), (4, 4), (65535, 65535),
])
def test_gso_max_segs_is_the_rule_none_or_the_number_given(value, segments):
    text = "name: gs\n" + (f"gso_max_segs: {value}\n" if value is not None else "") + \
        "nodes: {h1: {}, h2: {}}\nlinks: [{endpoints: [h1, h2], rate: 10mbit}]\n"
    plan = make_plan(resolved(text))
    lines = [line for line in plan.nodes["h1"].phases["addresses"] if "gso_max_segs" in line]
    assert lines == ([f"link set dev eth0 gso_max_segs {segments}"] if segments else [])
    assert (topology_to_dict(resolved(text)).get("gso_max_segs")) == (value if value not in (None, "auto") else None)


@pytest.mark.parametrize("value, message", [
    ("none", "unknown gso_max_segs 'none'"), (0, "gso_max_segs 0 is out of range"),
    (70000, "gso_max_segs 70000 is out of range"), ("off", "False is not a setting"),
    ("true", "True is not a setting"),
])
def test_a_bad_gso_max_segs_is_one_line_naming_the_field_and_the_fix(value, message):
    with pytest.raises(TopologyError) as caught:
        resolved(f"name: gs\ngso_max_segs: {value}\nnodes: {{h1: {{}}, h2: {{}}}}\nlinks: [{{endpoints: [h1, h2]}}]\n")
    assert caught.value.field == "gso_max_segs" and message in str(caught.value)
    assert "kernel" in str(caught.value) and "\n" not in str(caught.value)


def test_plan_egress_override_is_per_direction():
    plan = make_plan(resolved("""\
        name: dir
        nodes: {h1: {}, h2: {}}
        links:
          - {endpoints: [h1, h2], rate: 10mbit, egress: {h2: {rate: 1mbit, queue: 50}}}
        """))
    assert "rate 10000000bit" in plan.nodes["h1"].tc_lines()[1]
    assert "rate 1000000bit" in plan.nodes["h2"].tc_lines()[1]
    assert plan.nodes["h2"].tc_lines()[2].endswith("pfifo limit 50")


# -- shaping ---------------------------------------------------------------------------------

def test_default_queue_is_about_one_bdp():
    # 10 Mbit over a 20 ms floor RTT: 25 000 B = 16.5 frames -> 17
    assert default_queue(Shaping(rate=10_000_000)) == 17
    # 100 Mbit, 10 ms each way: RTT 20 ms -> 250 000 B -> 166 frames, + 83 in netem's 10 ms delay line
    assert default_queue(Shaping(rate=100_000_000, delay=10_000)) == 166 + 83
    # 1 Gbit, 50 ms delay + 10 ms jitter: RTT 120 ms -> 15 MB -> 9908 frames, + 4954 for 60 ms in netem
    assert default_queue(Shaping(rate=1_000_000_000, delay=50_000, jitter=10_000)) == 9908 + 4954
    # slow links never go below the minimum
    assert default_queue(Shaping(rate=100_000)) == MIN_QUEUE
    # no rate: netem's own default
    assert default_queue(Shaping(delay=5_000)) == 1000


def test_htb_burst():
    assert htb_burst(2_000_000) == 2 * MTU_FRAME  # 5 ms would be 1250 B: less than two frames
    assert htb_burst(5_000_000) == 3_125
    assert htb_burst(10_000_000) == 6_250
    assert htb_burst(100_000_000) == 62_500
    assert htb_burst(1_000_000_000) == 625_000


@pytest.mark.parametrize("shaping, expected", [
    (Shaping(), []),
    (Shaping(rate=5_000_000), ["qdisc add dev x root handle 1: htb default 1",
                               "class add dev x parent 1: classid 1:1 htb rate 5000000bit ceil 5000000bit "
                               "burst 3125 cburst 3125 quantum 62500",
                               "qdisc add dev x parent 1:1 handle 10: pfifo limit 16"]),
    (Shaping(delay=20_000, jitter=2_000, loss=0.5), [
        "qdisc add dev x root handle 10: netem delay 20000us 2000us distribution normal loss 0.5% limit 1000"]),
    (Shaping(queue=30), ["qdisc add dev x root handle 10: pfifo limit 30"]),
    (Shaping(rate=1_000_000_000, loss=1.0, queue=500), [
        "qdisc add dev x root handle 1: htb default 1",
        "class add dev x parent 1: classid 1:1 htb rate 1000000000bit ceil 1000000000bit "
        "burst 625000 cburst 625000 quantum 200000",
        "qdisc add dev x parent 1:1 handle 10: netem loss 1% limit 500"]),
])
def test_plan_shaping_layouts(shaping, expected):
    assert list(plan_shaping("x", shaping).commands) == expected


def test_without_impairments_keeps_rate_and_queue():
    assert without_impairments(Shaping(rate=1, delay=2, jitter=3, loss=4.0, queue=5)) == Shaping(rate=1, queue=5)


# -- bad input: one class per test, each naming file, line/field and fix ----------------------

@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    line: int | None  # the line the error must name (None: a field suffices)
    field: str | None  # the field the error must name
    fragment: str  # part of the message


def base(nodes: str = "  h1: {}\n  h2: {}\n", links: str = "  - {endpoints: [h1, h2]}\n", name: str = BAD_LAB,
         extra: str = "") -> str:
    return f"name: {name}\nnodes:\n{nodes}links:\n{links}{extra}"


BAD_INPUTS = [
    Bad("yaml-syntax", base(nodes="  h1: {kind: host\n  h2: {}\n"), 4, None, "invalid YAML"),
    Bad("yaml-tab", "name: x\nnodes:\n\th1: {}\n", 3, None, "invalid YAML"),
    Bad("unknown-top-key", base() + "colour: red\n", 7, "colour", "unknown key 'colour'"),
    Bad("unknown-node-key", base(nodes="  h1: {kind: host, colour: red}\n  h2: {}\n"), 3, "nodes.h1.colour",
        "unknown key 'colour'"),
    Bad("unknown-link-key", base(links="  - {endpoints: [h1, h2], bandwidth: 10mbit}\n"), 6, "links[0].bandwidth",
        "unknown key 'bandwidth'"),
    Bad("unknown-node-in-link", base(links="  - {endpoints: [h1, h3]}\n"), 6, "links[0].endpoints[1]",
        "unknown node 'h3'"),
    Bad("unknown-node-in-flow", base(extra="flows:\n  - {src: h1, dst: h9}\n"), 8, "flows[0].dst",
        "unknown node 'h9'"),
    Bad("duplicate-node", base(nodes="  h1: {}\n  h2: {}\n  h1: {kind: router}\n"), 5, "nodes.h1", "duplicate key 'h1'"),
    Bad("duplicate-node-case", base(nodes="  h1: {}\n  H1: {}\n", links="  - {endpoints: [h1, H1]}\n"), 3, "nodes.h1",
        "differs from another only in case"),
    Bad("duplicate-link", base(links="  - {name: l1, endpoints: [h1, h2]}\n  - {name: l1, endpoints: [h1, h2]}\n"),
        7, "links[1].name", "duplicate link name 'l1'"),
    Bad("duplicate-flow", base(extra="flows:\n  - {name: f, src: h1, dst: h2}\n  - {name: f, src: h2, dst: h1}\n"),
        9, "flows[1].name", "duplicate flow name 'f'"),
    Bad("duplicate-interface", base(links="  - {endpoints: ['h1:wan', h2]}\n  - {endpoints: ['h1:wan', h2]}\n"),
        7, "links[1].endpoints[0]", "already has an interface 'wan'"),
    Bad("bad-node-name", base(nodes="  h1: {}\n  'h 2': {}\n", links="  - {endpoints: [h1, 'h 2']}\n"), 4, "nodes.h 2",
        "not usable as a container or host name"),
    Bad("bad-node-name-dot", base(nodes="  h1: {}\n  h.2: {}\n", links="  - {endpoints: [h1, h.2]}\n"), 4, "nodes.h.2",
        "not usable as a container or host name"),
    Bad("bad-lab-name", base(name="'T2 Bad!'"), 1, "name", "not usable in Docker names"),
    Bad("long-lab-name", base(name="t2-" + "x" * 30), 1, "name", "not usable in Docker names"),
    Bad("long-interface-name", base(links="  - {endpoints: ['h1:averyverylongname', h2]}\n"), 6,
        "links[0].endpoints[0]", "not valid for ip"),
    Bad("reserved-interface-name", base(links="  - {endpoints: ['h1:lo', h2]}\n"), 6, "links[0].endpoints[0]",
        "not valid for ip"),
    Bad("overlapping-subnets", base(links="  - {endpoints: [h1, h2], subnet: 10.1.0.0/16}\n"
                                          "  - {endpoints: [h1, h2], subnet: 10.1.2.0/24}\n"), 7, "links[1].subnet",
        "overlaps links[0]'s 10.1.0.0/16"),
    Bad("too-small-subnet", base(links="  - {endpoints: [h1, h2], subnet: 10.1.0.7/32}\n"), 6, "links[0].subnet",
        "fewer than two hosts"),
    Bad("subnet-with-host-bits", base(links="  - {endpoints: [h1, h2], subnet: 10.1.0.7/24}\n"), 6, "links[0].subnet",
        "is not an IPv4 subnet"),
    Bad("pool-too-small", "name: t2-bad\naddress_pool: 10.0.0.0/30\nlink_prefix: 31\nnodes: {h1: {}, h2: {}}\n"
                          "links:\n  - {endpoints: [h1, h2]}\n  - {endpoints: [h1, h2]}\n  - {endpoints: [h1, h2]}\n",
        2, "address_pool", "has no free /31"),
    Bad("address-outside-subnet", base(links="  - endpoints: [{node: h1, address: 10.2.0.1}, h2]\n"
                                             "    subnet: 10.1.0.0/24\n"), 6, "links[0].endpoints[0].address",
        "not a host address of the link's subnet"),
    Bad("rate-mbps-ambiguous", base(links="  - {endpoints: [h1, h2], rate: 10mbps}\n"), 6, "links[0].rate",
        "ambiguous"),
    Bad("rate-fast", base(links="  - {endpoints: [h1, h2], rate: fast}\n"), 6, "links[0].rate", "'fast' is not a rate"),
    Bad("egress-rate-malformed", base(links="  - endpoints: [h1, h2]\n    egress: {h2: {rate: 1 gigabit}}\n"), 7,
        "links[0].egress.h2.rate", "is not a rate"),
    Bad("delay-malformed", base(links="  - {endpoints: [h1, h2], delay: 10 minutes}\n"), 6, "links[0].delay",
        "is not a delay"),
    Bad("jitter-without-delay", base(links="  - {endpoints: [h1, h2], jitter: 2ms}\n"), 6, "links[0].jitter",
        "jitter without delay"),
    Bad("loss-over-100", base(links="  - {endpoints: [h1, h2], loss: 120%}\n"), 6, "links[0].loss", "over 100%"),
    Bad("queue-zero", base(links="  - {endpoints: [h1, h2], rate: 1mbit, queue: 0}\n"), 6, "links[0].queue",
        "out of range"),
    Bad("endpoint-on-missing-interface", base(nodes="  h1:\n    mptcp:\n      endpoints: {eth5: [subflow]}\n  h2: {}\n"),
        5, "nodes.h1.mptcp.endpoints[0]", "has no interface 'eth5'"),
    Bad("route-on-missing-interface", base(nodes="  h1:\n    routes: [{to: default, dev: eth7}]\n  h2: {}\n"), 4,
        "nodes.h1.routes[0].dev", "has no interface 'eth7'"),
    Bad("endpoint-flag-unknown", base(nodes="  h1:\n    mptcp:\n      endpoints: {eth0: [subflows]}\n  h2: {}\n"),
        5, "nodes.h1.mptcp.endpoints[0].flags", "unknown endpoint flag 'subflows'"),
    Bad("limit-above-8", base(nodes="  h1:\n    mptcp:\n      limits: {subflows: 9}\n  h2: {}\n"), 5,
        "nodes.h1.mptcp.limits.subflows", "outside the kernel's range 0..8"),
    Bad("limit-negative", base(nodes="  h1:\n    mptcp:\n      limits: {add_addr_accepted: -1}\n  h2: {}\n"), 5,
        "nodes.h1.mptcp.limits.add_addr_accepted", "outside the kernel's range 0..8"),
    Bad("limit-not-a-number", base(nodes="  h1:\n    mptcp:\n      limits: {subflows: many}\n  h2: {}\n"), 5,
        "nodes.h1.mptcp.limits.subflows", "not a whole number"),
]


def error_for(case: Bad, tmp_path: Path) -> tuple[Path, TopologyError]:
    path = tmp_path / f"{case.id}.yaml"
    path.write_text(case.text)
    with pytest.raises(TopologyError) as caught:
        validate(load_topology(path))
    return path, caught.value


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda case: case.id)
def test_bad_input_is_one_line_naming_file_place_and_fix(case: Bad, tmp_path: Path):
    path, error = error_for(case, tmp_path)
    text = str(error)
    assert "\n" not in text
    assert case.fragment in error.message
    assert text.startswith(str(path)), "the error must name the file"
    if case.line is not None:
        assert error.line == case.line and text.startswith(f"{path}:{case.line}:")
    if case.field is not None:
        assert error.field == case.field and f": {case.field}: " in text
    assert error.fix and text.endswith(f"(fix: {error.fix})")


def test_bad_input_cases_cover_every_class():
    """Issue 2, item 7: every bad-input class is exercised above (guards against deletions)."""
    ids = {case.id for case in BAD_INPUTS}
    required = {"yaml-syntax", "unknown-node-key", "unknown-node-in-link", "duplicate-node", "duplicate-link",
                "duplicate-flow", "bad-node-name", "bad-lab-name", "long-interface-name", "overlapping-subnets",
                "too-small-subnet", "rate-mbps-ambiguous", "rate-fast", "delay-malformed",
                "endpoint-on-missing-interface", "limit-above-8"}
    assert required <= ids


def test_valid_variants_of_the_bad_inputs_pass():
    """The fixtures differ from valid files only in the fault (so the tests above test the fault)."""
    validate(load(base()))
    validate(load(base(nodes="  h1:\n    mptcp:\n      endpoints: {eth0: [subflow]}\n      limits: {subflows: 8}\n"
                             "  h2: {}\n", links="  - {endpoints: ['h1:eth0', h2], subnet: 10.1.0.0/31, rate: 10mbit,"
                                                " delay: 10ms, jitter: 2ms, loss: 1%, queue: 1}\n")))


# -- bad input through the command line: exit status, one line, nothing created -------------

def lab_objects(lab: str) -> tuple[list[str], list[str]]:
    from mptcpdock.runtime import docker_api
    return ([c["Id"] for c in docker_api.lab_containers(lab)], [n["Id"] for n in docker_api.lab_networks(lab)])


def cli(*args: str):
    from mptcpdock.cli import main
    return CliRunner().invoke(main, list(args))


@pytest.mark.docker
@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda case: case.id)
def test_cli_bad_input_exits_non_zero_with_one_line_and_creates_nothing(case: Bad, tmp_path: Path):
    path = tmp_path / f"{case.id}.yaml"
    path.write_text(case.text)
    before = lab_objects(BAD_LAB)
    result = cli("up", str(path), "--allow-no-impairments")
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}") and "(fix: " in lines[0]
    assert result.stdout == ""
    assert lab_objects(BAD_LAB) == before == ([], [])


@pytest.mark.docker
def test_cli_image_missing_names_node_field_and_fix_and_creates_nothing(tmp_path: Path):
    path = tmp_path / "image.yaml"
    path.write_text(base(nodes="  h1: {image: 'mptcpdock/does-not-exist:1'}\n  h2: {}\n"))
    assert lab_objects(BAD_LAB) == ([], [])
    result = cli("up", str(path), "--allow-no-impairments")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {path}:3: nodes.h1.image: image 'mptcpdock/does-not-exist:1'")
    assert "docker build" in lines[0] and "docker load" in lines[0]
    assert lab_objects(BAD_LAB) == ([], [])


def test_cli_docker_unreachable_is_a_clear_error(tmp_path: Path):
    """Run the real command (a subprocess) against a socket that does not exist."""
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent.sock", MPTCPDOCK_STATE_DIR=str(tmp_path / "state"))
    for args in (["up", str(EX1), "--name", BAD_LAB, "--allow-no-impairments"], ["status"], ["down", BAD_LAB]):
        done = subprocess.run([sys.executable, "-m", "mptcpdock.cli", *args], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: cannot reach the Docker engine at unix:///nonexistent.sock")
        assert "start dockerd" in lines[0]
        assert "Traceback" not in done.stderr


def test_cli_bad_input_needs_no_docker(tmp_path: Path):
    """Input errors are found before Docker is touched: same message with no engine at all."""
    case = next(case for case in BAD_INPUTS if case.id == "limit-above-8")
    path = tmp_path / "limit.yaml"
    path.write_text(case.text)
    env = dict(os.environ, DOCKER_HOST="unix:///nonexistent.sock", MPTCPDOCK_STATE_DIR=str(tmp_path / "state"))
    done = subprocess.run([sys.executable, "-m", "mptcpdock.cli", "up", str(path)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: {path}:5: nodes.h1.mptcp.limits.subflows: subflows 9 is outside the kernel's range 0..8 "
        "(fix: write a number from 0 to 8)"]
