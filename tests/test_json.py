"""``--json`` on every command that reports (docs/json.md): one document on stdout that
parses, starts with ``schema``, and says what the table says; progress, warnings and the
checklist on stderr. The last tests bring a real lab up (Docker) and run traffic on it, and
check what ``run`` prints (the checklist before traffic, the after-run comparison)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conftest import ROOT, TOPOLOGIES
from mptcpdock.cli import main
from mptcpdock.experiment.runner import run_experiment
from mptcpdock.report.records import SCHEMA as SUMMARY_SCHEMA
from mptcpdock.runtime import docker_api, lab as lab_api
from mptcpdock.topology.loader import load_topology

EX1 = TOPOLOGIES / "mptcp-default-configuration.yaml"


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def document(*args: str) -> dict:
    """The command's stdout, which must be one JSON object starting with 'schema'."""
    result = invoke(*args, "--json")
    data = json.loads(result.stdout)  # raises if anything else is on stdout
    assert isinstance(data, dict) and next(iter(data)) == "schema" and data["schema"] == 1, data
    return data


def test_plan_json_holds_every_command_plan_prints() -> None:
    data = document("plan", "ex1")
    assert data["lab"] == "ex1" and data["source"].endswith("mptcp-default-configuration.yaml")
    printed = [line.split(None, 1) for line in invoke("plan", "ex1").stdout.splitlines()]
    commands = [(node, text) for node, text in printed if not text.startswith("#")]
    assert commands == [(node, line) for node, entry in data["nodes"].items() for line in entry["commands"]]
    assert data["nodes"]["r1"]["kind"] == "router"
    h2 = {row["interface"]: row for row in data["interfaces"] if row["node"] == "h2"}
    assert h2["eth2b"]["address"] == "192.168.11.2" and h2["eth2b"]["prefix_length"] == 24
    assert h2["eth2b"]["asked"] == {"rate_bps": 10_000_000, "delay_us": 10_000, "jitter_us": None, "loss_percent": None}
    assert h2["eth2b"]["queue"]["packets"] > 0 and "BDP" in h2["eth2b"]["queue"]["reason"]


def test_plan_json_without_impairments() -> None:
    data = document("plan", str(EX1), "--no-impairments")
    assert data["impairments_dropped"] is True
    assert all(row["shaping"]["delay_us"] is None for row in data["interfaces"])
    assert not any("netem" in line for entry in data["nodes"].values() for line in entry["commands"])


def test_routes_json_of_a_topology_file() -> None:
    data = document("routes", str(TOPOLOGIES / "mptcp-mega-dumbbell-auto.yaml"))
    assert data["lab"] is None and set(data["nodes"]) >= {"h1", "h6", "r1"}
    h6 = data["nodes"]["h6"]
    assert h6["kernel"] is None
    assert {rule["from"] for rule in h6["rules"]} >= {"10.0.13.2", "10.0.14.2", "10.0.15.2"}
    assert any(route["origin"] == "source" and route["table"] != "main" for route in h6["routes"])


def test_examples_and_image_build_dry_run_json() -> None:
    examples = document("examples")
    assert {"ex1", "ex2", "ex3", "ex3auto"} <= {item["name"] for item in examples["topologies"]}
    planned = document("image", "build", "--dry-run")
    assert planned["built"] is False and planned["files"] == ["Dockerfile", "bookworm.args", "install-packages.sh", "mesh/mesh.c"]
    assert planned["buildargs"]["SUITE"] == "trixie"
    assert Path(planned["context"]) == ROOT / "images" / "node"


def test_report_json_is_the_summary(tmp_path: Path) -> None:
    shutil.copy(ROOT / "tests" / "data" / "summary-ex1-baseline.json", tmp_path / "summary.json")
    data = document("report", str(tmp_path), "--no-plots")
    assert data["schema"] == SUMMARY_SCHEMA
    written = json.loads((ROOT / "tests" / "data" / "summary-ex1-baseline.json").read_text())  # an older file,
    assert {key: value for key, value in data.items() if key != "schema"} == written  # without "schema" yet
    assert [flow["name"] for flow in data["flows"]] == ["h1-h2", "h1-h2.tcp1", "h1-h2.tcp2"]


