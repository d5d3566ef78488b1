"""Issue 11 on the VM tier's kernel (Debian trixie's 6.12: no net.mptcp.path_manager yet, so
the userspace path manager is selected with net.mptcp.pm_type=1), through its engine with the
mptcpdock CLI only (the fixtures of tests/vmhost_support.py; ``pytest -m vmhost``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmhost_support import Cli, results_dir_of, summary_of, write_topology

pytest_plugins = ["vmhost_support"]
pytestmark = [pytest.mark.vmhost]

USERSPACE = {
    "name": "t11vm",
    "routing": "auto",
    "family": "dual",
    "nodes": {
        "h1": {"mptcp": {"limits": {"subflows": 2, "add_addr_accepted": 2}, "monitor": True}},
        "r1": {"kind": "router"},
        "h2": {"mptcp": {"path_manager": "userspace", "mptcpd": "sspi", "scheduler": "default", "monitor": True}},
    },
    "links": [
        {"endpoints": ["h1", "r1"], "rate": "50mbit", "delay": "5ms"},
        {"endpoints": ["r1", "h2"], "rate": "10mbit", "delay": "5ms"},
        {"endpoints": ["r1", "h2"], "rate": "10mbit", "delay": "5ms"},
    ],
    "flows": [{"src": "h1", "dst": "h2", "duration": 3}],
}


@pytest.fixture(autouse=True)
def _on_the_vm_engine(vm_engine) -> None:
    """Every test here needs the VM engine (or the whole tier skips, see vmhost_support)."""


def test_userspace_path_manager_maps_to_pm_type_before_6_15(cli: Cli, vm_engine, tmp_path: Path) -> None:
    major, minor = (int(part) for part in vm_engine.kernel.split(".")[:2])
    if (major, minor) >= (6, 15):
        pytest.skip(f"kernel {vm_engine.kernel} has net.mptcp.path_manager")
    path = write_topology(tmp_path / "userspace.yaml", USERSPACE)
    with cli.lab(path, "t11vm") as lab:
        knobs = cli.exec(lab, "h2", "sh", "-c", "sysctl -n net.mptcp.pm_type; ls /proc/sys/net/mptcp; pgrep -a mptcpd")
        assert knobs.split()[0] == "1", knobs  # userspace
        assert "path_manager" not in knobs.split()  # 6.12 has no such sysctl: the mapping had to be pm_type
        assert "--path-manager=sspi" in knobs
        assert cli.exec(lab, "h1", "sysctl", "-n", "net.mptcp.pm_type").strip() == "0"  # h1 asked for nothing
        run = cli.run("run", "--lab", lab, "--results", str(tmp_path / "results"))
        summary = summary_of(results_dir_of(run.stdout + run.stderr))
        flow = summary["flows"][0]
        assert flow["status"] == "ok", summary["reasons"]
        assert set(summary["counters"]) >= {"h1", "h2"}
        print(json.dumps({"kernel": vm_engine.kernel, "subflows": flow["subflows"]["established"],
                          "h2 MPJoinAckRx": summary["counters"]["h2"]["MPJoinAckRx"],
                          "h2 AddAddrTx": summary["counters"]["h2"]["AddAddrTx"]}))
