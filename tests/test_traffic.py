"""UDP, sized and command flows, fairness: the model, validation, the commands, the summary (no Docker)."""

from __future__ import annotations

import json

import pytest

from mptcpdock.errors import TopologyError
from mptcpdock.experiment.runner import client_argv, server_argv
from mptcpdock.report.parsers import parse_iperf3
from mptcpdock.report.records import FlowSummary, Summary
from mptcpdock.report.summary import UDP_SETUP_LOST, _fairness, _status
from mptcpdock.report.table import render_table
from mptcpdock.topology.loader import load_topology_text, topology_to_yaml
from mptcpdock.topology.units import UnitError, parse_bytes
from mptcpdock.topology.validate import validate

BASE = """name: t
nodes: {h1: {}, h2: {}}
links:
  - {endpoints: [h1, h2], rate: 10mbit}
flows:
"""


def resolved(flows: str):
    return validate(load_topology_text(BASE + flows, source="t.yaml"))


def test_udp_sized_and_command_flows_load_validate_and_round_trip():
    topo = resolved("  - {src: h1, dst: h2, protocol: udp, bitrate: 5mbit}\n"
                    "  - {src: h1, dst: h2, bytes: 10M, duration: 30}\n"
                    "  - {src: h1, dst: h2, tool: command, command: [ping, -c, '3', '{dst_address}']}\n")
    udp, sized, command = topo.flows
    assert (udp.protocol, udp.bitrate) == ("udp", 5_000_000)
    assert sized.bytes == 10 * 2**20 and sized.duration == 30
    assert command.command == ["ping", "-c", "3", "{dst_address}"] and command.server == []
    again = validate(load_topology_text(topology_to_yaml(topo), source="again.yaml"))
    assert [(f.protocol, f.bitrate, f.bytes, f.command) for f in again.flows] == \
        [(f.protocol, f.bitrate, f.bytes, f.command) for f in topo.flows]


def test_commands_of_udp_sized_and_command_flows():
    topo = resolved("  - {src: h1, dst: h2, protocol: udp, bitrate: 5mbit, duration: 9.5}\n"
                    "  - {src: h1, dst: h2, protocol: mptcp, bytes: 1M}\n"
                    "  - {src: h1, dst: h2, tool: command, command: [app, '--to={dst_address}:{port}', '{duration}'],"
                    " server: [app, -l, '{port}']}\n"
                    "  - {src: h1, dst: h2, tool: command, protocol: tcp, command: [ping, '{dst_address}']}\n")
    udp, sized, command, plain = topo.flows
    assert client_argv(udp, "mptcpize") == ["iperf3", "-c", "10.0.0.2", "-p", "5201", "-t", "10", "-i", "1", "-J",
                                            "--connect-timeout", "5000", "-u", "-b", "5000000"]
    assert server_argv(udp, "mptcpize") == ["iperf3", "-s", "-1", "-p", "5201", "-J", "-B", "10.0.0.2"]  # no mptcpize
    assert client_argv(sized, "mptcpize")[:9] == ["mptcpize", "run", "iperf3", "-c", "10.0.0.2", "-p", "5202",
                                                  "-n", str(2**20)]
    assert client_argv(command, "native") == ["mptcpize", "run", "app", "--to=10.0.0.2:5203", "10"]
    assert server_argv(command, "native") == ["mptcpize", "run", "app", "-l", "5203"]
    assert client_argv(plain, "mptcpize") == ["ping", "10.0.0.2"] and server_argv(plain, "mptcpize") is None


