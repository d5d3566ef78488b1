"""Pure tests: the MPTCP checklist, the expected subflows, and the parsers of what nodes write
during a run (monitor logs, ss samples, /proc/net/dev, iperf3 JSON). No Docker."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mptcpdock.plan.checklist import lookup_route, make_checklist, render_checklist
from mptcpdock.experiment.runner import _script, client_argv, server_argv
from mptcpdock.topology.loader import load_topology
from mptcpdock.topology.model import Endpoint, Flow
from mptcpdock.experiment.node_scripts import SCRIPTS
from mptcpdock.report.parsers import (parse_iperf3, parse_iperf3_version, parse_monitor, parse_proc_net_dev,
                               parse_samples, parse_ss_line, split_endpoint)
from mptcpdock.report.records import Summary
from mptcpdock.report.summary import connections_from_monitor, failed_attempts, flow_sockets, interface_bytes, path_stats
from mptcpdock.report.table import render_table
from mptcpdock.topology.validate import validate

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


def ex1():
    return validate(load_topology(TOPOLOGIES / "mptcp-default-configuration.yaml"))


def mega():
    return validate(load_topology(TOPOLOGIES / "mptcp-mega-dumbbell.yaml"))


def checks_by_name(item) -> dict[str, bool]:
    return {check.name: check.passed for check in item.checks}


# -- the checklist ----------------------------------------------------------------------------

def test_ex1_passes_every_check_and_expects_the_signalled_second_subflow():
    checklist = make_checklist(ex1())
    assert checklist.mptcp_flow_exists.passed
    item = checklist.flow("h1-h2")
    assert all(checks_by_name(item).values()), render_checklist(checklist)
    assert item.expected_subflows == 2
    initial, second = item.candidates[0], item.candidates[1]
    assert (initial.origin, initial.local, initial.remote) == ("initial", "10.0.0.1", "192.168.10.2")
    assert (second.origin, second.local, second.remote, second.routable) == \
        ("ADD_ADDR of eth2b", "10.0.0.1", "192.168.11.2", True)
    # h1's only endpoint is the initial subflow's own address: the checklist says it opens nothing.
    assert any("opens nothing" in line for line in item.reasoning)


def test_mega_h1_expects_one_subflow_because_the_answers_cannot_come_back():
    item = make_checklist(mega()).flow("h1-h6")
    assert all(checks_by_name(item).values())  # NeST's checks pass: h6 is multihomed
    assert item.expected_subflows == 1
    announced = [c for c in item.candidates if c.origin.startswith("ADD_ADDR")]
    assert {c.remote for c in announced} == {"10.0.14.2", "10.0.15.2"}
    assert not any(c.routable for c in announced)
    assert all("r4" in c.note for c in announced), [c.note for c in announced]
    assert item.routing_warnings  # path_warnings says why as well


def test_mega_h2_expects_two_subflows_one_per_interface():
    item = make_checklist(mega()).flow("h2-h6")
    assert item.expected_subflows == 2
    working = [c for c in item.candidates if c.routable]
    assert [(c.local, c.remote) for c in working] == [("10.0.1.1", "10.0.13.2"), ("10.0.2.1", "10.0.15.2")]
    bound = next(c for c in item.candidates if c.origin == "subflow endpoint eth2b")
    assert not bound.routable and "bound to h2's eth2b" in bound.note


def test_a_failing_check_says_why():
    topo = ex1()
    topo.nodes["h2"].mptcp.endpoints = [Endpoint("eth2b", ("subflow",))]
    topo.nodes["h1"].mptcp.endpoints = []
    item = make_checklist(topo).flow("h1-h2")
    checks = {check.name: check for check in item.checks}
    assert not checks["a signal endpoint on the destination"].passed
    assert "h2 has no endpoint flagged signal" in checks["a signal endpoint on the destination"].reason
    assert not checks["a subflow/fullmesh endpoint on the source"].passed
    assert item.expected_subflows == 1
    assert "[FAIL]" in render_checklist(make_checklist(topo))


def test_mptcp_switched_off_by_sysctl_fails_the_enabled_check():
    topo = ex1()
    topo.nodes["h2"].sysctls["net.mptcp.enabled"] = "0"
    checks = checks_by_name(make_checklist(topo).flow("h1-h2"))
    assert checks["destination h2 is MPTCP-enabled"] is False


def test_single_homed_ends_fail_the_multihomed_check():
    topo = ex1()
    topo.links = topo.links[:3]  # drop h2's second link
    topo.nodes["h2"].mptcp.endpoints = []
    topo.nodes["h2"].routes = topo.nodes["h2"].routes[:1]
    topo = validate(topo)
    checks = checks_by_name(make_checklist(topo).flow("h1-h2"))
    assert checks["an end is multihomed and multiaddressed"] is False


def test_the_add_addr_limit_bounds_the_expectation():
    topo = ex1()
    topo.nodes["h1"].mptcp.add_addr_accepted = 0
    item = make_checklist(topo).flow("h1-h2")
    assert item.expected_subflows == 1
    assert any("accepts only 0 ADD_ADDR" in line for line in item.reasoning)


def test_kernel_default_limits_accept_no_add_addr():
    topo = ex1()
    topo.nodes["h1"].mptcp.subflows = None
    topo.nodes["h1"].mptcp.add_addr_accepted = None
    assert make_checklist(topo).flow("h1-h2").expected_subflows == 1  # default add_addr_accepted is 0


def test_fullmesh_endpoints_open_one_subflow_per_known_remote_address():
    topo = ex1()
    topo.nodes["h1"].mptcp.endpoints = [Endpoint("eth1a", ("subflow", "fullmesh"))]
    topo.nodes["h1"].mptcp.subflows = 4
    topo.nodes["h2"].mptcp.subflows = 4
    item = make_checklist(topo).flow("h1-h2")
    assert [(c.origin, c.remote) for c in item.candidates[1:]] == [("fullmesh endpoint eth1a", "192.168.11.2")]
    assert item.expected_subflows == 2


def test_the_server_limit_bounds_the_joins():
    topo = ex1()
    topo.nodes["h2"].mptcp.subflows = 0
    item = make_checklist(topo).flow("h1-h2")
    assert item.expected_subflows == 1
    assert any("the limits allow 0" in line for line in item.reasoning)


def test_tcp_flows_expect_one_path_and_are_not_checked():
    topo = ex1()
    topo.flows[0].protocol = "tcp"
    checklist = make_checklist(topo)
    assert not checklist.mptcp_flow_exists.passed
    item = checklist.flow("h1-h2")
    assert item.checks == [] and item.expected_subflows == 1


def test_route_lookup_prefers_the_longest_prefix_then_the_lowest_metric():
    topo = ex1()
    assert lookup_route(topo, "h2", "10.0.0.1").interface == "eth2a"  # metric 0 beats the metric-1 copy
    assert lookup_route(topo, "h2", "10.0.0.1", interface="eth2b").interface == "eth2b"
    assert lookup_route(topo, "h2", "192.168.11.1").interface == "eth2b"  # connected
    assert lookup_route(topo, "h1", "8.8.8.8").interface == "eth1a"  # default
    assert lookup_route(topo, "r1", "8.8.8.8") is None


def test_after_run_outcome_is_rendered_against_the_expectation():
    checklist = make_checklist(mega())
    outcomes = {
        "h1-h6": {"expected": 1, "established": 1, "source": "monitor on h1", "seen_in_samples": 1,
                  "connections": [{"token": "b235a570", "subflows": ["10.0.0.1 -> 10.0.13.2 (initial)"],
                                   "announced": ["10.0.14.2 (remote id 2)"], "failed": []}],
                  "failed_attempts": ["10.0.0.1 -> 10.0.14.2: only SYN-SENT seen in 40 sample(s)"]},
        "h2-h6": {"expected": 2, "established": 1, "source": "monitor on h2", "connections": []},
    }
    text = render_checklist(checklist, outcomes)
    assert "h1-h6: 1 established, 1 expected (as expected; monitor on h1" in text
    assert "tried, never established (ss samples): 10.0.0.1 -> 10.0.14.2" in text
    assert "h2-h6: 1 established, 2 expected (fewer than expected" in text
    assert "missing: ADD_ADDR of eth6c 10.0.2.1 -> 10.0.15.2" in text


# -- parsers -----------------------------------------------------------------------------------

MONITOR_CLIENT = """\
[2026-11-25T16:40:47.430602] [       CREATED] token=c98aca26 remid=0 locid=0 saddr4=10.0.0.1 daddr4=10.0.13.2 sport=44009 dport=5201
[2026-11-25T16:40:47.430723] [   ESTABLISHED] token=c98aca26 remid=0 locid=0 saddr4=10.0.0.1 daddr4=10.0.13.2 sport=44009 dport=5201
[2026-11-25T16:40:48.717679] [       CREATED] token=658a4a20 remid=0 locid=0 saddr4=10.0.1.1 daddr4=10.0.13.2 sport=37383 dport=5202
[2026-11-25T16:40:49.427854] [   ESTABLISHED] token=658a4a20 remid=0 locid=0 saddr4=10.0.1.1 daddr4=10.0.13.2 sport=37383 dport=5202
[2026-11-25T16:40:49.427900] [     ANNOUNCED] token=658a4a20 remid=2 daddr4=10.0.14.2 dport=5202
[2026-11-25T16:40:50.164496] [SF_ESTABLISHED] token=658a4a20 remid=3 locid=2 saddr4=10.0.2.1 daddr4=10.0.15.2 sport=34325 dport=5202 backup=0
[2026-11-25T16:40:50.797818] [     SF_CLOSED] token=658a4a20 remid=0 locid=2 saddr4=10.0.2.1 daddr4=10.0.13.2 sport=49119 dport=5202 backup=0 error=113 ifindex=5480
[2026-11-25T16:41:07.533507] [        CLOSED] token=658a4a20
"""

MONITOR_SERVER = """\
[2026-11-25T16:47:17.155826] [UNKNOWN 15]
[2026-11-25T16:47:18.402412] [       CREATED] token=4bf0a7c9 remid=0 locid=0 saddr6=::ffff:192.168.10.2 daddr6=::ffff:10.0.0.1 sport=5201 dport=50625 flags=2
[2026-11-25T16:47:18.402433] [   ESTABLISHED] token=4bf0a7c9 remid=0 locid=0 saddr6=::ffff:192.168.10.2 daddr6=::ffff:10.0.0.1 sport=5201 dport=50625 flags=2
[2026-11-25T16:47:18.408073] [SF_ESTABLISHED] token=4bf0a7c9 remid=0 locid=1 saddr6=::ffff:192.168.11.2 daddr6=::ffff:10.0.0.1 sport=5201 dport=34409 backup=0
[2026-11-25T16:47:38.424001] [        CLOSED] token=4bf0a7c9
garbage line
"""


def test_monitor_lines_parse_with_time_addresses_and_unknown_events():
    events = parse_monitor(MONITOR_SERVER)
    assert [e.event for e in events] == ["LISTENER_CREATED", "CREATED", "ESTABLISHED", "SF_ESTABLISHED", "CLOSED"]
    created = events[1]
    assert created.time == pytest.approx(1795624038.402412)
    assert (created.saddr, created.sport, created.daddr, created.dport) == ("192.168.10.2", 5201, "10.0.0.1", 50625)


def test_connections_are_matched_by_ports_from_either_end():
    client_view = connections_from_monitor(parse_monitor(MONITOR_CLIENT), [37383], 5202)
    assert len(client_view) == 1  # the iperf3 control connection (port 44009, dport 5201) is not it
    connection = client_view[0]
    assert connection.token == "658a4a20" and connection.view == "client"
    assert connection.pairs == [("10.0.1.1", "10.0.13.2"), ("10.0.2.1", "10.0.15.2")]
    assert connection.established == 2
    assert connection.announced == ["10.0.14.2 (remote id 2)"]
    assert connection.failed == ["10.0.2.1 -> 10.0.13.2 closed error=113"]
    server_view = connections_from_monitor(parse_monitor(MONITOR_SERVER), [50625], 5201)
    assert server_view[0].pairs == [("10.0.0.1", "192.168.10.2"), ("10.0.0.1", "192.168.11.2")]
    assert connections_from_monitor(parse_monitor(MONITOR_SERVER), [1234], 5201) == []


SS_SUBFLOW = ("tcp   ESTAB 0      66816  10.0.0.1:34409 192.168.11.2:5201 cubic wscale:10,10 rto:220 "
              "rtt:16.083/3.102 minrtt:10.412 mss:1448 pmtu:1500 cwnd:16 ssthresh:12 bytes_sent:9577485 bytes_retrans:52056 "
              "bytes_acked:9502646 segs_out:6749 delivery_rate 9570088bps retrans:0/36 "
              "tcp-ulp-mptcp flags:Jjec token:1bee4a59(id:1)/f6c476ab(id:0) seq:cc82 sfseq:0 ssnoff:deb49d41 maplen:0")
SS_INITIAL = ("tcp   ESTAB 0      38400  10.0.0.1:50625 192.168.10.2:5201 cubic rtt:11.443/3.052 cwnd:18 "
              "bytes_acked:9501889 retrans:0/40 tcp-ulp-mptcp flags:Mmec token:0000(id:0)/f6c476ab(id:0) seq:1 sfseq:1")
SS_MSK = ("mptcp ESTAB 0      0      10.0.0.1:50625 192.168.10.2:5201 subflows:1 add_addr_accepted:1 subflows_max:1 "
          "add_addr_accepted_max:1 remote_key token:f6c476ab write_seq:f8bc snd_una:f8bc rcv_nxt:d1c9")
SS_CONTROL = ("tcp   ESTAB 0      0      10.0.0.1:48575 192.168.10.2:5201 bbr rtt:0.17/0.064 cwnd:13 bytes_acked:187 "
              "tcp-ulp-mptcp flags:Mmec token:0000(id:0)/fc33e84c(id:0) seq:1")
SS_SYN = "tcp   SYN-SENT 0      1      10.0.2.1%eth2b:49119 10.0.13.2:5202 cubic rto:1000 mss:524 cwnd:1 tcp-ulp-mptcp flags:Jjec token:0000(id:2)/658a4a20(id:0)"


def test_ss_lines_give_subflow_numbers_and_tokens():
    sub = parse_ss_line(SS_SUBFLOW)
    assert (sub.netid, sub.local, sub.local_port, sub.peer, sub.peer_port) == ("tcp", "10.0.0.1", 34409, "192.168.11.2", 5201)
    assert sub.info["rtt_ms"] == 16.083 and sub.info["cwnd"] == 16 and sub.info["bytes_acked"] == 9502646
    assert sub.info["retrans_total"] == 36 and sub.info["delivery_rate"] == 9570088
    assert sub.info["congestion"] == "cubic" and sub.info["mptcp_flags"] == "Jjec"
    assert sub.msk_token == "f6c476ab" and sub.is_subflow
    msk = parse_ss_line(SS_MSK)
    assert msk.netid == "mptcp" and msk.msk_token == "f6c476ab" and msk.info["subflows"] == 1
    syn = parse_ss_line(SS_SYN)
    assert (syn.state, syn.local) == ("SYN-SENT", "10.0.2.1")
    assert parse_ss_line("Netid State Recv-Q") is None


def test_endpoints_normalise_v4_mapped_and_bound_addresses():
    assert split_endpoint("[::ffff:192.168.10.2]:5201") == ("192.168.10.2", 5201)
    assert split_endpoint("10.0.2.1%eth2b:49119") == ("10.0.2.1", 49119)
    assert split_endpoint("*:*") == ("*", 0)


PROC_NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
 eth1a: 3167729   42256    0    0    0     0          0         0 119925808   79416    0    0    0     0       0          0
"""


