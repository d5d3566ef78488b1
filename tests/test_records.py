"""summary.json as typed records: the same keys in the same order, read back as the same
records (pure, no Docker).

``data/summary-ex1-baseline.json`` was written by ``mptcpdock run --baseline --duration 4``
on ex.1 before the records existed (the dict-built summary): every key it has must come
out of the records again, in its order, with ``"schema"`` added first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mptcpdock.report.records import (SCHEMA, Baseline, Connection, FlowSummary, NodeCounters, PathStats,
                                      SubflowOutcome, Summary)
from mptcpdock.report.table import render_table

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def written() -> dict:
    return json.loads((DATA / "summary-ex1-baseline.json").read_text())


def test_a_summary_written_before_the_records_reads_back_key_for_key(written: dict) -> None:
    summary = Summary.from_dict(written)
    assert summary.schema == SCHEMA == 1
    out = summary.to_dict()
    assert out == {"schema": 1, **written}
    assert list(out) == ["schema", *written]
    for ours, theirs in zip(out["flows"], written["flows"]):
        assert list(ours) == list(theirs)
        assert list(ours["subflows"]) == list(theirs["subflows"])
        assert [list(path) for path in ours["paths"]] == [list(path) for path in theirs["paths"]]


def test_records_are_typed_all_the_way_down(written: dict) -> None:
    summary = Summary.from_dict(written)
    mptcp = summary.flow("h1-h2")
    assert isinstance(mptcp, FlowSummary) and isinstance(mptcp.subflows, SubflowOutcome)
    assert isinstance(mptcp.subflows.connections[0], Connection)
    assert mptcp.subflows.connections[0].pairs[0] == ("10.0.0.1", "192.168.10.2")
    assert isinstance(mptcp.paths[0], PathStats) and mptcp.paths[0].carried > 0
    assert isinstance(mptcp.receiver_interfaces, NodeCounters) and mptcp.receiver_interfaces.node == "h2"
    assert isinstance(mptcp.baseline, Baseline) and mptcp.baseline.flows == ["h1-h2.tcp1", "h1-h2.tcp2"]
    assert summary.monitors["h2"].requested and not summary.monitors["h1"].requested
    assert summary.plots == ["throughput.png", "paths.png", "subflows.png"]
    with pytest.raises(KeyError, match="no flow 'h9'"):
        summary.flow("h9")


def test_json_round_trip_is_exact(written: dict) -> None:
    text = Summary.from_dict(written).to_json()
    assert Summary.from_json(text).to_json() == text
    assert text == json.dumps({"schema": 1, **written}, indent=2) + "\n"


def test_optional_keys_appear_only_when_set() -> None:
    flow = FlowSummary(name="f", protocol="tcp", status="ok")
    data = flow.to_dict()
    assert "baseline" not in data and data["receiver_interfaces"] == {}
    assert "established_per_connection" not in data["subflows"]
    assert FlowSummary.from_dict(data) == flow
    summary = Summary(flows=[flow])
    assert "plots" not in summary.to_dict()
    summary.plots = ["throughput.png"]
    assert summary.to_dict()["plots"] == ["throughput.png"]


def test_a_partial_summary_reads_with_defaults_and_renders() -> None:
    summary = Summary.from_dict({"flows": [{"name": "f", "protocol": "mptcp", "status": "failed",
                                            "subflows": {"expected": 2}}]})
    assert summary.flows[0].subflows.established is None and summary.flows[0].paths == []
    assert "f [failed]" in render_table(summary) and "? (2)" in render_table(summary)
