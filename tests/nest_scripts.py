"""Running the two NeST scripts of examples/ (tcp-udp-netem.py, aqm-bottleneck.py) as a user
would, and checking what they did from their results, for the local tier
(tests/test_nest_docker.py) and the VM tier (tests/test_nest_vmhost.py).

Every bound is a share of what the script configures (its rates, its loss), never a number
measured once."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from mptcpdock.runtime import docker_api
from mptcpdock.runtime import lab as lab_api

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NETEM_SCRIPT = EXAMPLES / "tcp-udp-netem.py"
AQM_SCRIPT = EXAMPLES / "aqm-bottleneck.py"
FLOW_SECONDS = "10"

BOTTLENECK_BPS = 10e6  # both scripts: r1 -> h2
UDP_BPS = 3e6  # tcp-udp-netem: h2 -> h1
UDP_LOSS_PERCENT = 2.0  # tcp-udp-netem: h2's egress
CAPTURED_PACKETS = 500  # tcp-udp-netem: capture_packets(packet_count=500)
TCP_SHARE_BAR = 0.85  # a TCP flow alone on the bottleneck (htb reaches ~0.95 of its rate)
UDP_SHARE_BAR = 0.90  # of the UDP target, after its 2% loss
AQM_SUM_BAR = 0.90  # the two flows together, through fq_codel
AQM_FAIR_BAR = 0.35  # each flow's share of the bottleneck (fair: 0.5)


def run_script(script: Path, lab: str, workdir: Path, **env: str) -> subprocess.CompletedProcess:
    """The script in its own process, from ``workdir``; the lab is removed before and after."""
    environment = {**os.environ, "MPTCPDOCK_LAB": lab, "MPTCPDOCK_FLOW_DURATION": FLOW_SECONDS, **env}
    lab_api.tear_down(lab)
    try:
        return subprocess.run([sys.executable, str(script)], cwd=workdir, env=environment, capture_output=True,
                              text=True, timeout=900)
    finally:
        lab_api.tear_down(lab)


def nothing_left(lab: str) -> bool:
    return docker_api.lab_containers(lab) == [] and docker_api.lab_networks(lab) == []


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def results_dir(workdir: Path) -> Path:
    dirs = sorted((workdir / "results").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def summary(results: Path) -> dict[str, Any]:
    return json.loads((results / "summary.json").read_text())


def flow(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in data["flows"] if item["name"] == name)


def pcap_packets(path: Path) -> int:
    data = path.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), f"{path} is not a little-endian pcap"
    offset, count = 24, 0
    while offset + 16 <= len(data):
        offset += 16 + struct.unpack_from("<I", data, offset + 8)[0]
        count += 1
    assert offset == len(data), f"{path}: a truncated record"
    return count


def qdisc_line(info: str, dev: str, kind: str) -> str:
    """The ``qdisc KIND ... dev DEV`` line of a node's ``tc -s qdisc show`` record."""
    found = [line for line in info.splitlines() if line.startswith(f"qdisc {kind} ") and f" dev {dev} " in line]
    assert found, f"no {kind} qdisc on {dev} in:\n{info}"
    return found[0]


def binomial_loss_band(percent: float, packets: int, sigmas: float = 5.0) -> tuple[float, float]:
    sd = 100.0 * ((percent / 100.0) * (1 - percent / 100.0) / max(packets, 1)) ** 0.5
    return percent - sigmas * sd, percent + sigmas * sd