def test_proc_net_dev_gives_rx_and_tx_bytes():
    assert parse_proc_net_dev(PROC_NET_DEV.splitlines()) == {"lo": (0, 0), "eth1a": (3167729, 119925808)}


def sample_block(when: float, lines: list[str], rx: int) -> str:
    dev = PROC_NET_DEV.replace("3167729", str(rx))
    return f"@ {when}\n" + "\n".join(lines) + "\n%dev\n" + dev


def test_samples_blocks_parse_and_a_truncated_last_block_is_kept():
    text = sample_block(100.0, [SS_SUBFLOW, SS_INITIAL, SS_MSK], 1000) + sample_block(100.5, [SS_INITIAL], 3000)
    text += "@ 101.0\n" + SS_SUBFLOW[:40]
    samples = parse_samples(text)
    assert [s.time for s in samples] == [100.0, 100.5, 101.0]
    assert len(samples[0].sockets) == 3 and samples[0].interfaces["eth1a"] == (1000, 119925808)
    assert samples[2].sockets == [] and samples[2].interfaces == {}


def test_flow_sockets_follow_the_token_of_the_data_connection_only():
    samples = parse_samples(sample_block(1.0, [SS_SUBFLOW, SS_INITIAL, SS_MSK, SS_CONTROL], 10)
                            + sample_block(2.0, [SS_SUBFLOW, SS_INITIAL, SS_CONTROL], 20))
    series = flow_sockets(samples, True, [50625], 5201, "mptcp")
    assert set(series) == {("10.0.0.1", 34409, "192.168.11.2", 5201), ("10.0.0.1", 50625, "192.168.10.2", 5201)}
    assert all(len(points) == 2 for points in series.values())
    paths = path_stats(ex1(), "h1", "h2", series, {})
    assert [(p.receiver_interface, p.bytes) for p in paths] == [("eth2b", 9502646), ("eth2a", 9501889)]
    assert sum(p.share for p in paths) == pytest.approx(1.0)
    assert paths[0].rtt_ms_mean == pytest.approx(16.083) and paths[0].retransmits == 36
    assert paths[0].rtt_ms_min == 10.412 and paths[1].rtt_ms_min is None  # SS_INITIAL shows no minrtt


