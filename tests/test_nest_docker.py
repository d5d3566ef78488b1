"""NeST's API beyond the MPTCP examples on real Docker (issue 10, item 5): the two NeST scripts
of examples/ (changed only in their imports) run where the kernel has what they need, and stop
before anything runs with the kernel-named error where it does not; a NeST script needing
nothing this kernel lacks (TCP and UDP flows, ping, a capture, a TCP sysctl) runs everywhere.

The netem parts run in the VM tier too (tests/test_nest_vmhost.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mptcpdock.runtime import lab as lab_api
from mptcpdock.runtime.docker_api import run_exec

from nest_scripts import (AQM_SCRIPT, BOTTLENECK_BPS, NETEM_SCRIPT, TCP_SHARE_BAR, UDP_BPS, UDP_SHARE_BAR,
                          check_aqm_script, check_netem_script, flow, last_line, nothing_left, pcap_packets,
                          results_dir, run_script, summary)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_netem_script_runs_where_the_kernel_has_netem(tmp_path: Path, kernel_probe) -> None:
    if not kernel_probe.netem:
        pytest.skip(f"kernel {kernel_probe.kernel} has no netem qdisc (probe: netem=no)")
    done = run_script(NETEM_SCRIPT, "nest5-netem", tmp_path)
    print(check_netem_script(done, tmp_path))
    assert nothing_left("nest5-netem")


def test_the_netem_script_without_netem_stops_at_the_kernel_named_error(tmp_path: Path, kernel_probe) -> None:
    if kernel_probe.netem:
        pytest.skip(f"kernel {kernel_probe.kernel} has netem (probe: netem=yes)")
    done = run_script(NETEM_SCRIPT, "nest5-nonetem", tmp_path)
    error = last_line(done.stderr)
    print(error)
    assert done.returncode == 1, done.stderr[-3000:]
    assert error.startswith("mptcpdock.errors.KernelFeatureError: links h1-r1, r1-h2 ask for delay, jitter or loss")
    assert f"the Docker host's kernel ({kernel_probe.kernel}) has no netem qdisc (sch_netem)" in error
    assert "PING" not in done.stdout and not (tmp_path / "results").exists()  # h1.ping() brought it up: nothing ran
    assert nothing_left("nest5-nonetem")


def test_the_aqm_script_runs_where_the_kernel_has_fq_codel(tmp_path: Path, kernel_probe, mptcp_kernel) -> None:
    if not kernel_probe.aqm.get("fq_codel"):
        pytest.skip(f"kernel {kernel_probe.kernel} has no fq_codel qdisc (probe: aqm.fq_codel=no; it has "
                    f"{', '.join(k for k, v in kernel_probe.aqm.items() if v) or 'none of the AQM qdiscs'})")
    done = run_script(AQM_SCRIPT, "nest5-aqm", tmp_path)
    print(check_aqm_script(done, tmp_path))
    assert nothing_left("nest5-aqm")


def test_the_aqm_script_without_fq_codel_stops_at_the_kernel_named_error(tmp_path: Path, kernel_probe) -> None:
    if kernel_probe.aqm.get("fq_codel"):
        pytest.skip(f"kernel {kernel_probe.kernel} has fq_codel (probe: aqm.fq_codel=yes)")
    done = run_script(AQM_SCRIPT, "nest5-noaqm", tmp_path)
    error = last_line(done.stderr)
    print(error)
    assert done.returncode == 1, done.stderr[-3000:]
    assert error.startswith("mptcpdock.errors.KernelFeatureError: qdisc fq_codel on r1-h2 (r1's egress): "
                            f"the Docker host's kernel ({kernel_probe.kernel}) has no fq_codel qdisc"), error
    assert not (tmp_path / "results").exists()
    assert nothing_left("nest5-noaqm")


PORTABLE = '''\
from mptcpdock.compat.nest.topology import *
from mptcpdock.compat.nest.experiment import *
from mptcpdock.compat.nest.topology.network import Network
from mptcpdock.compat.nest.topology.address_helper import AddressHelper
from mptcpdock.compat.nest import config

h1 = Node("h1")
h2 = Node("h2")
r1 = Router("r1")
(eth1, etr1a) = connect(h1, r1, network=Network("10.0.1.0/24"))
(etr1b, eth2) = connect(r1, h2, network=Network("10.0.2.0/24"))
AddressHelper.assign_addresses()
h1.add_route("DEFAULT", eth1)
h2.add_route("DEFAULT", eth2)
eth1.set_bandwidth("100mbit")
etr1a.set_bandwidth("100mbit")
etr1b.set_bandwidth("10mbit")
eth2.set_bandwidth("10mbit")
h1.configure_tcp_param("ecn", "1")
config.set_value("delete_namespaces_on_termination", False)  # the test reads h1's sysctl, then removes the lab
print("ping:", h1.ping(eth2.get_address(), packets=3, verbose=1))
h2.capture_packets(interface=eth2, packet_count=200, output_file="h2.pcap")
exp = Experiment("portable")
exp.add_tcp_flow(Flow(h1, h2, eth2.get_address(), 0, 10, 1), tool="iperf3")
exp.add_udp_flow(Flow(h2, h1, eth1.get_address(), 0, 10, 1), target_bandwidth="3mbit")
exp.run()
'''


def test_a_nest_script_with_udp_ping_capture_and_a_tcp_sysctl_runs_on_this_kernel(tmp_path: Path,
                                                                                   mptcp_kernel) -> None:
    script = tmp_path / "portable.py"
    script.write_text(PORTABLE)
    lab = "nest5-portable"
    lab_api.tear_down(lab)
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "MPTCPDOCK_LAB": lab, "MPTCPDOCK_FLOW_DURATION": "10"})
        ecn = run_exec(f"{lab}-h1", ["sysctl", "-n", "net.ipv4.tcp_ecn"]).stdout.strip() if done.returncode == 0 else ""
    finally:
        lab_api.tear_down(lab)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "SUCCESS : === PING from h1 to 10.0.2.2 ===" in done.stdout and "ping: True" in done.stdout, done.stdout
    # the ping's lab is the experiment's (its network did not change after the ping): one bring-up
    assert len(re.findall(r"probing the kernel, creating \d+ networks", done.stderr)) == 1, done.stderr
    results = results_dir(tmp_path)
    data = summary(results)
    tcp, udp = flow(data, "h1-h2"), flow(data, "h2-h1")
    print(f"tcp {tcp['goodput_bps'] / BOTTLENECK_BPS:.3f} of 10 Mbit/s, udp {udp['goodput_bps'] / UDP_BPS:.3f} "
          f"of 3 Mbit/s, loss {udp['udp']['loss_percent']}%")
    assert tcp["status"] == "ok" and tcp["goodput_bps"] >= TCP_SHARE_BAR * BOTTLENECK_BPS, tcp
    assert udp["status"] == "ok" and udp["goodput_bps"] >= UDP_SHARE_BAR * UDP_BPS, udp
    assert udp["udp"]["loss_percent"] < 1.0, udp  # no netem loss here; a queue may drop a few
    assert pcap_packets(tmp_path / "packet_capture" / "h2.pcap") == 200
    assert ecn == "1"  # configure_tcp_param("ecn", "1")
    assert nothing_left(lab)
