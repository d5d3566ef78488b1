"""ex.1 with every link a swarm overlay, on a one-node swarm of this engine (issue 14).

The module makes the engine a one-node swarm manager on loopback when it is in no swarm, and
leaves that swarm again at the end, so the engine is left as it was found (an engine that is
already a manager is used as it is). It checks: the lab comes up on internal attachable
overlays, every interface has the pinned MTU, no node is attached to docker_gwbridge or can
reach anything outside the lab, every ping the routes allow answers, MPTCP aggregates both
10 Mbit paths, and down (and a rollback half-way) leave no overlay behind.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Iterator

import pytest

from conftest import TOPOLOGIES, running_lab
from test_experiment import data_paths, flow
from test_lab_docker import RouteSim, ping_many, ping_targets, sh
from mptcpdock.errors import RuntimeFailure
from mptcpdock.experiment.runner import run_experiment
from mptcpdock.runtime import apply, docker_api, lab as lab_api, swarm
from mptcpdock.runtime.apply import UpResult
from mptcpdock.topology.loader import load_topology
from mptcpdock.topology.model import Topology

pytestmark = pytest.mark.docker

EX1 = TOPOLOGIES / "mptcp-default-configuration.yaml"
LAB = "t14-ovl"
#: Outside the lab: the host's docker0 and docker_gwbridge gateways, and a public address.
OUTSIDE = ["172.17.0.1", "172.18.0.1", "1.1.1.1"]


@pytest.fixture(scope="module")
def one_node_swarm() -> Iterator[None]:
    role = docker_api.swarm_role()
    if role not in ("inactive", "manager"):
        pytest.skip(f"the engine is a swarm {role}; these tests need a manager or no swarm")
    started = swarm.init() if role == "inactive" else False
    try:
        yield
    finally:
        if started:
            swarm.leave()
            assert docker_api.swarm_role() == "inactive"


def overlay_ex1(name: str = LAB) -> Topology:
    topology = load_topology(EX1)
    topology.name, topology.overlays = name, "all"
    return topology


@pytest.fixture(scope="module")
def lab(one_node_swarm: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpResult]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path_factory.getbasetemp() / "state"))
        with running_lab(overlay_ex1(), LAB) as up:
            yield up
    assert docker_api.lab_networks(LAB) == [] and docker_api.lab_containers(LAB) == []


def test_every_link_is_an_internal_attachable_overlay(lab: UpResult) -> None:
    api = docker_api.client().api
    networks = [api.inspect_network(name) for name in lab.state.networks.values()]
    assert len(networks) == 4
    for network in networks:
        assert (network["Driver"], network["Scope"], network["Internal"], network["Attachable"]) == \
            ("overlay", "swarm", True, True), network["Name"]
        subnet = ipaddress.IPv4Network(network["IPAM"]["Config"][0]["Subnet"])
        assert subnet.subnet_of(docker_api.OVERLAY_CARRIER_POOL), subnet  # apart from bridges' blocks


def test_every_interface_has_the_pinned_mtu(lab: UpResult) -> None:
    for node, plan in lab.plan.nodes.items():
        for intf in plan.interfaces:
            assert sh(lab, node, "cat", f"/sys/class/net/{intf.name}/mtu").strip() == "1450", (node, intf.name)
        # only the lab's interfaces (and lo): no docker_gwbridge leg
        names = set(sh(lab, node, "ls", "/sys/class/net").split())
        assert names == {"lo", *(intf.name for intf in plan.interfaces)}, (node, names)


def test_no_node_is_on_docker_gwbridge_or_reaches_outside(lab: UpResult) -> None:
    ids = {node.container_id for node in lab.state.nodes.values()}
    assert not ids & docker_api.gwbridge_containers()
    answered = ping_many(lab, {node: OUTSIDE for node in lab.plan.nodes})
    assert answered == set(), f"reached outside the lab: {sorted(answered)}"


def test_the_ping_matrix_matches_the_routes(lab: UpResult) -> None:
    sim, targets = RouteSim(lab.plan), ping_targets(lab.plan.topology)
    expected = {(node, address) for node, addresses in targets.items() for address in addresses
                if sim.pings(node, address)}
    assert ("h1", "192.168.11.2") in expected and ("h2", "10.0.0.1") in expected
    assert ping_many(lab, targets) == expected


def test_a_full_size_packet_crosses_but_not_one_byte_more(lab: UpResult) -> None:
    # 1450 - 28 (IP + ICMP headers) with don't-fragment, from h1 across three overlays to h2
    sh(lab, "h1", "ping", "-c1", "-W2", "-M", "do", "-s", "1422", "192.168.10.2")
    too_big = docker_api.run_exec(lab.state.container("h1"), ["ping", "-c1", "-W2", "-M", "do", "-s", "1423",
                                                                 "192.168.10.2"])
    assert too_big.exit_code != 0 and "message too long" in (too_big.stdout + too_big.stderr).lower()


def test_mptcp_aggregates_both_paths_over_overlays(lab: UpResult, tmp_path: Path) -> None:
    result = run_experiment(topology=overlay_ex1(), duration=8, results_root=tmp_path, plots=False)
    item = flow(result.summary.to_dict(), "h1-h2")
    assert item["goodput_bps"] >= 15e6, f"{item['goodput_bps'] / 1e6:.2f} Mbit/s over two 10 Mbit paths"
    paths = data_paths(item)
    assert len(paths) == 2 and min(path["bytes"] for path in paths) >= 0.3 * max(path["bytes"] for path in paths)


def test_rollback_half_way_removes_the_overlays(one_node_swarm: None, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path / "state"))
    name = "t14-ovl-rb"
    apply.down(name)
    plan = lab_api.prepare(overlay_ex1(name))
    with pytest.raises(RuntimeFailure, match="injected failure after creating containers"):
        apply.up(plan, allow_no_impairments=True, fail_after="containers")
    assert docker_api.lab_networks(name) == [] and docker_api.lab_containers(name) == []


def test_overlays_without_a_manager_fail_before_anything_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_api, "swarm_role", lambda: "inactive")
    plan = lab_api.prepare(overlay_ex1("t14-noswarm"))
    with pytest.raises(RuntimeFailure, match=r"h1-r1, r1-r2, r2-h2, r2-h2-2 .* not a swarm manager .*swarm init"):
        apply.up(plan, allow_no_impairments=True)
    assert docker_api.lab_networks("t14-noswarm") == []