# A fast subflow of simult_flows' "unbalanced bwidth" while its MPTCP connection's send buffer was full
# (ss on the VM Docker host, kernel 6.12), at two samples 1 s apart.
SS_BUSY = ("tcp   ESTAB 0      145104 10.0.1.1:45946 10.0.3.3:5202 cubic rtt:5.523/1.846 mss:1448 cwnd:24 "
           "bytes_acked:{acked} delivery_rate 10800000bps busy:{busy}ms sndbuf_limited:{limited}ms(15.2%) "
           "tcp-ulp-mptcp flags:Mec token:0000(id:0)/bc65e1f1(id:0) seq:1")
SS_BUSY_SLOW = ("tcp   ESTAB 0      86792  10.0.2.1%ns1eth2:35741 10.0.3.3:5202 cubic rtt:9.406/2.997 cwnd:28 "
                "bytes_acked:3243817 busy:5536ms sndbuf_limited:12ms(0.2%) "
                "tcp-ulp-mptcp flags:Jec token:1111(id:1)/bc65e1f1(id:0) seq:1")


def test_busy_and_limited_times_add_up_per_path_and_a_buffer_limited_path_gets_a_note():
    """tcp_info's busy/sndbuf_limited are cumulative: a path takes each subflow's last value;
    for a TCP flow the table says which path sat idle for want of send buffer, and only above
    5% of its busy time."""
    early = parse_ss_line(SS_BUSY.format(acked=3805742, busy=2216, limited=440))
    assert (early.info["busy_ms"], early.info["sndbuf_limited_ms"]) == (2216, 440) and "rwnd_limited_ms" not in early.info
    samples = parse_samples(sample_block(1.0, [SS_BUSY.format(acked=3805742, busy=2216, limited=440), SS_BUSY_SLOW], 10)
                            + sample_block(2.0, [SS_BUSY.format(acked=9290406, busy=5328, limited=808), SS_BUSY_SLOW], 20))
    series = flow_sockets(samples, True, [45946], 5202, "mptcp")
    topology = validate(load_topology(TOPOLOGIES / "simult-flows" / "unbalanced-bwidth.yaml"))
    fast, slow = path_stats(topology, "ns1", "ns3", series, {})
    assert (fast.sender_interface, fast.busy_ms, fast.sndbuf_limited_ms, fast.rwnd_limited_ms) == ("ns1eth1", 5328, 808, 0)
    assert fast.limited_share("sndbuf") == pytest.approx(808 / 5328) and slow.limited_share("sndbuf") == pytest.approx(12 / 5536)

    def notes(protocol: str) -> list[str]:
        summary = Summary.from_dict({"lab": "sf-unbal", "flows": [
            {"name": "ns1-sends", "protocol": protocol, "paths": [fast.to_dict(), slow.to_dict()]}]})
        return [line for line in render_table(summary).splitlines() if "could send no more" in line]

    tcp = notes("tcp")
    assert len(tcp) == 1, tcp  # the slow path's 0.2% stays quiet
    assert tcp[0].startswith("ns1-sends: 10.0.1.1->10.0.3.3 (ns1eth1) could send no more for 15% of its busy "
                             "time (5.3 s): its send buffer was full")
    assert notes("mptcp") == []  # MPTCP's scheduler fills each subflow's buffer in normal work