BAD = {
    "command as a string": ("  - {src: h1, dst: h2, tool: command, command: 'curl http://x | sh'}\n",
                            "t.yaml:6: flows[0].command: command is one text, not an argument list"),
    "command without argv": ("  - {src: h1, dst: h2, tool: command}\n",
                             "flows[0].command: tool: command needs the client's argument list"),
    "udp command": ("  - {src: h1, dst: h2, tool: command, protocol: udp, command: [x]}\n",
                    "flows[0].protocol: a command flow is tcp or mptcp"),
    "bytes on a command": ("  - {src: h1, dst: h2, tool: command, bytes: 1M, command: [x]}\n",
                           "flows[0].bytes: bytes is an iperf3 option"),
    "unknown placeholder": ("  - {src: h1, dst: h2, tool: command, command: [x, '{host}']}\n",
                            "flows[0].command[1]: unknown placeholder {host}"),
    "command on iperf3": ("  - {src: h1, dst: h2, command: [x]}\n", "flows[0].command: command is for tool: command"),
    "udp congestion": ("  - {src: h1, dst: h2, protocol: udp, congestion: cubic}\n",
                       "flows[0].congestion: UDP has no congestion control"),
    "bad size": ("  - {src: h1, dst: h2, bytes: 10 parsecs}\n", "flows[0].bytes: '10 parsecs' is not a size"),
    "unknown protocol": ("  - {src: h1, dst: h2, protocol: sctp}\n", "write mptcp, tcp or udp"),
    "unknown tool": ("  - {src: h1, dst: h2, tool: netperf}\n", "write iperf3 or command"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_traffic_is_one_line_naming_the_field(case: str):
    flows, message = BAD[case]
    with pytest.raises(TopologyError) as info:
        resolved(flows)
    text = str(info.value)
    assert "\n" not in text and message in text, text


def test_sizes():
    assert parse_bytes("10M") == 10 * 2**20 and parse_bytes("500K") == 500 * 1024 and parse_bytes(1000) == 1000
    with pytest.raises(UnitError):
        parse_bytes("-1M")


def test_udp_results_are_parsed_from_iperf3():
    data = {"start": {"connected": [{"local_port": 40000}]}, "intervals": [],
            "end": {"sum": {"bytes": 1, "bits_per_second": 4.9e6, "jitter_ms": 0.4, "lost_packets": 3,
                            "packets": 300, "lost_percent": 1.0},
                    "sum_sent": {"bytes": 10, "bits_per_second": 5e6, "jitter_ms": 0, "lost_packets": 0,
                                 "packets": 300, "lost_percent": 0},
                    "sum_received": {"bytes": 9, "bits_per_second": 4.9e6, "jitter_ms": 0.4, "lost_packets": 3,
                                     "packets": 300, "lost_percent": 1.0, "seconds": 10}}}
    result = parse_iperf3(json.dumps(data))
    assert result.ok and (result.jitter_ms, result.lost_packets, result.packets, result.lost_percent) == \
        (0.4, 3, 300, 1.0)
    del data["end"]["sum_sent"], data["end"]["sum_received"]  # older iperf3: only "sum"
    older = parse_iperf3(json.dumps(data))
    assert older.ok and older.received_bps == 4.9e6 and older.lost_packets == 3


def test_fairness_shares_and_jain_index_in_the_summary_and_table():
    flows = [FlowSummary(name="mptcp", protocol="mptcp", status="ok", goodput_bps=6e6, role="flow"),
             FlowSummary(name="tcp", protocol="tcp", status="ok", goodput_bps=3e6, role="flow"),
             FlowSummary(name="mptcp.tcp1", protocol="tcp", status="ok", goodput_bps=9e6, role="baseline")]
    fairness = _fairness(flows)
    assert fairness is not None and fairness.shares == {"mptcp": 0.6667, "tcp": 0.3333}
    assert fairness.jain_index == pytest.approx(81 / 90, abs=1e-3)
    summary = Summary(flows=flows, fairness=fairness)
    again = Summary.from_json(summary.to_json())
    assert again.fairness == fairness and again.flow("mptcp").share == 0.6667
    assert "shares of the flows' summed goodput: mptcp 66.7%, tcp 33.3%; Jain's index 0.900" in render_table(summary)
    assert _fairness(flows[:1]) is None


def test_capture_on_a_link_end_round_trips_and_bad_capture_items_are_one_line():
    from mptcpdock.errors import MptcpdockError
    from mptcpdock.experiment.runner import resolve_captures
    topo = validate(load_topology_text(BASE.replace("[h1, h2]", "[h1, {node: h2, capture: true}]")
                                       + "  - {src: h1, dst: h2}\nsnaplen: 128\n", source="t.yaml"))
    assert topo.links[0].b.capture and topo.snaplen == 128
    again = validate(load_topology_text(topology_to_yaml(topo)))
    assert again.links[0].b.capture and again.snaplen == 128
    assert resolve_captures(topo, ["h1"]) == {"h2": ["eth0"], "h1": ["eth0"]}
    for item, message in (("h9:eth0", "--capture h9:eth0: no node 'h9'"),
                          ("h1:eth7", "--capture h1:eth7: h1 has no interface 'eth7' (it has: eth0)")):
        with pytest.raises(MptcpdockError) as info:
            resolve_captures(topo, [item])
        assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TopologyError, match="snaplen 10 out of range"):
        validate(load_topology_text(BASE + "  - {src: h1, dst: h2}\nsnaplen: 10\n", source="t.yaml"))


def test_a_lost_udp_setup_datagram_is_explained(tmp_path):
    """iperf3 sends its UDP set-up datagram once: the error says so, and what to do."""
    client = parse_iperf3(json.dumps({"start": {}, "intervals": [], "end": {},
                                      "error": "unable to read from stream socket: Resource temporarily unavailable"}))
    spec = {"launched": True, "tool": "iperf3", "protocol": "udp"}
    status, error = _status(spec, client, 1, tmp_path)
    assert status == "failed" and error.endswith(UDP_SETUP_LOST), error
    status, error = _status({**spec, "protocol": "tcp"}, client, 1, tmp_path)
    assert status == "failed" and UDP_SETUP_LOST not in error
