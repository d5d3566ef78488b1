"""NeST's API beyond the MPTCP examples (issue 10, item 5), without Docker: what each call puts
in the model (NeST 0.4.4's argument names, units and defaults), the one-line error of every call
the layer does not support, and the two NeST scripts of examples/nest/ (their mptcpdock copies in
examples/ differ only in their imports)."""

from __future__ import annotations

import difflib
import re
import struct
from pathlib import Path

import pytest

from mptcpdock.api import capturing, topology_of_script
from mptcpdock.compat.nest import _live, _session
from mptcpdock.compat.nest._unsupported import UNSUPPORTED
from mptcpdock.compat.nest.experiment import CoapApplication, Experiment, Flow
from mptcpdock.compat.nest.experiment.experiment import _keep_first_packets
from mptcpdock.compat.nest.topology import Node, Router, Switch, connect
from mptcpdock.compat.nest.topology.address_helper import AddressHelper
from mptcpdock.compat.nest.topology.network import Network
from mptcpdock.errors import TopologyError
from mptcpdock.topology.validate import validate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = ("tcp-udp-netem", "aqm-bottleneck")
NEST_IMPORTS = {
    "from nest.topology import *": "from mptcpdock.compat.nest.topology import *",
    "from nest.experiment import *": "from mptcpdock.compat.nest.experiment import *",
    "from nest.topology.network import Network": "from mptcpdock.compat.nest.topology.network import Network",
    "from nest.topology.address_helper import AddressHelper":
        "from mptcpdock.compat.nest.topology.address_helper import AddressHelper",
    "from nest import config": "from mptcpdock.compat.nest import config",
}


@pytest.fixture(autouse=True)
def _fresh(fresh_nest_session) -> None:
    """Every test starts from an empty NeST session (conftest)."""


def _line() -> tuple[Node, Node, Router, object, object, object, object]:
    h1, h2, r1 = Node("h1"), Node("h2"), Router("r1")
    (eth1, etr1a) = connect(h1, r1, network=Network("10.0.1.0/24"))
    (etr1b, eth2) = connect(r1, h2, network=Network("10.0.2.0/24"))
    AddressHelper.assign_addresses()
    h1.add_route("DEFAULT", eth1)
    h2.add_route("DEFAULT", eth2)
    return h1, h2, r1, eth1, etr1a, etr1b, eth2


def _egress(interface) -> object:
    link = interface.ref.lab.topology.links[interface.ref.link_index]
    return link.egress[interface.node.name]


# -- the two scripts ---------------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS)
def test_the_mptcpdock_copies_differ_from_the_nest_scripts_only_in_their_imports(script: str) -> None:
    nest = (EXAMPLES / "nest" / f"{script}.py").read_text().splitlines()
    ours = (EXAMPLES / f"{script}.py").read_text().splitlines()
    changed = [line for line in difflib.ndiff(nest, ours) if line[:2] in ("- ", "+ ")]
    removed = [line[2:] for line in changed if line.startswith("- ")]
    added = [line[2:] for line in changed if line.startswith("+ ")]
    assert removed and all(line in NEST_IMPORTS for line in removed), removed
    assert added == [NEST_IMPORTS[line] for line in removed]


def test_the_netem_script_builds_its_flows_extras_capture_and_ping_without_docker() -> None:
    model = validate(topology_of_script(EXAMPLES / "tcp-udp-netem.py"))  # ping: True, nothing runs
    first, second = model.links
    assert (first.egress["h1"].rate, first.egress["h1"].duplicate, first.egress["h1"].delay) == (100_000_000, 1.0, None)
    r1 = first.egress["r1"]  # set_attributes 4 ms, then set_delay_distribution adds its 1 ms (NeST's sum)
    assert (r1.delay, r1.jitter, r1.distribution) == (5000, 1000, "normal")
    assert (second.egress["h2"].rate, second.egress["h2"].loss) == (10_000_000, 2.0)
    assert (second.egress["r1"].rate, second.egress["r1"].delay) == (10_000_000, 5000)
    assert second.b.capture and not second.a.capture and not first.a.capture
    tcp, udp = model.flows
    assert (tcp.protocol, tcp.src, tcp.dst, tcp.dst_address, tcp.duration, tcp.congestion) == (
        "tcp", "h1", "h2", "10.0.2.2", 20.0, "cubic")
    assert (udp.protocol, udp.src, udp.dst, udp.bitrate, udp.tool) == ("udp", "h2", "h1", 3_000_000, "iperf3")


def test_the_aqm_script_puts_fq_codel_on_the_bottleneck_and_ecn_on_the_sender() -> None:
    model = validate(topology_of_script(EXAMPLES / "aqm-bottleneck.py"))
    bottleneck = model.links[1].egress["r1"]
    assert (bottleneck.rate, bottleneck.qdisc, bottleneck.needs_netem) == (10_000_000, "fq_codel", False)
    assert model.nodes["h1"].sysctls == {"net.ipv4.tcp_ecn": "1"}
    assert [f.protocol for f in model.flows] == ["tcp", "tcp"]


# -- netem's calls --------------------------------------------------------------------------------