def test_attempts_never_established_are_reported():
    samples = parse_samples("".join(sample_block(t, [SS_SYN], 0) for t in (1.0, 1.5, 2.0, 2.5)))
    series = flow_sockets(samples, True, [37383], 5202, "mptcp")
    assert series == {}  # the SYN belongs to token 658a4a20, known only through the initial subflow
    syn = parse_ss_line(SS_SYN)
    attempts = failed_attempts({("10.0.2.1", 49119, "10.0.13.2", 5202): [(t, syn) for t in (1.0, 1.5, 2.0, 2.5)]})
    assert attempts == ["10.0.2.1 -> 10.0.13.2: only SYN-SENT seen in 4 sample(s) (its SYNs got no answer)"]


def test_interface_bytes_between_the_samples_around_a_window():
    samples = parse_samples(sample_block(1.0, [], 1000) + sample_block(2.0, [], 5000) + sample_block(3.0, [], 9000))
    window = interface_bytes(samples, 1.2, 2.5, "h1")
    assert window.window == (1.0, 3.0)
    assert window.bytes["eth1a"].rx_bytes == 8000
    assert interface_bytes(samples, None, 2.0, "h1") is None


IPERF_CLIENT = {
    "start": {"connected": [{"socket": 5, "local_host": "10.0.0.1", "local_port": 50625,
                             "remote_host": "192.168.10.2", "remote_port": 5201}],
              "timestamp": {"timesecs": 1795624038}},
    "intervals": [{"sum": {"start": 0, "end": 1.0, "bits_per_second": 18.5e6, "retransmits": 3}}],
    "end": {"streams": [{"sender": {"mean_rtt": 16000}}],
            "sum_sent": {"bytes": 47000000, "bits_per_second": 18.9e6, "retransmits": 80},
            "sum_received": {"bytes": 46000000, "bits_per_second": 18.4e6, "seconds": 20.0},
            "sender_tcp_congestion": "cubic"},
}