def check_netem_script(done: subprocess.CompletedProcess, workdir: Path) -> dict[str, float]:
    """tcp-udp-netem.py ran: ping answered, the TCP flow filled the bottleneck, the UDP flow
    kept its rate and lost what h2's netem drops, the netem lines are in the nodes, the capture
    kept its first 500 packets (a copy in packet_capture/, as NeST writes it). Returns the figures."""
    assert done.returncode == 0, done.stderr[-4000:]
    ping = re.search(r"(\d+) packets transmitted, (\d+) received", done.stdout)
    assert "=== PING from h1 to 10.0.2.2 ===" in done.stdout and ping, done.stdout[-2000:]
    assert int(ping[2]) >= 1, ping[0]  # replies cross h2's 2% loss
    results = results_dir(workdir)
    data = summary(results)
    tcp, udp = flow(data, "h1-h2"), flow(data, "h2-h1")
    assert tcp["status"] == "ok" and tcp["protocol"] == "tcp", tcp
    assert udp["status"] == "ok" and udp["protocol"] == "udp" and udp["udp"], udp
    tcp_share = tcp["goodput_bps"] / BOTTLENECK_BPS
    udp_share = udp["goodput_bps"] / UDP_BPS
    loss, packets = udp["udp"]["loss_percent"], udp["udp"]["packets"]
    low, high = binomial_loss_band(UDP_LOSS_PERCENT, packets)
    figures = {"tcp_share": tcp_share, "udp_share": udp_share, "udp_loss_percent": loss, "udp_packets": packets}
    assert tcp_share >= TCP_SHARE_BAR, figures
    assert udp_share >= UDP_SHARE_BAR, figures
    assert low <= loss <= high, (figures, (low, high))
    h1 = (results / "nodes" / "h1" / "info-start.txt").read_text()
    h2 = (results / "nodes" / "h2" / "info-start.txt").read_text()
    assert "duplicate 1%" in qdisc_line(h1, "h1-r1-0", "netem"), h1
    assert "loss 2%" in qdisc_line(h2, "h2-r1-0", "netem"), h2
    commands = (results / "commands.sh").read_text()
    assert re.search(r"netem delay 5000us 1000us distribution normal", commands), "r1's netem line"
    pcap = workdir / "packet_capture" / "h2-eth2.pcap"  # where NeST writes it
    assert pcap.is_file() and pcap_packets(pcap) == CAPTURED_PACKETS
    assert pcap_packets(results / "captures" / "h2-h2-r1-0.pcap") == CAPTURED_PACKETS
    return figures


def check_aqm_script(done: subprocess.CompletedProcess, workdir: Path) -> dict[str, float]:
    """aqm-bottleneck.py ran: fq_codel is the bottleneck's qdisc in tc -s qdisc, both flows
    filled it and shared it, the AQM acted (marks or drops). Returns the figures."""
    assert done.returncode == 0, done.stderr[-4000:]
    results = results_dir(workdir)
    data = summary(results)
    first, second = flow(data, "h1-h2"), flow(data, "h1-h2-2")
    assert first["status"] == "ok" and second["status"] == "ok", (first, second)
    shares = [item["goodput_bps"] / BOTTLENECK_BPS for item in (first, second)]
    stats = json.loads((results / "qdisc-stats.json").read_text())
    assert [(s["node"], s["interface"], s["qdisc"]) for s in stats] == [("r1", "r1-h2-0", "fq_codel")], stats
    leaf = next(q for q in stats[0]["end"] if q["kind"] == "fq_codel")
    start = next((q for q in stats[0]["start"] if q["kind"] == "fq_codel"), {})
    sent = leaf["bytes"] - start.get("bytes", 0)
    acted = (leaf.get("ecn_mark", 0) - start.get("ecn_mark", 0)) + (leaf["drops"] - start.get("drops", 0))
    received = sum(item["bytes_received"] or 0 for item in (first, second))
    figures = {"share_1": shares[0], "share_2": shares[1], "sum_share": sum(shares), "fq_codel_bytes": sent,
               "received_bytes": received, "ecn_marks": leaf.get("ecn_mark", 0), "drops": leaf["drops"]}
    assert f"qdisc fq_codel on r1 r1-h2-0: sent {sent} bytes" in done.stdout, done.stdout[-2000:]
    assert sum(shares) >= AQM_SUM_BAR and min(shares) >= AQM_FAIR_BAR, figures
    assert sent >= received, figures  # every byte the receivers got went through fq_codel (plus headers)
    assert acted > 0, figures
    return figures
