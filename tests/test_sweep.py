"""mptcpdock sweep without Docker: --set parsing, points, statistics, sweep.json/csv, the plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mptcpdock.errors import MptcpdockError
from mptcpdock.experiment.sweep import _network, apply_values, parse_set
from mptcpdock.report.records import FlowSummary, PathStats, SubflowOutcome, Summary
from mptcpdock.report.sweep import SweepPoint, SweepSummary, draw_sweep, point_stats, stat, write_sweep
from mptcpdock.topology.loader import load_topology

EX1 = Path(__file__).resolve().parent.parent / "topologies" / "mptcp-default-configuration.yaml"


def test_set_paths_address_links_flows_and_nodes():
    model = load_topology(EX1)
    point = apply_values(model, {"links.r2-h2-2.rate": "5mbit", "flows.h1-h2.congestion": "reno",
                                 "nodes.h1.mptcp.limits.subflows": "2"})
    assert point.link("r2-h2-2").shaping.rate == 5_000_000 and point.link("r2-h2").shaping.rate == 10_000_000
    assert point.flows[0].congestion == "reno" and point.nodes["h1"].mptcp.subflows == 2
    assert _network(point) != _network(apply_values(model, {}))  # limits are the network
    assert _network(apply_values(model, {"links.r2-h2-2.rate": "5mbit"})) == _network(apply_values(model, {}))
    assert parse_set("links.r2-h2-2.delay=5ms,50ms") == ("links.r2-h2-2.delay", ["5ms", "50ms"])


@pytest.mark.parametrize("text, message", [
    ("links.r2-h2-9.rate=5mbit", "--set links.r2-h2-9.rate: no link 'r2-h2-9' (there are: h1-r1, r1-r2, r2-h2, r2-h2-2)"),
    ("links.r2-h2-2.rate=fast", "links[3].rate: 'fast' is not a rate"),
    ("links.r2-h2-2.colour=red", "unknown key"),
    ("flows.x.duration=5", "no flow 'x'"),
])
def test_bad_set_values_are_one_line_before_anything_starts(text: str, message: str):
    with pytest.raises(MptcpdockError) as info:
        apply_values(load_topology(EX1), dict([tuple(text.split("=", 1))]))
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)
    with pytest.raises(MptcpdockError, match="write PATH=V1,V2"):
        parse_set("links.r2-h2.rate")


def _summary(goodput: float, share_a: float) -> Summary:
    paths = [PathStats(receiver_interface="eth2a", share=share_a), PathStats(receiver_interface="eth2b", share=1 - share_a)]
    return Summary(flows=[FlowSummary(name="h1-h2", status="ok", goodput_bps=goodput, role="flow", paths=paths,
                                      subflows=SubflowOutcome(established=2))])


def test_statistics_csv_json_and_plot(tmp_path: Path):
    assert stat([1.0, 2.0, 3.0]).ci95 == pytest.approx(4.303 * 1.0 / 3 ** 0.5)
    assert stat([5.0]).ci95 is None and stat([]).n == 0
    points = [SweepPoint(index=0, values={"links.r2-h2-2.rate": "5mbit"}, lab="up",
                         flows=point_stats([_summary(14e6, 0.66), _summary(15e6, 0.67)])),
              SweepPoint(index=1, values={"links.r2-h2-2.rate": "10mbit"}, lab="reshaped",
                         flows=point_stats([_summary(18e6, 0.5), _summary(19e6, 0.51)]))]
    summary = SweepSummary(topology="ex1", parameters={"links.r2-h2-2.rate": ["5mbit", "10mbit"]}, repeat=2,
                           points=points, complete=True)
    write_sweep(tmp_path, summary)
    again = SweepSummary.from_dict(json.loads((tmp_path / "sweep.json").read_text()))
    assert again == summary and again.points[0].flows["h1-h2"].goodput_bps.mean == 14.5e6
    rows = list(csv.DictReader(open(tmp_path / "sweep.csv")))
    goodput = [row for row in rows if row["figure"] == "goodput_bps"]
    assert [float(row["mean"]) for row in goodput] == [14.5e6, 18.5e6]
    assert {row["figure"] for row in rows} == {"goodput_bps", "subflows", "share:eth2a", "share:eth2b"}
    assert draw_sweep(tmp_path, summary).stat().st_size > 5000


def test_ctrl_c_keeps_the_finished_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Ctrl-C in the third run: sweep.json keeps the two that finished (no Docker: the run is faked)."""
    from mptcpdock.experiment import sweep as sweep_module
    from mptcpdock.experiment.runner import RunResult
    calls = []

    def fake_run(**kwargs):
        calls.append(kwargs["topology"].link("r2-h2-2").shaping.rate)
        if len(calls) == 3:
            raise KeyboardInterrupt
        folder = kwargs["results_root"] / f"run{len(calls)}"
        folder.mkdir(parents=True)
        return RunResult(folder, _summary(10e6 + len(calls), 0.5), False)

    monkeypatch.setattr(sweep_module, "run_experiment", fake_run)
    monkeypatch.setattr(sweep_module, "_prepare_lab", lambda *args: ("reused", []))
    result = sweep_module.run_sweep(load_topology(EX1), [("links.r2-h2-2.rate", ["5mbit", "10mbit"])], repeat=2,
                                    results_root=tmp_path, plots=False)
    saved = json.loads((result.folder / "sweep.json").read_text())
    assert calls == [5_000_000, 5_000_000, 10_000_000]
    assert not saved["complete"] and "interrupted (Ctrl-C)" in saved["reasons"][0]
    assert [len(point["runs"]) for point in saved["points"]] == [2, 0]
    assert saved["points"][0]["flows"]["h1-h2"]["goodput_bps"]["values"] == [10e6 + 1, 10e6 + 2]