def test_netem_calls_accumulate_with_nests_units() -> None:
    *_, eth1, etr1a, etr1b, eth2 = _line()
    eth1.set_attributes("100mbit", "10ms")
    eth1.set_packet_loss("0.5%")
    eth1.set_packet_corruption("1%")
    eth1.set_packet_duplication("2%")
    shaping = _egress(eth1)
    assert (shaping.rate, shaping.delay, shaping.loss, shaping.corrupt, shaping.duplicate) == (
        100_000_000, 10_000, 0.5, 1.0, 2.0)
    etr1a.set_delay("3ms")
    etr1a.set_packet_reordering("7ms", "25%")  # NeST: delay 7 ms + the interface's 3 ms, reorder 25%
    assert (_egress(etr1a).delay, _egress(etr1a).reorder) == (10_000, 25.0)
    etr1b.set_delay_distribution("2ms", "500us", "pareto")  # no delay before: counts as 0 here
    assert (_egress(etr1b).delay, _egress(etr1b).jitter, _egress(etr1b).distribution) == (2000, 500, "pareto")
    assert _live.netem_required()


def test_plain_delays_do_not_make_netem_required() -> None:
    *_, eth1, _etr1a, _etr1b, _eth2 = _line()
    eth1.set_attributes("10mbit", "10ms")
    assert not _live.netem_required()  # dropped with a warning on a kernel without netem, as before


@pytest.mark.parametrize("call, message", [
    (lambda i: i.set_packet_loss("1%", "25%"), "set_packet_loss(correlation_rate=...)"),
    (lambda i: i.set_packet_corruption("1%", correlation_rate="5%"), "set_packet_corruption(correlation_rate=...)"),
    (lambda i: i.set_packet_reordering("5ms", "10%", gap=5), "set_packet_reordering(gap=...)"),
    (lambda i: i.set_delay_distribution("5ms", "1ms", "experimental"), "delay distribution 'experimental'"),
    (lambda i: i.set_packet_loss("1"), "loss_rate '1'"),
    (lambda i: i.set_qdisc("choke"), "set_qdisc('choke'): mptcpdock has no choke leaf"),
    (lambda i: i.set_qdisc("fq_pie"), "no fq_pie leaf"),
    (lambda i: i.set_qdisc("sfq"), "sfq is not a valid Qdisc"),
    (lambda i: i.set_qdisc("fq_codel", target="5ms"), "options ['target'] are not supported"),
    (lambda i: i.set_packet_loss_gemodel("1%", "10%"), "NeST's Interface.set_packet_loss_gemodel() is not supported"),
    (lambda i: i.set_packet_loss_state("1%"), "NeST's Interface.set_packet_loss_state() is not supported"),
    (lambda i: i.disable(2, 4), "NeST's Interface.disable() is not supported"),
])
def test_what_the_layer_cannot_do_is_one_line_at_the_scripts_line(call, message: str) -> None:
    *_, eth1, _etr1a, _etr1b, _eth2 = _line()
    with pytest.raises(TopologyError) as caught:
        call(eth1)
    text = str(caught.value)
    assert message in text and "\n" not in text and "(fix: " in text, text
    assert text.startswith(f"{__file__}:"), text  # the line that made the call


def test_set_qdisc_maps_nests_aqms_and_limit_and_refuses_netem_on_the_same_interface() -> None:
    *_, eth1, etr1a, etr1b, eth2 = _line()
    etr1b.set_bandwidth("10mbit")
    etr1b.set_qdisc("pie", limit="100")
    assert (_egress(etr1b).qdisc, _egress(etr1b).queue, etr1b.get_qdisc()) == ("pie", 100, "pie")
    eth2.set_qdisc("fq_codel")
    eth2.set_qdisc("pfifo", limit=30)  # NeST's pfifo: mptcpdock's default leaf with that limit
    assert (_egress(eth2).qdisc, _egress(eth2).queue, eth2.get_qdisc()) == (None, 30, "pfifo")
    etr1a.set_bandwidth("10mbit")
    etr1a.set_qdisc("codel")
    with pytest.raises(TopologyError, match="both the codel qdisc and netem"):
        etr1a.set_packet_loss("1%")
    with pytest.raises(TopologyError, match="both the red qdisc and netem"):
        eth1.set_attributes("10mbit", "5ms", "red")
    assert eth1.name not in [n for n in eth1.ref.lab.topology.links[0].egress]  # all or nothing
    eth1.set_attributes("10mbit", "0ms", "fq_codel")
    assert _egress(eth1).qdisc == "fq_codel"


# -- flows, qdisc stats, captures, ping -------------------------------------------------------------

