"""Events and traces on real containers (issue 9, "Done when"): failover to a backup path,
a blackhole, a replayed rate trace, a set: event that changes only what it names, an endpoint
backup flip (MP_PRIO), and bad events refused before anything starts.

This kernel has no netem: delay is dropped (--allow-no-impairments) and a delay set: fails
before start; tests/test_events_vmhost.py checks delay with ping on a netem kernel.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner

from conftest import TOPOLOGIES, running_lab
from mptcpdock.cli import main
from mptcpdock.errors import KernelFeatureError
from mptcpdock.experiment.runner import RunResult, run_experiment
from mptcpdock.runtime import docker_api, lab as lab_api
from mptcpdock.topology.loader import load_topology, load_topology_text
from mptcpdock.topology.model import EndpointChange, Event

pytestmark = [pytest.mark.docker, pytest.mark.slow]

#: Lab names carry this process's id: two test sessions on one Docker host (two worktrees) must
#: not bring up, run and tear down each other's labs.
PID = os.getpid() % 100000


def lab_name(base: str) -> str:
    return f"{base}{PID}"

FAILOVER = TOPOLOGIES / "mptcp-failover.yaml"


def flow(summary: dict, name: str) -> dict:
    return next(item for item in summary["flows"] if item["name"] == name)


def event_of(item: dict, label: str) -> dict:
    return next(e for e in item["events"] if e["label"] == label)


def path_row(event: dict, interface: str) -> dict:
    return next(p for p in event["paths"] if p["receiver_interface"] == interface)


def goodput_between(item: dict, start: float, end: float) -> list[float]:
    return [rate for t, rate in item["intervals"] if start < t <= end]


class Ran:
    """A run, its summary.json as written (plain JSON values) and what the test saw in the nodes."""

    def __init__(self, result: RunResult, **seen: str) -> None:
        self.result, self.results_dir = result, result.results_dir
        self.summary = json.loads((result.results_dir / "summary.json").read_text())
        self.seen = seen


def run(model, tmp_path: Path) -> Ran:
    return Ran(run_experiment(topology=model, results_root=tmp_path))


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    """mptcp-failover.yaml as shipped: primary down at t=6, up at t=12, 18 s flows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path_factory.getbasetemp() / "state"))
        model = load_topology(FAILOVER)
        model.name = lab_name("t9fo")
        with running_lab(model, model.name) as up:
            result = run_experiment(topology=model, results_root=tmp_path_factory.mktemp("results"))
            after = docker_api.run_exec(up.state.container("h1"), ["ip", "-o", "link", "show", "primary0"])
            yield Ran(result, primary_after_run=after.stdout)


def test_failover_mptcp_keeps_going_on_the_backup_while_the_tcp_twin_stalls(failover: Ran):
    summary = failover.summary
    mptcp, twin = flow(summary, "mptcp"), flow(summary, "tcp-twin")
    assert mptcp["status"] == "ok" and twin["status"] == "ok", summary["reasons"]
    fails = event_of(mptcp, "primary fails")
    assert max(goodput_between(mptcp, 6.0, 9.0)) > 0, "no MPTCP goodput within 3 s of the failure"
    assert fails["recovery_s"] is not None and fails["recovery_s"] <= 4.0, fails
    assert fails["allowed_bps"] > 8e6  # the backup's 10 Mbit/s, less MPTCP's framing
    assert sum(goodput_between(twin, 6.5, 11.5)) == 0, "the TCP twin on the primary must stall"
    assert event_of(twin, "primary fails")["gap_s"] >= 5.0
    backup = path_row(fails, "backup0")
    assert backup["backup"] is True
    assert backup["share_before"] <= 0.05 and backup["interface_share_before"] <= 0.05, backup
    assert backup["share_after"] >= 0.8 and backup["interface_share_after"] >= 0.8, backup
    back = event_of(mptcp, "primary returns")
    assert path_row(back, "primary0")["share_after"] >= 0.5, back["paths"]  # traffic moves back


