"""Issue 11 on real containers (the node image MPTCPDOCK_NODE_IMAGE names, else this version's):
the trixie image's tools, a pin that fell back, the path manager and scheduler settings, the
userspace path manager with mptcpd, dual stack (subflows over both families, an IPv6-only
ping matrix) and the kernel counters in summary.json."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from conftest import TOPOLOGIES, running_lab
from mptcpdock import NODE_IMAGE
from mptcpdock.errors import KernelFeatureError
from mptcpdock.experiment.runner import run_experiment
from mptcpdock.report.parsers import parse_monitor
from mptcpdock.runtime import image as im
from mptcpdock.runtime import lab as lab_api
from mptcpdock.runtime.docker_api import run_exec
from mptcpdock.topology.loader import load_topology, load_topology_text
from test_routing_docker import ping_matrix, predicted_matrix, recheck

pytestmark = pytest.mark.docker

USERSPACE = """name: t11-us
routing: auto
nodes:
  h1:
    mptcp: {limits: {subflows: 4, add_addr_accepted: 4}, monitor: true}
  r1: {kind: router}
  h2:
    mptcp: {path_manager: userspace, mptcpd: sspi, scheduler: default, monitor: true}
links:
  - {endpoints: [h1, r1], rate: 100mbit}
  - {endpoints: [r1, h2], rate: 20mbit}
  - {endpoints: [r1, h2], rate: 20mbit}
flows:
  - {src: h1, dst: h2, duration: 3}
"""

IPV6_ONLY = """name: t11-v6
routing: auto
family: ipv6
nodes:
  h1: {}
  r1: {kind: router}
  r2: {kind: router}
  h2: {}
links:
  - {endpoints: [h1, r1]}
  - {endpoints: [h1, r2]}
  - {endpoints: [r1, r2]}
  - {endpoints: [r1, h2]}
  - {endpoints: [r2, h2]}
