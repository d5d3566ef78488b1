"""NeST's three MPTCP examples, changed only in their imports, run to completion on real
Docker with shortened flows (MPTCPDOCK_FLOW_DURATION), and do what the seed says they do.

Numbers come from the ``summary.json`` the experiment runner writes; nothing is hard-coded
but the bars of the experiments issue."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mptcpdock.runtime import lab as lab_api
from mptcpdock.topology.loader import load_topology

from nest_scripts import results_dir, run_script

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TOPOLOGIES = ROOT / "topologies"
# The aggregate bar (issue 3's) compares whole runs: MPTCP's start (slow start on two subflows,
# the second one opened after an ADD_ADDR) costs about 1.5 s at half rate, so at 20 s the ratio
# lands at 0.95-0.98 (measured: 0.953 and 0.975 for ex.2 and ex.1); 30 s measures the
# aggregation rather than the start-up.
BAR_FLOW_SECONDS = "30"
AGGREGATE_BAR_BPS = 19.0e6  # issue 3: two 10 Mbit/s paths
BASELINE_RATIO_BAR = 0.95  # ... or this share of the single-path TCP sum measured in the same run

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def summary_of(results_dir: Path) -> dict[str, Any]:
    return json.loads((results_dir / "summary.json").read_text())


def flow(summary: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in summary["flows"] if item["name"] == name)


def assert_aggregate_bar(item: dict[str, Any]) -> None:
    """Issue 3's bar: >= 19.0 Mbit/s, or >= 0.95 of the single-path TCP goodputs summed over
    the two distinct paths, measured in the same run (baseline)."""
    goodput = item["goodput_bps"]
    baseline = item.get("baseline") or {}
    paths = {(path["src_address"], path["dst_address"]) for path in baseline.get("paths", [])}
    detail = f"goodput {goodput / 1e6:.2f} Mbit/s, baseline {baseline}"
    if goodput >= AGGREGATE_BAR_BPS:
        return
    assert len(paths) >= 2, f"below {AGGREGATE_BAR_BPS / 1e6} Mbit/s and no two-path baseline: {detail}"
    assert baseline["ratio"] >= BASELINE_RATIO_BAR, detail


def used_sender_interfaces(item: dict[str, Any], min_share: float = 0.05) -> set[str]:
    """The sender's interfaces that carried at least ``min_share`` of the flow's bytes (a
    socket bound to its endpoint's device shows in ss as ADDRESS%DEVICE)."""
    used = set()
    for path in item["paths"]:
        interface = path["sender_interface"] or path["sender_address"].partition("%")[2]
        if interface and (path["share"] or 0) >= min_share:
            used.add(interface)
    return used


@pytest.mark.parametrize("example,lab", [("mptcp-default-configuration", "nest-ex1"), ("mptcp-helper", "nest-ex2")])
def test_two_path_examples_reach_the_aggregate_bar(example: str, lab: str, tmp_path: Path, mptcp_kernel) -> None:
    done = run_script(EXAMPLES / f"{example}.py", lab, tmp_path, MPTCPDOCK_BASELINE="1",
                      MPTCPDOCK_FLOW_DURATION=BAR_FLOW_SECONDS)
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_dir(tmp_path)
    summary = summary_of(results)
    assert not summary["incomplete"], summary["reasons"]
    item = flow(summary, "h1-h2")
    assert item["protocol"] == "mptcp" and item["status"] == "ok"
    assert item["duration"] == float(BAR_FLOW_SECONDS)  # shortened from the script's 60 s
    assert item["subflows"]["established"] >= 2, item["subflows"]
    assert_aggregate_bar(item)
    assert "MPTCP checklist" in done.stdout  # show_mptcp_checklist is on in both scripts
    assert summary["monitors"]["h2"]["requested"] and summary["monitors"]["h2"]["events"]


def test_mega_dumbbell_h2_uses_two_paths(tmp_path: Path, mptcp_kernel) -> None:
    done = run_script(EXAMPLES / "mptcp-mega-dumbbell.py", "nest-ex3", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = summary_of(results_dir(tmp_path))
    h2 = flow(summary, "h2-h6")
    assert h2["status"] == "ok" and h2["subflows"]["established"] >= 2, h2["subflows"]
    assert used_sender_interfaces(h2) == {"h2-r1-0", "h2-r2-0"}, h2["paths"]
    h1 = flow(summary, "h1-h6")
    assert h1["status"] == "ok"
    # The seed's point: h6 announces its other addresses to h1 (the monitor shows it) but h1,
    # with one interface and destination-only routes, gets no working extra subflow.
    announced = {address for connection in h1["subflows"]["connections"] for address in connection["announced"]}
    assert announced, h1["subflows"]
    assert {m for m, info in summary["monitors"].items() if info["requested"]} == {"h1", "h2", "h6"}


def test_example_results_match_mptcpdock_run(tmp_path: Path, mptcp_kernel) -> None:
    """The NeST script and `mptcpdock run` on its YAML twin lay out the same results directory."""
    from mptcpdock.experiment.runner import run_experiment

    (tmp_path / "script").mkdir()
    done = run_script(EXAMPLES / "mptcp-default-configuration.py", "nest-ex1s", tmp_path / "script",
                      MPTCPDOCK_FLOW_DURATION="4")
    assert done.returncode == 0, done.stderr[-3000:]
    from_script = results_dir(tmp_path / "script")
    twin = load_topology(TOPOLOGIES / "mptcp-default-configuration.yaml")
    for item in twin.flows:
        item.baseline = False  # the script asks for no single-path baseline; compare like with like
    lab_api.tear_down("nest-ex1y")
    try:
        result = run_experiment("nest-ex1y", twin, duration=4, results_root=tmp_path / "cli",
                                allow_no_impairments=True)
    finally:
        lab_api.tear_down("nest-ex1y")
    files = {path.relative_to(from_script) for path in from_script.rglob("*") if path.is_file()}
    assert files == {path.relative_to(result.results_dir) for path in result.results_dir.rglob("*") if path.is_file()}
    assert set(summary_of(from_script)) == set(result.summary.to_dict())


NEST_TWO_HOSTS = """\
from mptcpdock.compat.nest.topology import *
from mptcpdock.compat.nest.experiment import *
from mptcpdock.compat.nest.topology.network import Network
from mptcpdock.compat.nest.topology.address_helper import AddressHelper
from mptcpdock.compat.nest import config

config.set_value("log_level", "trace")   # lower case: NeST itself only takes "TRACE"
h1 = Node("h1")
h2 = Node("h2")
r1 = Router("r1")
(eth1a, etr1a) = connect(h1, r1, network=Network("10.1.0.0/24"))
(etr1b, eth2a) = connect(r1, h2, network=Network("10.2.0.0/24"))
AddressHelper.assign_addresses()
{routes}
for interface in (eth1a, etr1a, etr1b, eth2a):
    interface.set_attributes("20mbit", "1ms")
exp = Experiment("two hosts")
exp.add_tcp_flow(Flow(h1, h2, eth2a.get_address(), 0, 60, 1), tool="iperf3")
exp.run()
"""


def test_trace_and_failures(tmp_path: Path, mptcp_kernel) -> None:
    """log_level "trace" writes commands.sh here; a run that fails exits non-zero, lab gone."""
    good = tmp_path / "good"
    good.mkdir()
    script = good / "two_hosts.py"
    script.write_text(NEST_TWO_HOSTS.format(routes=textwrap.dedent("""\
        h1.add_route("DEFAULT", eth1a)
        h2.add_route("DEFAULT", eth2a)""")))
    done = run_script(script, "nest-trace", good, MPTCPDOCK_FLOW_DURATION="2")
    assert done.returncode == 0, done.stderr[-3000:]
    commands = (good / "commands.sh").read_text()
    assert "docker exec nest-trace-h1" in commands and "iperf3" in commands
    assert flow(summary_of(results_dir(good)), "h1-h2")["goodput_bps"] > 10e6

    bad = tmp_path / "bad"
    bad.mkdir()
    script = bad / "no_routes.py"
    script.write_text(NEST_TWO_HOSTS.format(routes="# no routes: h1 cannot reach h2"))
    done = run_script(script, "nest-fail", bad, MPTCPDOCK_FLOW_DURATION="2")
    assert done.returncode == 1
    assert "RuntimeFailure" in done.stderr and "did not complete" in done.stderr
    assert (bad / "commands.sh").exists()
    assert not lab_api.apply.running_labs().get("nest-fail")