def test_failover_counters_monitor_and_timeline_record_the_subflow_change(failover: Ran):
    summary, folder = failover.summary, failover.results_dir
    mptcp = flow(summary, "mptcp")
    fails, back = event_of(mptcp, "primary fails"), event_of(mptcp, "primary returns")
    assert fails["counters"]["h1"]["SubflowStale"] >= 1, fails["counters"]
    assert fails["counters"]["h1"]["MPTCPRetrans"] > 0
    assert back["counters"]["h1"]["SubflowRecover"] >= 1, back["counters"]
    assert all(isinstance(v, int) or v == "unsupported" for v in fails["counters"]["h2"].values())
    # the monitor saw the backup subflow come up flagged backup, and no connection closed mid-run
    monitor = (folder / "monitors" / "h1.log").read_text()
    assert re.search(r"SF_ESTABLISHED.*saddr4=10\.2\.0\.1.*backup=1", monitor), monitor
    timeline = (folder / "timeline.txt").read_text()
    assert "event    primary fails: ip link set dev primary0 down" in timeline
    assert "monitor  SF_ESTABLISHED 10.2.0.1" in timeline
    closed = [float(line.split()[0]) for line in timeline.splitlines() if "monitor  CLOSED" in line]
    assert closed and min(closed) > 17.0, closed
    events_log = (folder / "events.log").read_text()
    assert events_log.count("ip link set dev primary0 down") == 2  # both ends
    assert "restore" in events_log and "UP" in failover.seen["primary_after_run"]  # the lab is back as up left it


def test_failover_scheduling_blackhole_timeout_and_plots(failover: Ran):
    summary, folder = failover.summary, failover.results_dir
    scheduling = summary["events"]["scheduling"]
    assert scheduling["start_lag"]["median_ms"] <= 10.0, scheduling  # the target
    # the command itself can wait for the kernel's rtnl lock, which every lab on the host shares
    assert scheduling["done_lag"]["median_ms"] <= 500.0, scheduling
    assert all(e["status"] == "applied" for e in summary["events"]["occurrences"])
    state = json.loads((folder / "state.json").read_text())
    assert state["blackhole_timeout"]["kernel_default"] == 3600
    assert state["blackhole_timeout"]["set"] == {"h1": "0", "h2": "0"}
    for node in ("h1", "h2"):
        assert "net.mptcp.blackhole_timeout = 0" in (folder / "nodes" / node / "info-start.txt").read_text()
    assert {"throughput.png", "paths.png"} <= set(summary["plots"])
    assert summary["flows"][0]["intervals"][1][0] - summary["flows"][0]["intervals"][0][0] == pytest.approx(0.1, abs=0.01)


def test_blackhole_is_survived_and_its_recovery_time_reported(tmp_path: Path):
    model = load_topology(FAILOVER)
    model.name = lab_name("t9bh")
    model.events = [Event(t=(5.0,), link="primary", blackhole=True, label="primary blackholed"),
                    Event(t=(11.0,), link="primary", blackhole=False, label="primary heals")]
    for item in model.flows:
        item.duration = 16
    with running_lab(model, model.name) as up:
        probe = {}

        def look() -> None:  # mid-blackhole: the interface is up, the filter drops
            time.sleep(9.0)  # servers, then t0 about 1.3 s after the run starts: t ~ 7.7
            probe["link"] = docker_api.run_exec(up.state.container("h1"), ["ip", "-o", "link", "show", "primary0"]).stdout
            probe["tc"] = docker_api.run_exec(up.state.container("h1"), ["tc", "-s", "filter", "show", "dev", "primary0",
                                                                         "egress"]).stdout

        watcher = threading.Thread(target=look)
        watcher.start()
        result = run(model, tmp_path)
        watcher.join()
    summary = result.summary
    mptcp, twin = flow(summary, "mptcp"), flow(summary, "tcp-twin")
    assert mptcp["status"] == "ok", summary["reasons"]
    hole = event_of(mptcp, "primary blackholed")
    assert hole["recovery_s"] is not None and hole["recovery_s"] <= 5.0, hole
    assert max(goodput_between(mptcp, 5.0, 10.0)) > 0
    assert path_row(hole, "backup0")["share_after"] >= 0.8, hole["paths"]
    assert sum(goodput_between(twin, 6.0, 10.5)) == 0
    assert "state UP" in probe["link"] or ",UP" in probe["link"], probe
    assert "direct-action" in probe["tc"], probe
    assert hole["counters"]["h1"]["SubflowStale"] >= 1


