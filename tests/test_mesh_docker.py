"""mptcpdock's mesh plugin for mptcpd (images/node/mesh/mesh.c) on real containers: both hosts
on the userspace path manager, mptcpd running mesh on each. The client (h1) opens a subflow from
its second address; the server (h2) announces its second address with an id it allocates (the
kernel sends it: AddAddrTx), which h1's userspace path manager leaves alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import running_lab
from mptcpdock.experiment.runner import run_experiment
from mptcpdock.report.parsers import parse_monitor
from mptcpdock.topology.loader import load_topology_text
from test_mptcp_depth_docker import USERSPACE, sh

pytestmark = pytest.mark.docker

MESH = """name: upm-mesh
routing: auto
nodes:
  h1:
    mptcp: {path_manager: userspace, mptcpd: mesh, limits: {subflows: 2}, monitor: true}
  r1: {kind: router}
  h2:
    mptcp: {path_manager: userspace, mptcpd: mesh, monitor: true}
links:
  - {endpoints: [h1, r1], rate: 20mbit}
  - {endpoints: [h1, r1], rate: 20mbit}
  - {endpoints: [r1, h2], rate: 100mbit}
  - {endpoints: [r1, h2], rate: 100mbit}
flows:
  - {src: h1, dst: h2, duration: 4}
"""
PATHS_LIMIT = 40e6  # h1's two 20 Mbit/s links: what the two paths can carry at most


def two_subflows_near_the_limit(result, what: str) -> tuple[dict, dict]:
    """summary.json and its flow, checked: ok, 2 subflows per connection as the checklist
    expected, and goodput near what the two 20 Mbit/s paths allow (one alone: at most 0.5)."""
    summary = json.loads((result.results_dir / "summary.json").read_text())
    flow = summary["flows"][0]
    assert flow["status"] == "ok", summary["reasons"]
    assert flow["subflows"]["expected"] == flow["subflows"]["established"] == 2, flow["subflows"]
    ratio = flow["goodput_bps"] / PATHS_LIMIT
    print(f"{what}: goodput {flow['goodput_bps'] / 1e6:.1f} Mbit/s = {ratio:.2f} of the two paths' 40 Mbit/s")
    assert ratio > 0.7, flow["goodput_bps"]
    return summary, flow


def test_mesh_plugin_opens_and_announces_subflows_end_to_end(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path / "state"))
    model = load_topology_text(MESH)
    with running_lab(model, "upm-mesh") as up:
        for node in ("h1", "h2"):
            assert "--path-manager=mesh" in sh(up, node, "pgrep -a mptcpd")
            assert sh(up, node, "sysctl -n net.mptcp.path_manager 2>/dev/null || sysctl -n net.mptcp.pm_type").split()[0] \
                in ("userspace", "1")
        result = run_experiment(topology=model, results_root=tmp_path / "results")
        client_log = sh(up, "h1", "cat /var/log/mptcpd.log")
        server_log = sh(up, "h2", "cat /var/log/mptcpd.log")
        print("h1:", *[line for line in client_log.splitlines() if "mesh" in line], sep="\n  ")
        print("h2:", *[line for line in server_log.splitlines() if "mesh" in line], sep="\n  ")
    summary, flow = two_subflows_near_the_limit(result, "both hosts on mesh")
    carried = {path["sender_address"] for path in flow["paths"] if path["bytes"] > 1_000_000}
    assert carried == {"10.0.0.1", "10.0.1.1"}, flow["paths"]
    # the client's joins, as its monitor, the server's monitor and both kernels count them
    client_joins = [e for e in parse_monitor((result.results_dir / "monitors" / "h1.log").read_text())
                    if e.event == "SF_ESTABLISHED"]
    server_events = parse_monitor((result.results_dir / "monitors" / "h2.log").read_text())
    server_joins = [e for e in server_events if e.event == "SF_ESTABLISHED"]
    connections = sum(1 for e in server_events if e.event == "ESTABLISHED")
    assert connections >= 2 and len(client_joins) == len(server_joins) == connections, (client_joins, server_joins)
    assert all(e.saddr == "10.0.1.1" for e in client_joins), client_joins
    counters = summary["counters"]
    assert counters["h1"]["MPJoinSynTx"] == counters["h1"]["MPJoinSynAckRx"] == len(client_joins)
    assert counters["h2"]["MPJoinSynRx"] == counters["h2"]["MPJoinAckRx"] == len(server_joins)
    # the server announced its other address once per connection, with a valid id, and h1 got it
    assert counters["h2"]["AddAddrTx"] == connections == counters["h1"]["AddAddr"], counters
    assert client_log.count("subflow 10.0.1.1") == connections and ": ok" in client_log, client_log
    assert server_log.count("ADD_ADDR 10.0.3.2 id ") == connections, server_log
    print(f"mesh: {connections} connections, {len(client_joins)} joins; h1 MPJoinSynTx {counters['h1']['MPJoinSynTx']}, "
          f"h2 MPJoinAckRx {counters['h2']['MPJoinAckRx']}, h2 AddAddrTx {counters['h2']['AddAddrTx']}, "
          f"h1 AddAddr {counters['h1']['AddAddr']}")
    reasoning = json.loads((result.results_dir / "checklist.json").read_text())["flows"][0]["reasoning"]
    assert any("mesh plugin on h1 (client)" in line for line in reasoning), reasoning


#: issue 11's userspace lab (h1 kernel path manager behind one link, h2 behind two 20 Mbit/s ones)
#: with h2 on mesh instead of sspi
ANNOUNCE = USERSPACE.replace("t11-us", "upm-mesh-k").replace("mptcpd: sspi, scheduler: default", "mptcpd: mesh")


def test_a_kernel_path_manager_client_joins_what_the_mesh_server_announces(tmp_path: Path, monkeypatch):
    """h2 (userspace, mesh) announces its second address with an id it allocates and a listener
    at the connection's port; h1's kernel path manager accepts the ADD_ADDR and joins it, so both
    of h2's 20 Mbit/s links carry the flow."""
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path / "state"))
    model = load_topology_text(ANNOUNCE)
    with running_lab(model, "upm-mesh-k") as up:
        result = run_experiment(topology=model, results_root=tmp_path / "results")
        server_log = sh(up, "h2", "cat /var/log/mptcpd.log")
    summary, flow = two_subflows_near_the_limit(result, "h2 alone on mesh")
    server_events = parse_monitor((result.results_dir / "monitors" / "h2.log").read_text())
    joins = [e for e in server_events if e.event == "SF_ESTABLISHED"]
    connections = sum(1 for e in server_events if e.event == "ESTABLISHED")
    assert connections >= 2 and len(joins) == connections and all(e.saddr == "10.0.2.2" for e in joins), joins
    counters = summary["counters"]
    assert counters["h2"]["AddAddrTx"] == counters["h1"]["AddAddr"] == connections, counters
    assert counters["h1"]["MPJoinSynTx"] == counters["h2"]["MPJoinAckRx"] == len(joins), counters
    assert server_log.count("ADD_ADDR 10.0.2.2 id ") == connections, server_log