"""


def labelled_containers(lab: str) -> list:
    return docker.from_env().containers.list(all=True, filters={"label": f"io.mptcpdock.lab={lab}"})


def sh(up, node: str, command: str) -> str:
    result = run_exec(up.state.container(node), ["sh", "-c", command])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_the_image_is_trixie_with_ss_byte_counters_and_mptcpd():
    info = im.image_info(None, NODE_IMAGE)
    assert info["labels"][im.SUITE_LABEL] == "trixie" and info["labels"][im.NODE_LABEL] == "2"
    assert info["packages"]["iproute2"].startswith("6.15") and info["packages"]["mptcpd"].startswith("0.13")
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", NODE_IMAGE, "ip", "-V"],
                         capture_output=True, text=True, check=True).stdout
    assert "iproute2-6.15" in out


def test_a_replaced_pin_falls_back_with_a_warning_and_the_labels_say_what_was_installed():
    """A pin that is not in the suite (as after a point release) still builds."""
    tag = "mptcpdock/node-fallback:test"
    lines: list[str] = []
    try:
        image = im.build_node_image(None, tag, pins={"TCPDUMP_VERSION": "0.0-gone"}, log=lines.append)
        installed, fallback = im.installed_packages(None, tag)
        assert fallback == [("tcpdump", "0.0-gone", installed["tcpdump"])]
        assert image.labels["io.mptcpdock.pkg.tcpdump"] == installed["tcpdump"] != "0.0-gone"
        assert "tcpdump 0.0-gone ->" in image.labels[im.FALLBACK_LABEL]
        assert any(line.startswith("WARNING: tcpdump 0.0-gone is no longer in Debian trixie") for line in lines)
        assert any(line.startswith(f"built {tag}: ") and " MB, Debian trixie" in line for line in lines)
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_a_scheduler_the_kernel_lacks_fails_before_anything_is_created(tmp_path: Path):
    path = tmp_path / "sched.yaml"
    path.write_text(USERSPACE.replace("scheduler: default", "scheduler: nosuchsched").replace("t11-us", "t11-sched"))
    with pytest.raises(KernelFeatureError) as caught:
        lab_api.bring_up(load_topology(path), allow_no_impairments=True)
    text = str(caught.value)
    assert text.startswith(f"{path}:8: nodes.h2.mptcp.scheduler: ") and "'nosuchsched'" in text
    assert "available_schedulers: default" in text and "(fix: use one of: default" in text
    assert labelled_containers("t11-sched") == []
    assert docker.from_env().networks.list(filters={"label": "io.mptcpdock.lab=t11-sched"}) == []


def test_laminar_is_refused_naming_the_side_that_lacks_it(tmp_path: Path, kernel_probe):
    if kernel_probe.endpoint_flags.get("laminar") == "yes":
        pytest.skip("this kernel and image both have laminar")
    model = load_topology_text(USERSPACE.replace("t11-us", "t11-lam").replace(
        "mptcp: {limits: {subflows: 4, add_addr_accepted: 4}, monitor: true}",
        "mptcp: {endpoints: {eth0: [subflow, laminar]}}"))
    with pytest.raises(KernelFeatureError) as caught:
        lab_api.bring_up(model, allow_no_impairments=True)
    assert "does not know the endpoint flag 'laminar'" in str(caught.value) or \
        "does not keep the endpoint flag 'laminar'" in str(caught.value)
    assert labelled_containers("t11-lam") == []


@pytest.fixture(scope="module")
def userspace_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path_factory.getbasetemp() / "state"))
        model = load_topology_text(USERSPACE)
        with running_lab(model, "t11-us") as up:
            settings = sh(up, "h2", "sysctl -n net.mptcp.path_manager net.mptcp.scheduler 2>/dev/null || "
                                    "sysctl -n net.mptcp.pm_type; pgrep -a mptcpd")
            result = run_experiment(topology=model, results_root=tmp_path_factory.mktemp("results"))
            log = sh(up, "h2", "cat /var/log/mptcpd.log")
            yield up, settings, result, log


def test_userspace_path_manager_is_set_read_back_and_mptcpd_runs(userspace_run):
    up, settings, result, log = userspace_run
    assert "userspace" in settings.split() or settings.split()[0] == "1"  # path_manager (6.15+) or pm_type
    assert "/usr/libexec/mptcpd --log=stderr --load-plugins=sspi --path-manager=sspi" in settings
    assert "single-subflow-per-interface path manager initialized" in log
    assert up.plan.nodes["h2"].sysctls.get("net.mptcp.path_manager", "userspace") == "userspace"


def test_mptcpd_0_13_sspi_announces_nothing_and_the_checklist_says_so(userspace_run):
    """Debian's mptcpd 0.13: sspi hands its ADD_ADDRs to the library with address id 0, which
    refuses them (EINVAL, unchecked): it sees every connection and announces nothing. The
    checklist expects that, and the kernel's counters and the monitors agree."""
    _, _, result, log = userspace_run
    summary = json.loads((result.results_dir / "summary.json").read_text())
    flow = summary["flows"][0]
    assert flow["status"] == "ok" and flow["goodput_bps"] > 1e6, summary["reasons"]
    assert flow["subflows"]["expected"] == flow["subflows"]["established"] == 1, flow["subflows"]
    events = parse_monitor((result.results_dir / "monitors" / "h2.log").read_text())
    connections = sum(1 for e in events if e.event == "ESTABLISHED")
    assert connections >= 2 and log.count("sspi_connection_established is unimplemented") == connections, log
    assert summary["counters"]["h2"]["AddAddrTx"] == 0 and summary["counters"]["h1"]["AddAddr"] == 0
    assert summary["counters"]["h2"]["MPJoinAckRx"] == sum(1 for e in events if e.event == "SF_ESTABLISHED") == 0
    reasoning = json.loads((result.results_dir / "checklist.json").read_text())["flows"][0]["reasoning"]
    assert any("userspace path manager" in line for line in reasoning)
    assert any("address id 0" in line for line in reasoning)


USERSPACE_JOINS = """name: t11-usj
routing: auto
nodes:
  h1:
    mptcp: {endpoints: {eth1: [subflow]}, limits: {subflows: 2}, monitor: true}
  r1: {kind: router}
  h2:
    mptcp: {path_manager: userspace, mptcpd: addr_adv, monitor: true}
links:
  - {endpoints: [h1, r1], rate: 20mbit}
  - {endpoints: [h1, r1], rate: 20mbit}
  - {endpoints: [r1, h2], rate: 100mbit}
flows:
  - {src: h1, dst: h2, duration: 3}
"""