def test_a_trace_is_followed_within_10_percent_where_it_holds_steady(tmp_path: Path):
    model = load_topology_text(f"""
name: {lab_name("t9tr")}
nodes: {{h1: {{}}, h2: {{}}}}
links:
  - {{name: wifi, endpoints: [h1, h2], rate: 20mbit, egress: {{h1: {{trace: {TOPOLOGIES}/traces/wifi.mahimahi}}}}}}
flows:
  - {{name: tcp, src: h1, dst: h2, duration: 16, protocol: tcp}}
""", source=str(tmp_path / "trace.yaml"))
    with running_lab(model, model.name):
        result = run(model, tmp_path)
    tracking = flow(result.summary, "tcp")["trace_tracking"]
    assert tracking["steady_seconds"] >= 6, tracking
    assert tracking["median_error"] <= 0.10, tracking
    # most steady seconds within 10% (a loaded shared host may slow one or two)
    assert tracking["within_10_percent"] >= 2 / 3 * tracking["steady_seconds"], tracking
    traces = result.summary["events"]["traces"]
    assert traces["h1:eth0"]["steps"] == 160
    assert (result.results_dir / "traces" / "wifi.mahimahi").exists()  # the results directory is complete
    assert result.summary["events"]["scheduling"]["trace_only"]["median_ms"] <= 10.0


#: args: OFFSET_US... Waits (up to 120 s) for the run's t0 file in the node, then at t0 + each
#: offset prints '@@' and the eth0 qdiscs (tc -s) and classes.
READ_AT_T0_PLUS = r"""set -u
for _ in $(seq 2400); do f=$(ls /tmp/mptcpdock-run/*/t0 2>/dev/null | head -1); [ -n "$f" ] && [ -s "$f" ] && break; sleep 0.05; done
read -r t0 < "$f"
for offset; do
  left=$(( t0 + offset - $(date +%s%6N) ))
  [ "$left" -gt 0 ] && sleep "$((left / 1000000)).$(printf %06d $((left % 1000000)))"
  echo @@; tc -s qdisc show dev eth0; tc class show dev eth0
done
"""


def test_a_set_event_changes_the_rate_in_place_and_keeps_the_queue(tmp_path: Path):
    model = load_topology_text("""
name: t9-set
nodes: {h1: {}, h2: {}}
links:
  - {name: l, endpoints: [h1, h2], rate: 20mbit, queue: 40, delay: 10ms}
flows:
  - {name: tcp, src: h1, dst: h2, duration: 8, protocol: tcp}
events:
  - {t: 3, link: l, from: h1, set: {rate: 5mbit}}
""", source=str(tmp_path / "set.yaml"))
    model.name = lab_name("t9set")
    seen: dict[str, str] = {}
    with running_lab(model, model.name) as up:
        container = up.state.container("h1")

        def watch() -> None:  # in h1, timed from the run's own t0 (its setup time varies with the load)
            out = docker_api.run_exec(container, ["bash", "-c", READ_AT_T0_PLUS, "read", "2500000", "6000000"]).stdout
            seen.update(zip(("before", "after"), out.split("@@\n")[1:]))
            seen["class"] = seen["after"]

        watcher = threading.Thread(target=watch)
        watcher.start()
        result = run(model, tmp_path)
        watcher.join()
    assert "rate 5Mbit ceil 5Mbit" in seen["class"], seen["class"]
    for when in ("before", "after"):
        assert "qdisc pfifo 10: parent 1:1 limit 40p" in seen[when], seen[when]
    sent = [int(re.search(r"qdisc pfifo 10:.*?\n Sent (\d+) bytes", seen[w], re.S)[1]) for w in ("before", "after")]
    assert sent[1] > sent[0] > 0, sent  # the leaf was changed in place, never re-added (its counters go on)
    item = flow(result.summary, "tcp")
    before = goodput_between(item, 1.0, 2.8)
    assert 16e6 < sum(before) / len(before) < 20e6  # 20 Mbit/s until the event (a loaded host may dip)
    assert 4.5e6 < sum(goodput_between(item, 4.0, 8.0)) / 40 < 5.0e6
    assert item["events"][0]["allowed_bps"] == pytest.approx(5e6 * 1448 / 1514, rel=0.01)


