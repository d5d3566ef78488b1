"""UDP cross traffic, sized flows, command flows and the fairness example, on real containers."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from mptcpdock.experiment.runner import run_experiment
from mptcpdock.topology.loader import load_topology
from mptcpdock.topology.model import Flow, Link, LinkEnd, Node, Shaping, Topology

from conftest import TOPOLOGIES, running_lab

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _share(flow, interface: str) -> float:
    return sum(path.share or 0.0 for path in flow.paths if path.receiver_interface == interface)


def test_udp_cross_traffic_on_one_path_shifts_the_mptcp_flows_path_shares(tmp_path: Path):
    """ex.1: MPTCP over h2's two 10 Mbit/s links, then with 5 Mbit/s of UDP on the eth2b one."""
    model = load_topology(TOPOLOGIES / "mptcp-default-configuration.yaml")
    model.flows[0].duration = 10
    with running_lab(model, "t10udp"):
        alone = run_experiment(lab="t10udp", topology=_named(model, "t10udp"), results_root=tmp_path, plots=False)
        loaded_model = _named(model, "t10udp")
        loaded_model.flows.append(Flow("h1", "h2", name="udp", dst_address="192.168.11.2", protocol="udp",
                                       bitrate=5_000_000, duration=10))
        loaded = run_experiment(lab="t10udp", topology=loaded_model, results_root=tmp_path, plots=False)
    before, after = alone.summary.flows[0], loaded.summary.flow(alone.summary.flows[0].name)
    share_before, share_after = _share(before, "eth2b"), _share(after, "eth2b")
    print(f"eth2b share of the MPTCP flow: {share_before:.3f} alone -> {share_after:.3f} beside 5 Mbit/s UDP; "
          f"goodput {before.goodput_bps / 1e6:.2f} -> {after.goodput_bps / 1e6:.2f} Mbit/s")
    assert 0.35 < share_before < 0.65, before.paths
    # 10 Mbit/s free on eth2a, about 5 on eth2b: the eth2b share falls toward 1/3
    assert share_after < share_before - 0.08 and share_after < 0.45, after.paths
    assert after.goodput_bps < before.goodput_bps - 2e6
    udp = loaded.summary.flow("udp")
    assert udp.status == "ok" and udp.protocol == "udp" and udp.udp is not None, udp
    assert 4.0e6 < (udp.goodput_bps or 0) < 5.5e6, udp.goodput_bps
    assert udp.udp.jitter_ms is not None and udp.udp.packets and udp.udp.loss_percent is not None
    assert udp.bitrate_bps == 5_000_000


def _named(model: Topology, name: str) -> Topology:
    out = copy.deepcopy(model)
    out.locations, out.name = model.locations, name
    return out


def test_sized_and_command_flows_report_completion(tmp_path: Path):
    topology = Topology(name="t10sized", nodes={"h1": Node("h1"), "h2": Node("h2")},
                        links=[Link(LinkEnd("h1"), LinkEnd("h2"), shaping=Shaping(rate=10_000_000))],
                        flows=[Flow("h1", "h2", name="sized", bytes=2 * 2**20, duration=15),
                               Flow("h1", "h2", name="cmd", tool="command", protocol="mptcp", duration=15, start=5,
                                    command=["iperf3", "-c", "{dst_address}", "-p", "{port}", "-t", "2"],
                                    server=["iperf3", "-s", "-1", "-p", "{port}"])])
    with running_lab(topology, "t10sized"):
        result = run_experiment(lab="t10sized", results_root=tmp_path, plots=False)
    sized, command = result.summary.flow("sized"), result.summary.flow("cmd")
    print(f"2 MiB at 10 Mbit/s: {sized.completion_s} s; command flow: {command.completion_s} s")
    assert sized.status == "ok" and sized.bytes_requested == 2 * 2**20
    # iperf3 -n ends when the sender has written the bytes: what is still queued is not in
    # bytes_received (16.8 Mbit at 10 Mbit/s take 1.7 s to arrive; iperf3 ends after about 1.2 s)
    assert 0.8 < (sized.completion_s or 0) < 4, sized.completion_s
    assert 0 < (sized.bytes_received or 0) <= 2 * 2**20
    assert command.status == "ok" and command.tool == "command", command.error
    assert 2 <= (command.completion_s or 0) < 5
    stdout = (result.results_dir / "flows" / "cmd" / "client.stdout.txt").read_text()
    assert "receiver" in stdout, stdout
    commands = (result.results_dir / "commands.sh").read_text()
    assert "mptcpize run iperf3 -c 10.0.0.2 -p 5202 -t 2" in commands


def test_fairness_example_reports_both_flows_shares(tmp_path: Path):
    with running_lab("mptcp-fairness.yaml", "t10fair"):
        result = run_experiment(lab="t10fair", results_root=tmp_path, plots=False)
    fairness = result.summary.fairness
    assert fairness is not None and set(fairness.shares) == {"mptcp", "tcp"}, result.summary.reasons
    mptcp, tcp = result.summary.flow("mptcp"), result.summary.flow("tcp")
    print(f"fairness: mptcp {mptcp.share} ({mptcp.goodput_bps / 1e6:.2f} Mbit/s, {mptcp.subflows.established} "
          f"subflows), tcp {tcp.share} ({tcp.goodput_bps / 1e6:.2f} Mbit/s), Jain {fairness.jain_index}")
    assert mptcp.subflows.established == 2
    assert abs(mptcp.share + tcp.share - 1) < 0.01
    # One 10 Mbit/s bottleneck: neither flow can pass its TCP payload rate (9.56 Mbit/s). Their sum
    # is no bound: each goodput is averaged over that flow's own window, and under load the two
    # windows differ (10.66 Mbit/s summed was seen with flows starting apart).
    assert mptcp.goodput_bps < 9.7e6 and tcp.goodput_bps < 9.7e6
    assert mptcp.goodput_bps + tcp.goodput_bps > 8e6
    assert mptcp.share > tcp.share  # two uncoupled subflows take more than one TCP flow