def test_add_udp_flow_takes_nests_target_bandwidth_default_and_refuses_iperf3_options() -> None:
    h1, h2, *_, eth2 = _line()
    exp = Experiment("udp")
    exp.add_udp_flow(Flow(h1, h2, eth2.get_address(), 2, 12, 2))
    exp.add_udp_flow(Flow(h2, h1, "10.0.1.1", 0, 5, 1), target_bandwidth="5mbit")
    first, second = exp.topology().flows
    assert (first.protocol, first.bitrate, first.start, first.duration, first.streams) == ("udp", 1_000_000, 2.0, 10.0, 2)
    assert second.bitrate == 5_000_000
    with pytest.raises(TopologyError, match=r"iperf3 options \['-l'\]"):
        exp.add_udp_flow(Flow(h1, h2, eth2.get_address(), 0, 5, 1), client_options={"-l": "100"})
    exp.add_tcp_flow(Flow(h1, h2, eth2.get_address(), 0, 5, 1), "reno", "netperf")
    assert exp.topology().flows[-1].congestion == "reno"


def test_require_qdisc_stats_needs_a_qdisc_and_takes_no_selection() -> None:
    *_, etr1b, eth2 = _line()
    exp = Experiment("stats")
    with pytest.raises(TopologyError, match="Given interface hasn't been assigned any qdisc"):
        exp.require_qdisc_stats(eth2)
    etr1b.set_qdisc("fq_codel")
    with pytest.raises(TopologyError, match="a selection of counters is not supported"):
        exp.require_qdisc_stats(etr1b, ["dropped"])
    exp.require_qdisc_stats(etr1b)
    exp.require_qdisc_stats(etr1b)
    assert exp.qdisc_stats == [etr1b]


def test_capture_packets_marks_link_ends_and_keeps_count_and_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    h1, h2, r1, eth1, etr1a, etr1b, eth2 = _line()
    r1.capture_packets()
    h2.capture_packets(interface=eth2, packet_count=10, output_file="x.pcap")
    links = eth1.ref.lab.topology.links
    assert (links[0].a.capture, links[0].b.capture, links[1].a.capture, links[1].b.capture) == (False, True, True, True)
    assert _session.session().capture_counts == {("h2", eth2.name): 10}
    files = _session.session().capture_files  # where NeST writes them: packet_capture/ here
    assert files[("h2", eth2.name)] == str(tmp_path / "packet_capture" / "x.pcap")
    assert re.fullmatch(re.escape(str(tmp_path / "packet_capture" / "r1_r1-h1-0_")) + r"\d\d-\d\d-\d{4}-[\d:]{8}",
                        files[("r1", etr1a.name)]), files
    for kwargs, message in (({"timeout": 5}, "timeout"), ({"output_format": "json"}, "output_format"),
                            ({"output_file": "y.pcap"}, "without an interface"), ({"snaplen": 9}, "snaplen")):
        with pytest.raises(TopologyError, match=message):
            h1.capture_packets(**kwargs)
    with pytest.raises(TopologyError, match="not an interface of node 'h1'"):
        h1.capture_packets(interface=eth2)


def test_ping_touches_nothing_during_an_export_and_checks_verbose() -> None:
    h1, *_, eth2 = _line()
    with capturing():
        assert h1.ping(eth2.get_address(), verbose=0) is True
    with pytest.raises(ValueError, match="It should be 0, 1 or 2"):
        h1.ping(eth2.get_address(), verbose=3)


def test_keep_first_packets_cuts_a_pcap_after_n_records(tmp_path: Path) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 200, 1)
    records = b"".join(struct.pack("<IIII", 1, i, 3 + i, 60) + bytes(3 + i) for i in range(5))
    pcap = tmp_path / "a.pcap"
    pcap.write_bytes(header + records)
    _keep_first_packets(pcap, 2)
    assert pcap.read_bytes() == header + records[:16 + 3 + 16 + 4]
    _keep_first_packets(pcap, 9)  # fewer packets than asked: unchanged
    assert len(pcap.read_bytes()) == 24 + 16 + 3 + 16 + 4


# -- what is not supported ----------------------------------------------------------------------

def test_every_unsupported_nest_call_is_one_line_naming_it_and_what_to_use() -> None:
    h1, *_, eth2 = _line()
    exp = Experiment("x")
    owners = {"Interface": eth2, "Node": h1, "Experiment": exp}
    for cls, calls in UNSUPPORTED.items():
        for name, fix in calls.items():
            if name.startswith("__"):
                continue
            with pytest.raises(TopologyError) as caught:
                getattr(owners[cls], name)("x")
            text = str(caught.value)
            assert f"NeST's {cls}.{name}() is not supported by mptcpdock" in text and fix in text, text
            assert "\n" not in text
    for make, name in ((lambda: Switch("s1"), "Switch"), (lambda: CoapApplication(h1, h1), "CoapApplication")):
        with pytest.raises(TopologyError, match=f"NeST's {name}\\(\\) is not supported"):
            make()
    with pytest.raises(TopologyError, match=r"NeST's Node.__enter__\(\) is not supported"):
        with h1:
            pass
    with pytest.raises(AttributeError):
        h1.no_such_thing  # noqa: B018 - a name NeST does not have either stays an AttributeError


def test_docs_list_every_unsupported_call() -> None:
    text = (ROOT / "docs" / "nest.md").read_text()
    listed = text[text.index("### Not supported"):]
    for cls, calls in UNSUPPORTED.items():
        for name in calls:
            shown = "with node:" if name == "__enter__" else f"`{name}`"
            assert shown in listed, f"docs/nest.md's 'Not supported' lacks {cls}.{name}"
