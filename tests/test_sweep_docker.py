"""mptcpdock sweep on real containers: a rate sweep on ex.1 (this kernel has no netem)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from mptcpdock.cli import main
from mptcpdock.report.records import Summary
from mptcpdock.runtime import lab as lab_api

from conftest import TOPOLOGIES

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_rate_sweep_repeats_each_point_reuses_the_lab_and_its_numbers_are_the_runs(tmp_path: Path):
    text = (TOPOLOGIES / "mptcp-default-configuration.yaml").read_text().replace("name: ex1", "name: t10sweep")
    topology = tmp_path / "ex1.yaml"
    topology.write_text(text)
    lab_api.tear_down("t10sweep")
    try:
        result = CliRunner().invoke(main, ["sweep", str(topology), "--set", "links.r2-h2-2.rate=5mbit,10mbit",
                                           "--repeat", "2", "--duration", "5", "--results", str(tmp_path / "results"),
                                           "--allow-no-impairments"])
    finally:
        lab_api.tear_down("t10sweep")
    print(result.output)
    assert result.exit_code == 0, result.output + str(result.exception)
    folder = next((tmp_path / "results").glob("t10sweep-sweep-*"))
    sweep = json.loads((folder / "sweep.json").read_text())
    assert sweep["complete"] and [len(p["runs"]) for p in sweep["points"]] == [2, 2]
    assert [p["lab"] for p in sweep["points"]] == ["up", "reshaped"]
    assert any("class change dev etr2c" in change and "rate 10000000bit" in change
               for change in sweep["points"][1]["changes"]), sweep["points"][1]["changes"]
    means = []
    for point in sweep["points"]:
        runs = [Summary.from_json((folder / run["results_dir"] / "summary.json").read_text()) for run in point["runs"]]
        goodputs = [run.flows[0].goodput_bps for run in runs]
        figure = point["flows"][runs[0].flows[0].name]["goodput_bps"]
        assert figure["values"] == goodputs and figure["mean"] == pytest.approx(statistics.fmean(goodputs))
        assert figure["stdev"] == pytest.approx(statistics.stdev(goodputs))
        assert figure["ci95"] == pytest.approx(12.706 * statistics.stdev(goodputs) / 2 ** 0.5)
        means.append(figure["mean"])
    print(f"mean goodput: 5mbit {means[0] / 1e6:.2f}, 10mbit {means[1] / 1e6:.2f} Mbit/s")
    assert 12e6 < means[0] < 15.5e6 and means[1] > means[0] + 2.5e6  # 10 + 5 against 10 + 10 Mbit/s
    assert (folder / "sweep.csv").read_text().count("goodput_bps") == 2
    assert (folder / "plots" / "sweep.png").stat().st_size > 5000
    assert "the lab was kept for 1" in result.output