def test_a_userspace_path_manager_server_takes_the_peers_joins(tmp_path: Path):
    """h2 on the userspace path manager (mptcpd running): h1's kernel path manager joins from
    its second interface, h2 accepts, both 20 Mbit/s paths carry the flow; the monitors, the
    kernel's join counters and ss -M agree."""
    model = load_topology_text(USERSPACE_JOINS)
    with running_lab(model, "t11-usj") as up:
        assert "--path-manager=addr_adv" in sh(up, "h2", "pgrep -a mptcpd")
        result = run_experiment(topology=model, results_root=tmp_path)
    summary = json.loads((result.results_dir / "summary.json").read_text())
    flow = summary["flows"][0]
    assert flow["status"] == "ok", summary["reasons"]
    assert flow["subflows"]["expected"] == flow["subflows"]["established"] == 2, flow["subflows"]
    assert flow["goodput_bps"] > 25e6, flow["goodput_bps"]  # more than one 20 Mbit/s path carries
    carried = {path["sender_address"] for path in flow["paths"] if path["bytes"] > 1_000_000}
    assert carried == {"10.0.0.1", "10.0.1.1"}, flow["paths"]
    server = parse_monitor((result.results_dir / "monitors" / "h2.log").read_text())
    joins = [e for e in server if e.event == "SF_ESTABLISHED"]
    assert joins and all(e.daddr == "10.0.1.1" for e in joins), joins
    counters = summary["counters"]
    assert counters["h2"]["MPJoinAckRx"] == len(joins) == counters["h1"]["MPJoinSynTx"]
    busy = [item for item in flow["connection_bytes"] if item["node"] == "h1" and item["bytes_sent"] > 1_000_000]
    assert busy and busy[0]["subflows_total"] == 2, flow["connection_bytes"]


@pytest.fixture(scope="module")
def dual_stack_run(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path_factory.getbasetemp() / "state"))
        model = load_topology(TOPOLOGIES / "mptcp-dual-stack.yaml")
        model.name = "t11-ds"
        model.nodes["h1"].mptcp.monitor = True
        with running_lab(model, "t11-ds"):
            yield run_experiment(topology=model, duration=4, results_root=tmp_path_factory.mktemp("results"))


def test_dual_stack_subflows_over_both_families(dual_stack_run):
    summary = json.loads((dual_stack_run.results_dir / "summary.json").read_text())
    flow = summary["flows"][0]
    assert flow["status"] == "ok", summary["reasons"]
    client = parse_monitor((dual_stack_run.results_dir / "monitors" / "h1.log").read_text())
    initial = [e for e in client if e.event == "ESTABLISHED"]
    joined = [e for e in client if e.event == "SF_ESTABLISHED"]
    assert initial and all("saddr6" in e.fields and e.saddr.startswith("fd6d:") for e in initial)
    assert joined and all("saddr4" in e.fields and e.daddr == "192.168.11.2" for e in joined)
    families = {path["receiver_address"].count(":") > 0 for path in flow["paths"] if path["bytes"] > 100_000}
    assert families == {True, False}, flow["paths"]  # both families carried data
    # kernel counters: the server's completed joins are the subflows the monitors saw
    server = parse_monitor((dual_stack_run.results_dir / "monitors" / "h2.log").read_text())
    assert summary["counters"]["h2"]["MPJoinAckRx"] == sum(1 for e in server if e.event == "SF_ESTABLISHED")
    assert summary["counters"]["h1"]["MPJoinSynTx"] == len(joined)
    assert summary["counters"]["h2"]["AddAddrTx"] >= 1 and summary["counters"]["h1"]["AddAddr"] >= 1
    sent = [item for item in flow["connection_bytes"] if item["node"] == "h1" and item["bytes_sent"] > 1_000_000]
    assert sent and sent[0]["subflows_total"] == 2


def test_an_ipv6_only_lab_passes_the_ping_matrix():
    model = load_topology_text(IPV6_ONLY)
    with running_lab(model, "t11-v6") as up:
        assert all("ipv4" not in sh(up, node, "ip -4 -o addr show scope global; echo ipv6-only") for node in ("h1",))
        predicted = predicted_matrix(up.plan.topology)
        measured = ping_matrix(up)
        differing = [pair for pair in predicted if predicted[pair] != measured.get(pair)]
        measured.update(recheck(up, differing))
        assert predicted and all(predicted.values()), predicted
        assert measured == predicted
        assert sh(up, "h1", "cat /proc/sys/net/ipv6/conf/all/disable_ipv6").strip() == "0"
