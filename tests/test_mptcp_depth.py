"""Issue 11, pure parts: path manager/scheduler/mptcpd settings, endpoint rules, dual stack
(validation, plan, routing), the probe's decisions and the counters (no Docker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mptcpdock.errors import KernelFeatureError, TopologyError
from mptcpdock.plan.commands import apply_kernel_sysctls, make_plan
from mptcpdock.plan.checklist import make_checklist
from mptcpdock.plan.routing import compute_routing, families_match, trace_packet
from mptcpdock.report.counters import counter_deltas, headline, ss_bytes_supported
from mptcpdock.report.parsers import parse_ss_line
from mptcpdock.runtime import image as im
from mptcpdock.runtime.probe import KernelProbe, parse_probe, require_for_mptcp
from mptcpdock.topology.loader import load_topology, load_topology_text, topology_to_yaml
from mptcpdock.topology.validate import validate

ROOT = Path(__file__).resolve().parent.parent

TWO_HOSTS = """name: t11
nodes:
  h1:
{h1}
  h2: {{}}
links:
  - {{endpoints: [h1, h2]{link}}}
  - {{endpoints: [h1, h2]}}
"""


def load(text: str, tmp_path: Path, name: str = "t.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_topology(path)


def error(text: str, tmp_path: Path) -> TopologyError:
    with pytest.raises(TopologyError) as caught:
        validate(load(text, tmp_path))
    return caught.value


def mptcp(block: str) -> str:
    return "    mptcp:\n" + "".join(f"      {line}\n" for line in block.strip().splitlines())


PROBE_618 = KernelProbe(kernel="6.18.44", iproute2="ip utility, iproute2-6.15.0, libbpf 1.5.0", iperf3="iperf 3.18",
                        mptcp=True, ip_mptcp=True, netem=False, htb=True, tbf=True, pfifo=True,
                        mptcp_knobs={"available_path_managers": "kernel userspace", "available_schedulers": "default",
                                     "path_manager": "kernel", "scheduler": "default", "pm_type": "0"},
                        endpoint_flags={f: "yes" for f in ("signal", "subflow", "backup", "fullmesh")},
                        endpoint_port=True, mptcpd="mptcpd 0.13", mptcpd_plugins=("addr_adv", "sspi"))
PROBE_612 = KernelProbe(kernel="6.12.117+deb13-cloud-amd64", iproute2="ip utility, iproute2-6.15.0", iperf3="?",
                        mptcp=True, ip_mptcp=True, netem=True, htb=True, tbf=True, pfifo=True,
                        mptcp_knobs={"available_schedulers": "default", "scheduler": "default", "pm_type": "0"},
                        endpoint_flags={f: "yes" for f in ("signal", "subflow", "backup", "fullmesh")},
                        mptcpd="mptcpd 0.13", mptcpd_plugins=("addr_adv", "sspi"))


# -- validation: one line naming file:line, the field and the fix ----------------------------------

@pytest.mark.parametrize("block, field, fragment", [
    ("path_manager: userland", "nodes.h1.mptcp.path_manager", "unknown path manager 'userland'"),
    ("mptcpd: sspi", "nodes.h1.mptcp.mptcpd", "add 'path_manager: userspace'"),
    ("{path_manager: userspace, mptcpd: fullmesh}", "nodes.h1.mptcp.mptcpd", "unknown mptcpd plugin"),
    ("path_manager: userspace\nendpoints: {eth0: [signal]}", "nodes.h1.mptcp.endpoints",
     "the userspace path manager (mptcpd) ignores them"),
    ("endpoints: [{interface: eth0, id: 0}]", "nodes.h1.mptcp.endpoints[0].id", "outside 1..255"),
    ("endpoints: [{interface: eth0, id: 256}]", "nodes.h1.mptcp.endpoints[0].id", "outside 1..255"),
    ("endpoints: [{interface: eth0, id: 7}, {interface: eth1, id: 7}]", "nodes.h1.mptcp.endpoints[1].id",
     "already has id 7"),
    ("endpoints: [{interface: eth0}, {interface: eth0}]", "nodes.h1.mptcp.endpoints[1]", "already has address"),
    ("endpoints: [{interface: eth0, flags: [subflow], port: 10000}]", "nodes.h1.mptcp.endpoints[0].port",
     "a port needs the signal flag"),
    ("endpoints: [{interface: eth0, flags: [signal, subflow], port: 10000}]", "nodes.h1.mptcp.endpoints[0].port",
     "refuses a port on a subflow endpoint"),
    ("endpoints: {eth0: [singal]}", "nodes.h1.mptcp.endpoints[0].flags", "did you mean signal?"),
    ("endpoints: {eth0: [laminr]}", "nodes.h1.mptcp.endpoints[0].flags", "did you mean laminar?"),
])
def test_mptcp_settings_errors_name_file_line_field_and_fix(tmp_path, block, field, fragment):
    err = error(TWO_HOSTS.format(h1=mptcp(block), link=""), tmp_path)
    text = str(err)
    assert text.startswith(str(tmp_path / "t.yaml") + ":") and f": {field}: " in text, text
    assert fragment in text and "(fix: " in text and "\n" not in text, text


def test_at_most_eight_endpoints(tmp_path):
    links = "".join(f"  - {{endpoints: [h1, h2]}}\n" for _ in range(9))
    eps = ", ".join(f"eth{i}: [subflow]" for i in range(9))
    err = error(f"name: t11\nnodes:\n  h1:\n    mptcp: {{endpoints: {{{eps}}}}}\n  h2: {{}}\nlinks:\n{links}", tmp_path)
    assert err.field == "nodes.h1.mptcp.endpoints[8]" and "at most 8" in err.message


def test_id_port_and_a_future_flag_reach_the_plan(tmp_path):
    text = TWO_HOSTS.format(h1=mptcp("endpoints: [{interface: eth0, id: 9, flags: [signal], port: 10100},"
                                     " {interface: eth1, flags: [subflow, laminar]}]"), link="")
    plan = make_plan(validate(load(text, tmp_path)))
    assert plan.nodes["h1"].phases["mptcp"] == ["mptcp endpoint add 10.0.0.1 dev eth0 id 9 port 10100 signal",
                                                "mptcp endpoint add 10.0.1.1 dev eth1 id 1 subflow laminar"]
    # A lower-case word not close to a known flag passes validation: the probe decides at up.
    validate(load(TWO_HOSTS.format(h1=mptcp("endpoints: {eth0: [subflow, quantumflag]}"), link=""), tmp_path))


def test_path_manager_and_scheduler_round_trip_and_reach_the_container_settings(tmp_path):
    text = TWO_HOSTS.format(h1=mptcp("{path_manager: userspace, scheduler: default, mptcpd: {plugin: sspi, "
                                     "addr_flags: [subflow]}}"), link="")
    model = validate(load(text, tmp_path))
    again = load_topology_text(topology_to_yaml(model))
    assert again.nodes["h1"].mptcp.path_manager == "userspace" and again.nodes["h1"].mptcp.mptcpd_addr_flags == ("subflow",)
    plan = make_plan(model)
    h1 = plan.nodes["h1"]
    assert h1.sysctls["net.mptcp.scheduler"] == "default"
    assert h1.daemon[:4] == ["/usr/libexec/mptcpd", "--log=stderr", "--load-plugins=sspi", "--path-manager=sspi"]
    assert "--addr-flags=subflow" in h1.daemon and plan.nodes["h2"].daemon == []
    apply_kernel_sysctls(plan, has_blackhole_timeout=True, path_manager_sysctls=PROBE_618.path_manager_sysctls)
    assert h1.sysctls["net.mptcp.path_manager"] == "userspace"
    plan = make_plan(model)
    apply_kernel_sysctls(plan, has_blackhole_timeout=False, path_manager_sysctls=PROBE_612.path_manager_sysctls)
    assert plan.nodes["h1"].sysctls["net.mptcp.pm_type"] == "1"  # before 6.15
    assert "net.mptcp.path_manager" not in plan.nodes["h1"].sysctls
    assert "net.mptcp.pm_type" not in plan.nodes["h2"].sysctls  # h2 asks for nothing


def test_the_checklist_says_what_the_userspace_path_manager_does(tmp_path):
    text = TWO_HOSTS.format(h1=mptcp("{path_manager: userspace, mptcpd: sspi}"), link="") + \
        "flows:\n  - {src: h2, dst: h1}\n"
    item = make_checklist(validate(load(text, tmp_path))).flows[0]
    assert any("userspace path manager" in line for line in item.reasoning)
    assert any("sspi plugin on h1" in line and "address id 0" in line for line in item.reasoning)
    assert item.expected_subflows == 1  # mptcpd 0.13's sspi announces nothing; h2 has no endpoints
    # a userspace server running sspi closes every join (they all come to the initial address);
    # with addr_adv it takes them
    routed = """name: t11j