def test_an_endpoint_backup_flip_sends_mp_prio_and_the_monitor_shows_it(tmp_path: Path):
    model = load_topology(FAILOVER)
    model.name = lab_name("t9pr")
    model.events = [Event(t=(3.0,), node="h2", endpoint=EndpointChange("backup0", ("signal",)),
                          label="backup becomes regular")]
    model.flows = [item for item in model.flows if item.protocol == "mptcp"]
    model.flows[0].duration = 7
    model.flows[0].baseline = True  # the baselines run after the lab is put back
    with running_lab(model, model.name):
        result = run(model, tmp_path)
    item = flow(result.summary, "mptcp")
    flip = event_of(item, "backup becomes regular")
    assert any("SF_PRIO" in line for line in flip["subflow_events"]), flip["subflow_events"]
    assert flip["counters"]["h2"]["MPPrioTx"] >= 1 and flip["counters"]["h1"]["MPPrioRx"] >= 1, flip["counters"]
    assert path_row(flip, "backup0")["share_before"] <= 0.05 < 0.3 <= path_row(flip, "backup0")["share_after"]
    assert "ip mptcp endpoint change id 1 nobackup" in (result.results_dir / "events.log").read_text()
    restored = [line.split("\t") for line in (result.results_dir / "nodes" / "h2" / "events.log").read_text().splitlines()
                if line.startswith("restore\t")]
    assert restored and all(fields[4] == "0" for fields in restored), restored
    baselines = [f for f in result.summary["flows"] if f["role"] == "baseline"]
    assert baselines and all(f["status"] == "ok" for f in baselines)
    assert max(int(fields[3]) / 1e6 for fields in restored) < min(f["started_at"] for f in baselines)


def test_a_delay_event_fails_before_start_on_this_kernel_and_creates_nothing(kernel_probe, tmp_path: Path):
    if kernel_probe.netem:
        pytest.skip("this kernel has netem: see tests/test_events_vmhost.py")
    path = tmp_path / "delay.yaml"
    path.write_text(FAILOVER.read_text().replace("name: failover", f"name: {lab_name('t9dl')}")
                    + "  - {t: 9, link: backup, set: {delay: 80ms}}\n")
    with pytest.raises(KernelFeatureError) as caught:
        lab_api.bring_up(load_topology(path), allow_no_impairments=True)
    text = str(caught.value)
    assert text.startswith(f"{path}:30: events[2].set.delay: backup set delay=80ms: the Docker host's kernel"), text
    assert "no netem" in text and "(fix: " in text
    assert not docker_api.lab_containers(lab_name("t9dl")) and not docker_api.lab_networks(lab_name("t9dl"))


@pytest.mark.parametrize("event, message", [
    ("{t: -2, link: primary, state: down}", "events[2].t: t=-2 s is in the past"),
    ("{t: 3, link: wlan, state: down}", "events[2].link: unknown link 'wlan'"),
    ("{t: 40, link: primary, state: up}", "events[2].t: t=40 s is after the run ends (t=18 s"),
])
def test_bad_events_stop_the_cli_before_anything_starts(tmp_path: Path, event: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(FAILOVER.read_text().replace("name: failover", f"name: {lab_name('t9bad')}") + f"  - {event}\n")
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(path), "--results", str(tmp_path / "results")])
    assert result.exit_code != 0
    assert f"{path}:30: {message}" in result.output, result.output
    assert not (tmp_path / "results").exists()
    assert not docker_api.lab_containers(lab_name("t9bad"))