def test_a_failing_json_command_writes_nothing_on_stdout() -> None:
    result = CliRunner().invoke(main, ["plan", "no-such-topology", "--json"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: no-such-topology: no such file")


# -- on a real lab --------------------------------------------------------------------------------

LAB = "t12-json"


@pytest.fixture(scope="module")
def lab_up(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path_factory.getbasetemp() / "state"))
        lab_api.tear_down(LAB)
        result = CliRunner().invoke(main, ["up", "ex1", "--name", LAB, "--allow-no-impairments", "--json"])
        try:
            yield result
        finally:
            lab_api.tear_down(LAB)


@pytest.mark.docker
def test_up_status_and_routes_json_on_a_running_lab(lab_up: Result) -> None:
    assert lab_up.exit_code == 0, lab_up.output
    up = json.loads(lab_up.stdout)
    assert up["schema"] == 1 and up["lab"] == LAB
    assert up["nodes"]["h1"]["container"] == f"{LAB}-h1" and up["networks"].keys() == {"h1-r1", "r1-r2", "r2-h2",
                                                                                          "r2-h2-2"}
    assert "nodes: 4 of 4 configured" in lab_up.stderr  # progress went to stderr
    if up["impairments_dropped"]:
        assert up["warnings"] and "WITHOUT the delay" in lab_up.stderr
    status = document("status", LAB)
    assert status["interfaces"] == up["interfaces"] and status["nodes"] == up["nodes"]
    labs = document("status")["labs"]
    mine = next(item for item in labs if item["lab"] == LAB)
    assert mine["containers"] == 4 and mine["links"] == 4
    routes = document("routes", "--lab", LAB)
    assert routes["lab"] == LAB
    assert all(node["kernel"]["matches"] for node in routes["nodes"].values()), routes
    assert "192.168.11.0/24 dev eth2b proto kernel scope link src 192.168.11.2" in routes["nodes"]["h2"]["kernel"]["text"]
    picture = invoke("graph", LAB).stdout  # a running lab's picture: as it was brought up
    assert f"%% lab {LAB}:" in picture and "eth2b 192.168.11.2/24 [signal]" in picture
    assert ("10 ms (not applied)" in picture) == up["impairments_dropped"]


@pytest.mark.docker
@pytest.mark.slow
def test_run_json_prints_the_summary_and_keeps_the_checklist_on_stderr(lab_up: Result, tmp_path: Path) -> None:
    result = invoke("run", "--lab", LAB, "--duration", "3", "--results", str(tmp_path), "--no-plots", "--json")
    data = json.loads(result.stdout)
    assert data["schema"] == SUMMARY_SCHEMA and data["lab"] == LAB
    assert data == json.loads(Path(data["results_dir"], "summary.json").read_text())
    flow = data["flows"][0]
    assert flow["status"] == "ok" and flow["goodput_bps"] > 5e6
    assert "MPTCP checklist (before traffic)" in result.stderr and "After the run:" in result.stderr
    report = document("report", data["results_dir"], "--no-plots")
    assert report["flows"][0]["goodput_bps"] == flow["goodput_bps"]


@pytest.mark.docker
@pytest.mark.slow
def test_run_prints_the_checklist_before_traffic_and_the_after_run_line(lab_up: Result, tmp_path: Path) -> None:
    result = invoke("run", "--lab", LAB, "--duration", "3", "--results", str(tmp_path))
    text = result.stdout
    before, after = text.index("MPTCP checklist (before traffic)"), text.index("After the run:")
    table = text.index("subflows (expected)")
    assert before < after < table
    assert "  [PASS] a signal endpoint on the destination: h2: eth2b [signal]" in text  # brackets kept
    assert "  h1-h2: 2 established, 2 expected (as expected; monitor on h1" in text
    results = Path(text.split("results: ")[1].split()[0])
    picture = (results / "plots" / "topology.png").read_bytes()  # every run draws its lab
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 20_000
    assert "topology.png" in json.loads((results / "summary.json").read_text())["plots"]
    quiet = invoke("run", "--lab", LAB, "--duration", "3", "--results", str(tmp_path), "--no-plots", "-q")
    assert "MPTCP checklist" not in quiet.stdout and "After the run" not in quiet.stdout and quiet.stderr == ""
    assert "subflows (expected)" in quiet.stdout


@pytest.mark.docker
@pytest.mark.slow
def test_the_checklist_is_shown_before_any_process_runs_in_the_nodes(lab_up: Result, tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def before_traffic(checklist) -> None:
        import time
        seen["at"] = time.time()
        seen["processes"] = {node: docker_api.run_exec(f"{LAB}-{node}", ["ps", "-eo", "comm="]).stdout.split()
                             for node in ("h1", "h2")}
        seen["flows"] = [item.flow for item in checklist.flows]

    model = load_topology(EX1)
    model.name = LAB
    result = run_experiment(topology=model, duration=2, results_root=tmp_path, plots=False,
                            before_traffic=before_traffic)
    assert seen["flows"] == ["h1-h2"]
    for node, processes in seen["processes"].items():  # type: ignore[union-attr]
        assert not {"iperf3", "ip", "ss"} & set(processes), (node, processes)
    started = result.summary.flow("h1-h2").started_at
    assert started is not None and started > seen["at"]  # type: ignore[operator]


@pytest.mark.docker
def test_down_json_counts_what_it_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path / "state"))
    name = "t12-down"
    lab_api.tear_down(name)
    invoke("up", "ex1", "--name", name, "--allow-no-impairments", "-q")
    removed = document("down", name)
    assert removed == {"schema": 1, "lab": name, "removed": {"containers": 4, "networks": 4}}
    assert document("down", name)["removed"] == {"containers": 0, "networks": 0}  # idempotent
    assert docker_api.lab_containers(name) == []
