"""Packet capture on real containers: ex.1's pcaps hold the MPTCP handshake of both subflows."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mptcpdock.experiment.runner import run_experiment
from mptcpdock.topology.loader import load_topology

from conftest import TOPOLOGIES, running_lab

pytestmark = [pytest.mark.docker, pytest.mark.slow]

MPTCP_OPTION = 30
SUBTYPES = {0: "MP_CAPABLE", 1: "MP_JOIN"}


def mptcp_syns(path: Path) -> list[tuple[str, str, str]]:
    """(subtype, source address, destination address) of every SYN with an MPTCP option in
    a pcap (Ethernet, IPv4, TCP), read with nothing but struct."""
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    assert struct.unpack(endian + "I", data[20:24])[0] == 1, "not an Ethernet capture"
    out, offset = [], 24
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + caplen]
        offset += 16 + caplen
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ip = frame[14:]
        tcp = ip[(ip[0] & 0x0F) * 4:]
        if len(tcp) < 20 or not tcp[13] & 0x02:  # SYN (and SYN-ACK)
            continue
        options, i = tcp[20:(tcp[12] >> 4) * 4], 0
        while i < len(options):
            kind = options[i]
            if kind == 0:
                break
            if kind == 1:
                i += 1
                continue
            length = options[i + 1] if i + 1 < len(options) else 0
            if length < 2:
                break
            if kind == MPTCP_OPTION and length > 2:
                subtype = options[i + 2] >> 4
                if subtype in SUBTYPES:
                    out.append((SUBTYPES[subtype], ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))))
            i += length
    return out


def test_capture_on_ex1_holds_mp_capable_and_mp_join_of_both_subflows(tmp_path: Path):
    model = load_topology(TOPOLOGIES / "mptcp-default-configuration.yaml")
    model.name = "t10cap"
    model.links[2].b.capture = True  # h2:eth2a, from the topology; eth2b from the run's option
    with running_lab(model, "t10cap"):
        result = run_experiment(lab="t10cap", topology=model, duration=4, results_root=tmp_path, plots=False,
                                capture=["h2:eth2b"])
    assert result.summary.captures == ["captures/h2-eth2a.pcap", "captures/h2-eth2b.pcap"], result.summary.captures
    first = mptcp_syns(result.results_dir / "captures" / "h2-eth2a.pcap")
    second = mptcp_syns(result.results_dir / "captures" / "h2-eth2b.pcap")
    print(f"eth2a: {first}\neth2b: {second}")
    assert ("MP_CAPABLE", "10.0.0.1", "192.168.10.2") in first  # the initial subflow
    assert ("MP_JOIN", "10.0.0.1", "192.168.11.2") in second  # the one to the signalled address
    log = (result.results_dir / "captures" / "h2-eth2a.log").read_text()
    assert "packets captured" in log, log
    assert "# h2: tcpdump -s 200 -U -w on eth2a, eth2b" in (result.results_dir / "commands.sh").read_text()
