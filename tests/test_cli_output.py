"""What a user reads: messages in full (no markup eaten), progress lines, the plot of iperf3's
intervals (pure: no Docker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mptcpdock.cli import main
from mptcpdock.cli import console
from mptcpdock.errors import MptcpdockError
from mptcpdock.report.plots import draw_throughput, full_intervals
from mptcpdock.report.records import FlowSummary, Summary
from mptcpdock.runtime.progress import Step

BRACKETS = "fix: use [signal] or [subflow, fullmesh]; [bold]not bold[/] :smile: [link=x]y[/link]"


def _plan(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output  # one line
    return lines[0]


def test_signal_fullmesh_message_keeps_its_brackets(tmp_path: Path) -> None:
    line = _plan(tmp_path, "name: t1\nnodes:\n  h1:\n    mptcp:\n      endpoints: {eth0: [signal, fullmesh]}\n"
                           "  h2: {}\nlinks:\n  - {endpoints: [h1, h2]}\n")
    assert line == (f"error: {tmp_path / 'bad.yaml'}:5: nodes.h1.mptcp.endpoints[0].flags: the kernel rejects signal "
                    "together with fullmesh (fix: use [signal] or [subflow, fullmesh])")


def test_three_ended_link_message_keeps_its_brackets(tmp_path: Path) -> None:
    line = _plan(tmp_path, "name: t2\nnodes: {h1: {}, h2: {}, h3: {}}\nlinks:\n  - {endpoints: [h1, h2, h3]}\n")
    assert line.endswith("links[0].endpoints: a link joins exactly two nodes, got 3 "
                         "(fix: write 'endpoints: [h1, r1]')"), line


def test_top_level_list_message_names_the_fix(tmp_path: Path) -> None:
    line = _plan(tmp_path, "- name: t3\n- nodes: {}\n")
    assert line.startswith(f"error: {tmp_path / 'bad.yaml'}:1: a topology file holds a mapping"), line
    assert "got a list" in line and "(fix: write the file as 'key: value' lines" in line, line


def test_every_console_path_prints_brackets_as_written(capsys: pytest.CaptureFixture) -> None:
    console.error(BRACKETS)
    console.warning(BRACKETS)
    console.out.print(BRACKETS)
    console.out.print(console.styled(("styled " + BRACKETS, "bold")))
    with console.Reporter(terminal=False) as progress:
        progress(BRACKETS)
        progress(Step("phase [x]", 1, 1, "things", detail=BRACKETS))
    with console.Reporter(terminal=True) as progress:  # the bars' own lines and fields
        progress(BRACKETS)
        progress(Step("bar [x]", 1, 2, "things", detail="[detail]"))
    captured = capsys.readouterr()
    assert captured.out.count(BRACKETS) == 2, captured.out
    assert f"error: {BRACKETS}" in captured.err and f"warning: {BRACKETS}" in captured.err
    assert f"  {BRACKETS}" in captured.err
    assert f"  phase [x]: 1 of 1 things; {BRACKETS} (" in captured.err
    assert "bar [x]" in captured.err and "[detail]" in captured.err


def test_an_error_raised_in_a_command_prints_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a, **_k):
        raise MptcpdockError(BRACKETS)

    monkeypatch.setattr("mptcpdock.cli.lab.make_plan", boom)
    result = CliRunner().invoke(main, ["plan", str(Path(__file__).parent.parent / "topologies" /
                                                 "mptcp-default-configuration.yaml")])
    assert result.exit_code == 1
    assert result.output == f"error: {BRACKETS}\n"


def test_off_a_terminal_one_line_per_phase(capsys: pytest.CaptureFixture) -> None:
    with console.Reporter(terminal=False) as progress:
        for second in range(21):
            progress(Step("flows", second, 20, "s", detail="running: h1-h2"))
        progress("writing the summary")
        progress(Step("teardown", 1, 3, "containers removed"))  # never finishes: printed at the end
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("  flows: 20 of 20 s; running: h1-h2 (")
    assert lines[1] == "  writing the summary"
    assert lines[2].startswith("  teardown: 1 of 3 containers removed (stopped after ")


def test_quiet_reporter_prints_nothing(capsys: pytest.CaptureFixture) -> None:
    with console.Reporter(quiet=True) as progress:
        progress("x")
        progress(Step("y", 1, 1))
    assert capsys.readouterr().err == ""


def test_partial_last_interval_is_left_out_and_said_so(tmp_path: Path) -> None:
    # the intervals of a real run (results/ex1-20261201-194402): the last one lasted 14 ms
    points = [[1.044, 18538261.2], [2.044, 18622004.3], [3.044, 18827946.1], [4.044, 18823966.3],
              [4.058, 28333016.2]]
    edges, rates, dropped = full_intervals(points)
    assert edges == pytest.approx([0.044, 1.044, 2.044, 3.044, 4.044])
    assert max(rates) < 19 and len(rates) == 4
    assert dropped == [pytest.approx(0.014)]
    summary = Summary(flows=[FlowSummary(name="h1-h2", protocol="mptcp", intervals=[tuple(p) for p in points])])
    path = draw_throughput(tmp_path / "throughput.png", summary)
    assert path is not None and path.stat().st_size > 10_000


def test_a_gap_is_not_bridged() -> None:
    edges, rates, _ = full_intervals([[1.0, 1e6], [1.01, 9e6], [2.0, 2e6], [3.0, 3e6]])
    assert rates[0] == 1 and rates[-2:] == [2, 3]
    assert edges == pytest.approx([0.01, 1.0, 1.01, 2.0, 3.0])  # the first lasts the usual 0.99 s
    assert rates[1] != rates[1]  # NaN: nothing drawn between 1.0 and 1.01