routing: auto
nodes:
  h1: {mptcp: {endpoints: {eth1: [subflow]}}}
  r1: {kind: router}
  h2: {mptcp: {path_manager: userspace, mptcpd: PLUGIN}}
links:
  - {endpoints: [h1, r1]}
  - {endpoints: [h1, r1]}
  - {endpoints: [r1, h2]}
flows:
  - {src: h1, dst: h2}
"""
    sspi = make_checklist(validate(load(routed.replace("PLUGIN", "sspi"), tmp_path))).flows[0]
    assert sspi.expected_subflows == 1 and any("closes a joining subflow" in line for line in sspi.reasoning)
    assert make_checklist(validate(load(routed.replace("PLUGIN", "addr_adv"), tmp_path))).flows[0].expected_subflows == 2



MESH = """name: t11m
routing: auto
nodes:
  h1: {mptcp: CLIENT}
  r1: {kind: router}
  h2: {mptcp: SERVER}
links:
  - {endpoints: [h1, r1]}
  - {endpoints: [h1, r1]}
  - {endpoints: [h1, r1]}
  - {endpoints: [r1, h2]}
  - {endpoints: [r1, h2]}
flows:
  - {src: h1, dst: h2}
"""


def test_the_checklist_expects_what_the_mesh_plugin_does(tmp_path):
    """mptcpdock's mesh plugin: a client opens one subflow from each of its other addresses, up
    to its subflows limit; a server announces its other addresses, which a kernel path manager
    client joins (add_addr_accepted) and a userspace one leaves alone."""
    def item(client: str, server: str):
        text = MESH.replace("CLIENT", client).replace("SERVER", server)
        return make_checklist(validate(load(text, tmp_path))).flows[0]
    both = item("{path_manager: userspace, mptcpd: mesh}", "{path_manager: userspace, mptcpd: mesh}")
    assert both.expected_subflows == 3  # h1's two other addresses (the default subflows limit is 2)
    assert any("mesh plugin on h1 (client)" in line for line in both.reasoning)
    assert any("mesh plugin on h2 (server)" in line for line in both.reasoning)
    assert any("opens no subflow to it" in line for line in both.reasoning)  # h2's ADD_ADDR, to a userspace h1
    limited = item("{path_manager: userspace, mptcpd: mesh, limits: {subflows: 1}}",
                   "{path_manager: userspace, mptcpd: mesh}")
    assert limited.expected_subflows == 2
    kernel_client = item("{limits: {subflows: 2, add_addr_accepted: 1}}", "{path_manager: userspace, mptcpd: mesh}")
    assert kernel_client.expected_subflows == 2  # one join to h2's announced second address
    assert any("ADD_ADDR of eth1" in c.origin for c in kernel_client.candidates)


# -- the probe decides what the kernel and the image offer -------------------------------------------

def up_error(text: str, tmp_path: Path, probe: KernelProbe) -> str:
    with pytest.raises(KernelFeatureError) as caught:
        require_for_mptcp(probe, validate(load(text, tmp_path)))
    return str(caught.value)


def test_a_scheduler_the_kernel_lacks_names_the_available_ones(tmp_path):
    text = up_error(TWO_HOSTS.format(h1=mptcp("scheduler: redundant"), link=""), tmp_path, PROBE_618)
    assert text.startswith(f"{tmp_path / 't.yaml'}:5: nodes.h1.mptcp.scheduler: ")
    assert "no MPTCP scheduler 'redundant'" in text and "available_schedulers: default" in text
    assert "(fix: use one of: default" in text


def test_path_managers_before_and_after_6_15(tmp_path):
    assert PROBE_618.path_managers == ("kernel", "userspace")
    assert PROBE_612.path_managers == ("kernel", "userspace")  # pm_type
    old = KernelProbe(**{**PROBE_612.to_dict(), "mptcp_knobs": {}})
    text = up_error(TWO_HOSTS.format(h1=mptcp("path_manager: userspace"), link=""), tmp_path, old)
    assert "nodes.h1.mptcp.path_manager" in text and "5.19+" in text and "use one of: kernel" in text
    require_for_mptcp(PROBE_612, validate(load(TWO_HOSTS.format(h1=mptcp("path_manager: userspace"), link=""),
                                               tmp_path)))


def test_laminar_needs_both_sides_and_says_which_lacks_it(tmp_path):
    text = TWO_HOSTS.format(h1=mptcp("endpoints: {eth0: [subflow, laminar]}"), link="")
    said = up_error(text, tmp_path, PROBE_618)
    assert "the node image's iproute2 (6.15.0) does not know the endpoint flag 'laminar'" in said
    assert "the kernel (6.18.44) has it" in said
    said = up_error(text, tmp_path, PROBE_612)
    assert "lacks it too (it needs 6.18+)" in said
    kernel_lacks = KernelProbe(**{**PROBE_612.to_dict(), "endpoint_flags": {**PROBE_612.endpoint_flags,
                                                                              "laminar": "kernel"}})
    assert "does not keep the endpoint flag 'laminar'" in up_error(text, tmp_path, kernel_lacks)
    both = KernelProbe(**{**PROBE_618.to_dict(), "endpoint_flags": {**PROBE_618.endpoint_flags, "laminar": "yes"}})
    require_for_mptcp(both, validate(load(text, tmp_path)))


def test_probe_output_parses_flags_mptcpd_and_survives_an_old_state():
    probe = parse_probe("kernel=6.18.44\niproute2=ip utility, iproute2-6.15.0\nmptcp=yes\n"
                        "endpoint_flags=signal:yes subflow:yes backup:yes fullmesh:yes laminar:kernel\n"
                        "endpoint_port=yes\nmptcpd=mptcpd 0.13\nmptcpd_plugins=addr_adv sspi \nipv6=yes\n")
    assert probe.endpoint_flags["laminar"] == "kernel" and probe.mptcpd_plugins == ("addr_adv", "sspi")
    assert probe.ss_mptcp_bytes and KernelProbe.from_dict(probe.to_dict()) == probe
    old = KernelProbe.from_dict({key: value for key, value in probe.to_dict().items()
                                 if key not in ("endpoint_flags", "mptcpd_plugins", "mptcpd")})
    assert old.endpoint_flag_problem("signal") is None and old.mptcpd == "missing"
    assert not parse_probe("iproute2=ip utility, iproute2-6.1.0, libbpf 1.1.0\n").ss_mptcp_bytes


# -- dual stack ---------------------------------------------------------------------------------------

DUAL = ROOT / "topologies" / "mptcp-dual-stack.yaml"


def test_dual_stack_addresses_routes_and_sysctls():
    model = validate(load_topology(DUAL))
    plan = make_plan(model)
    h1 = plan.nodes["h1"]
    assert "-6 addr add fd6d:7064:6b00:1::1/64 dev eth1a nodad" in h1.ip_lines()
    assert "-6 route add fd6d:7064:6b00:10::/64 via fd6d:7064:6b00:1::2 dev eth1a" in h1.ip_lines()
    assert "-6 rule add from fd6d:7064:6b00:11::2 table 1002 priority 1002" in plan.nodes["h2"].ip_lines()
    assert h1.sysctls["net.ipv6.conf.all.disable_ipv6"] == "0"
    assert plan.nodes["r1"].sysctls["net.ipv6.conf.all.forwarding"] == "1"
    # the signal endpoint is eth2b's IPv4 address; the flow goes to eth2a's IPv6 one
    assert plan.nodes["h2"].phases["mptcp"][-1] == "mptcp endpoint add 192.168.11.2 dev eth2b signal"
    item = make_checklist(model).flows[0]
    assert item.expected_subflows == 2 and item.candidates[1].remote == "192.168.11.2"
    assert item.routing_warnings == []


def test_ipv6_stays_disabled_on_nodes_without_an_ipv6_address(tmp_path):
    text = ("name: t11\nnodes: {h1: {}, h2: {}, h3: {}}\nlinks:\n"
            "  - {endpoints: [h1, h2], family: ipv6}\n  - {endpoints: [h2, h3]}\n")
    model = validate(load(text, tmp_path))
    assert model.links[0].subnet is None and model.links[0].a.address6 == "fd6d:7064:6b00::1"
    plan = make_plan(model)
    assert plan.nodes["h1"].sysctls["net.ipv6.conf.all.disable_ipv6"] == "0"
    assert plan.nodes["h3"].sysctls["net.ipv6.conf.all.disable_ipv6"] == "1"
    assert plan.nodes["h1"].interfaces[0].address == "fd6d:7064:6b00::1"  # its primary address


@pytest.mark.parametrize("links, field, fragment", [
    ("  - {endpoints: [h1, h2], subnet6: '2001:db8::/64'}\n", "links[0].subnet6", "not a unique local (ULA)"),
    ("  - {endpoints: [h1, h2], subnet6: 'fd00:1::/64', family: ipv4}\n", "links[0].subnet6", "family: dual"),
    ("  - {endpoints: [h1, h2], subnet: 10.1.0.0/24, family: ipv6}\n", "links[0].subnet", "family: dual"),
    ("  - {endpoints: [h1, h2], subnet: 'fd00:1::/64'}\n", "links[0].subnet", "goes in subnet6"),
    ("  - {endpoints: [h1, {node: h2, address: 'fd00:9::1'}], subnet6: 'fd00:1::/64'}\n",
     "links[0].endpoints[1].address6", "not a host address of the link's subnet6"),
])
def test_dual_stack_errors(tmp_path, links, field, fragment):
    err = error(f"name: t11\nnodes: {{h1: {{}}, h2: {{}}}}\nlinks:\n{links}", tmp_path)
    assert err.field == field and fragment in str(err) and err.line, str(err)


def test_flow_family_picks_the_destination_address(tmp_path):
    text = ("name: t11\nfamily: dual\nnodes: {h1: {}, h2: {}}\nlinks:\n  - {endpoints: [h1, h2]}\nflows:\n"
            "  - {src: h1, dst: h2, family: ipv6}\n  - {src: h1, dst: h2}\n"
            "  - {src: h1, dst: h2, src_address: 'fd6d:7064:6b00::1'}\n")
    flows = validate(load(text, tmp_path)).flows
    assert [f.dst_address for f in flows] == ["fd6d:7064:6b00::2", "10.0.0.2", "fd6d:7064:6b00::2"]
    bad = text.replace("src_address: 'fd6d:7064:6b00::1'", "src_address: 10.0.0.1, dst_address: 'fd6d:7064:6b00::2'")
    assert "different families" in str(error(bad, tmp_path))


def test_the_simulator_routes_ipv6_only_labs_and_skips_rp_filter_for_ipv6(tmp_path):
    text = ("name: t11v6\nrouting: auto\nfamily: ipv6\nnodes:\n  h1: {}\n  r1: {kind: router}\n  h2: {}\n"
            "links:\n  - {endpoints: [h1, r1]}\n  - {endpoints: [h1, r1]}\n  - {endpoints: [r1, h2]}\n")
    model = validate(load(text, tmp_path))
    routing = compute_routing(model)
    for source in ("fd6d:7064:6b00::1", "fd6d:7064:6b00:1::1"):
        path = trace_packet(model, routing, "h1", source, "fd6d:7064:6b00:2::2")
        assert path.delivered, path.problem
    assert all(route.family == 6 for node in routing.values() for route in node.routes)
    assert not trace_packet(model, routing, "h1", "fd6d:7064:6b00::1", "10.0.0.2").delivered


def test_subflow_families():
    assert families_match("fd00::2", "10.0.0.1", "10.0.1.2")  # IPv4 subflow on an IPv6 connection
    assert not families_match("10.0.0.2", "fd00::1", "fd00::2")  # an IPv4 socket has no IPv6
    assert not families_match("fd00::2", "10.0.0.1", "fd00::3")


# -- counters -----------------------------------------------------------------------------------------

def test_a_counter_the_kernel_lacks_is_unsupported_not_zero():
    before = {"MPTcpExtMPJoinSynRx": 1, "MPTcpExtMPJoinAckRx": 1, "MPTcpExtAddAddrTx": 0, "MPTcpExtNew": 0}
    after = {"MPTcpExtMPJoinSynRx": 3, "MPTcpExtMPJoinAckRx": 3, "MPTcpExtAddAddrTx": 2, "MPTcpExtNew": 0}
    deltas = counter_deltas(before, after, every=True)
    assert deltas["MPJoinSynRx"] == 2 and deltas["New"] == 0 and deltas["DssFallback"] == "unsupported"
    heads = dict(headline(deltas))
    assert heads["joins rx"] == 2 and heads["ADD_ADDR tx"] == 2 and heads["MPTCP retrans"] == "unsupported"
    assert "New" not in counter_deltas(before, after)  # events list only the moved ones of the families


def test_ss_mptcp_byte_counters_parse():
    line = ("mptcp ESTAB 0 0 [fd6d::1]:33740 [fd6d::2]:5201 subflows:1 token:eab2fad write_seq:1 "
            "bytes_sent:10700533 bytes_acked:10559397 bytes_retrans:12 subflows_total:2")
    sock = parse_ss_line(line)
    assert sock is not None and sock.msk_token == "0eab2fad"  # the monitor's %08x form
    assert sock.info["bytes_sent"] == 10700533 and sock.info["bytes_retrans"] == 12
    assert sock.info["subflows_total"] == 2 and "bytes_received" not in sock.info
    assert ss_bytes_supported("ip utility, iproute2-6.15.0") and not ss_bytes_supported("ip utility, iproute2-6.1.0")


# -- the image's suites -------------------------------------------------------------------------------

def test_suites_and_their_build_arguments():
    assert im.SUITE == "trixie" and im.BASE_IMAGE == "debian:trixie-slim"
    assert im.build_args("trixie") == {}
    bookworm = im.build_args("bookworm")
    assert bookworm["SUITE"] == "bookworm" and bookworm["IPROUTE2_VERSION"] == "6.1.0-3"
    assert im.suite_of("debian:bookworm-slim") == "bookworm" and im.suite_of("alpine:3") is None
    with pytest.raises(im.ImageError):
        im.build_args("sid")