def test_iperf3_json_gives_goodput_ports_and_intervals():
    result = parse_iperf3(json.dumps(IPERF_CLIENT))
    assert result.ok and result.local_ports == [50625]
    assert result.received_bps == 18.4e6 and result.retransmits == 80 and result.mean_rtt_ms == 16.0
    assert result.intervals[0].bits_per_second == 18.5e6 and result.congestion == "cubic"
    interrupted = copy.deepcopy(IPERF_CLIENT)
    interrupted["error"] = "interrupt - the client has terminated"
    assert not parse_iperf3(json.dumps(interrupted)).ok
    assert parse_iperf3("").error == "no iperf3 output"
    assert "not JSON" in (parse_iperf3("{broken").error or "")
    assert parse_iperf3_version("iperf 3.12 (cJSON 1.7.15)") == (3, 12)


# -- commands and table ------------------------------------------------------------------------

def test_iperf3_commands_follow_the_flow():
    flow = Flow(src="h1", dst="h2", name="f", dst_address="10.0.0.2", src_address="10.0.0.1", duration=9.5,
                streams=2, congestion="cubic", port=5300, reverse=True)
    assert client_argv(flow, "mptcpize") == [
        "mptcpize", "run", "iperf3", "-c", "10.0.0.2", "-p", "5300", "-t", "10", "-i", "1", "-J",
        "--connect-timeout", "5000", "-P", "2", "-B", "10.0.0.1", "-C", "cubic", "-R"]
    assert server_argv(flow, "native") == ["iperf3", "-s", "-1", "-p", "5300", "-J", "--mptcp"]
    flow.protocol = "tcp"
    assert server_argv(flow, "mptcpize") == ["iperf3", "-s", "-1", "-p", "5300", "-J"]


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_node_scripts_are_valid_sh_and_take_values_as_arguments(name: str):
    checked = subprocess.run(["sh", "-n", "-c", SCRIPTS[name]], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert '"$1"' in SCRIPTS[name] or "dir=$1" in SCRIPTS[name] or '"$@"' in SCRIPTS[name]
    assert _script(name)[:3] == ["sh", "-c", SCRIPTS[name]]  # the constant text itself, never formatted


@pytest.mark.parametrize("name", ["EVENTS", "SAMPLER"])
def test_the_bash_agents_are_valid_bash_and_reach_nodes_as_arguments(name: str):
    from mptcpdock.experiment.node_scripts import BASH_SCRIPTS

    checked = subprocess.run(["bash", "-n", "-c", BASH_SCRIPTS[name]], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert set(BASH_SCRIPTS) == {"EVENTS", "SAMPLER"} and f'bash -c "${name.lower()}"' in SCRIPTS["AGENT"]


def test_table_shows_goodput_subflows_paths_and_the_baseline_ratio():
    summary = {
        "flows": [
            {"name": "h1-h2", "protocol": "mptcp", "status": "ok", "goodput_bps": 18.4e6, "retransmits": 80,
             "subflows": {"expected": 2, "established": 2},
             "paths": [{"receiver_interface": "eth2a", "sender_address": "10.0.0.1", "receiver_address": "192.168.10.2",
                        "bytes": 23_000_000, "share": 0.5, "rtt_ms_mean": 17.0},
                       {"receiver_interface": "eth2b", "sender_address": "10.0.0.1", "receiver_address": "192.168.11.2",
                        "bytes": 23_000_000, "share": 0.5, "rtt_ms_mean": 18.0},
                       {"receiver_interface": "eth2a", "sender_address": "10.0.2.1", "receiver_address": "192.168.10.2",
                        "bytes": 0, "share": 0.0}],
             "baseline": {"ratio": 0.97, "sum_bps": 19.0e6, "paths": [{"goodput_bps": 9.5e6}, {"goodput_bps": 9.5e6}]}},
        ],
        "impairments_dropped": True, "dropped_links": ["r2-h2"], "incomplete": True, "reasons": ["interrupted"],
    }
    table = render_table(Summary.from_dict(summary))
    assert "18.40 Mbit/s" in table and "2 (2)" in table
    assert "eth2a (10.0.0.1->192.168.10.2): 23.0 MB 50%" in table and "10.0.2.1" not in table
    assert "= 0.970 of single-path TCP 19.00 Mbit/s" in table
    assert "dropped on r2-h2" in table and "INCOMPLETE: interrupted" in table


def run_sampler(directory: Path, period_us: int, seconds: float, env: dict[str, str] | None = None) -> str:
    """The node sampler's output after running it here for ``seconds``."""
    from mptcpdock.experiment.node_scripts import SAMPLER

    out = directory / "samples.txt"
    with out.open("w") as sink:
        sampler = subprocess.Popen(["bash", "-c", SAMPLER, "mptcpdock-sampler", str(directory), str(period_us)],
                                   stdout=sink, stderr=subprocess.STDOUT, env=env)
        try:
            sampler.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        finally:
            sampler.kill()
            sampler.wait()
    return out.read_text()


@pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) is not installed on this machine")
def test_the_sampler_writes_what_parse_samples_reads_one_sample_per_slot(tmp_path: Path):
    """The sampler's own output, run here for 1 s at a 0.25 s period: every block parses, with
    this machine's interfaces, and missed slots are skipped (never more samples than slots)."""
    from mptcpdock.report.parsers import parse_samples

    text = run_sampler(tmp_path, period_us=250_000, seconds=1.0)
    samples = parse_samples(text)
    assert 2 <= len(samples) <= 5, text[:2000]
    assert all(later.time > earlier.time for earlier, later in zip(samples, samples[1:]))
    assert all("lo" in sample.interfaces for sample in samples[:-1])


def test_the_sampler_keeps_to_a_tenth_of_the_time_when_a_sample_is_dear(tmp_path: Path):
    """Where one ``ss`` takes 0.1 s (as on a software-emulated Docker host), a 0.1 s period
    would keep the node busy sampling: the sampler waits at least 9 times a sample's own time
    after it, so samples come about 1 s apart, on the period's grid; with a cheap ss (the test
    above) the period holds."""
    from mptcpdock.report.parsers import parse_samples

    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ss").write_text("#!/bin/sh\nsleep 0.1\n")
    (fake / "ss").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    text = run_sampler(tmp_path, period_us=100_000, seconds=3.2, env=env)
    times = [sample.time for sample in parse_samples(text)]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert 2 <= len(times) <= 4, text[:2000]
    assert all(gap >= 0.9 for gap in gaps), gaps
    assert all(abs(gap / 0.1 - round(gap / 0.1)) < 0.3 for gap in gaps), gaps  # on the 0.1 s grid
