"""``mptcpdock run`` and ``mptcpdock report``: run a lab's flows, and reread a results directory."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import MptcpdockError
from ..experiment.runner import run_experiment
from ..plan.checklist import Checklist, render_after_run, render_checklist
from ..report.plots import draw_all
from ..report.summary import load_or_build_summary, write_summary
from ..report.table import render_table
from ..runtime import lab as lab_api
from ..topology.loader import load_topology
from .console import checklist_text, err, out, print_json, reporter, warning


@click.command("run")
@click.argument("topology", required=False, type=click.Path(dir_okay=False))
@click.option("--lab", "lab_name", help="The lab to run on (default: the topology's name, or the only lab up).")
@click.option("--duration", type=float, help="Every flow lasts this many seconds (iperf3 rounds up to whole seconds).")
@click.option("--results", "results_root", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Where results/<lab>-<timestamp>/ goes.")
@click.option("--allow-no-impairments", is_flag=True,
              help="When the lab must be brought up and the kernel has no netem, proceed with rates only.")
@click.option("--baseline", is_flag=True,
              help="After the flows, measure single-path TCP over each path of every MPTCP flow, one at a time.")
@click.option("--sample-period", type=click.FloatRange(0.1, 10), default=0.5, show_default=True,
              help="Seconds between ss / interface counter samples.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--capture", "capture", multiple=True, metavar="NODE[:IFACE]",
              help="Record packets there with tcpdump (repeatable; NODE alone: all its interfaces), besides the "
                   "link ends with 'capture: true'. pcaps go to captures/.")
@click.option("--snaplen", type=int, help="Bytes kept per captured packet (default: the topology's snaplen, 200).")
@click.option("-q", "--quiet", is_flag=True,
              help="No checklist, no after-run comparison and no progress: the table and the results directory only.")
@click.option("--json", "as_json", is_flag=True,
              help="The run's summary (summary.json) as the one document on stdout; the checklist and progress "
                   "go to stderr (docs/json.md).")
def run_command(topology: str | None, lab_name: str | None, duration: float | None, results_root: str,
                allow_no_impairments: bool, baseline: bool, sample_period: float, no_plots: bool,
                capture: tuple[str, ...], snaplen: int | None, quiet: bool, as_json: bool) -> None:
    """Run the flows of TOPOLOGY (a file or a bundled name; else the running lab's) and collect
    the results.

    Prints NeST's MPTCP checklist before any traffic starts, and after the run the subflows
    each MPTCP flow established against those it should have (both are in checklist.txt)."""
    if duration is not None and duration <= 0:
        raise MptcpdockError(f"--duration {duration:g}: give a positive number of seconds")
    model = load_topology(topology) if topology else None
    lab_api.docker_reachable()

    shown = err if as_json else out  # with --json, stdout holds the document alone

    def show_checklist(checklist: Checklist) -> None:
        if not quiet:
            shown.print(checklist_text(render_checklist(checklist)))
            shown.print()

    with reporter(quiet) as progress:
        result = run_experiment(lab_name, model, duration=duration, results_root=Path(results_root),
                                progress=progress, allow_no_impairments=allow_no_impairments or bool(model and
                                model.allow_no_impairments), baseline=baseline, sample_period=sample_period,
                                plots=not no_plots, capture=capture, snaplen=snaplen, before_traffic=show_checklist)
    if not quiet and result.checklist is not None and result.checklist.flows:
        outcomes = {flow.name: flow.subflows.to_dict() for flow in result.summary.flows}
        shown.print(checklist_text(render_after_run(result.checklist, outcomes)))
        shown.print()
    if as_json:
        print_json(result.summary.to_dict())
    else:
        click.echo(render_table(result.summary))
        out.print(f"\nresults: {result.results_dir}")
    if result.incomplete:
        warning("incomplete: " + "; ".join(result.summary.reasons))
        if any("interrupted" in reason for reason in result.summary.reasons):
            raise SystemExit(130)


@click.command("report")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--no-plots", is_flag=True, help="Do not redraw the plots.")
@click.option("--json", "as_json", is_flag=True, help="The summary (summary.json) as one JSON document on stdout.")
def report_command(results_dir: str, no_plots: bool, as_json: bool) -> None:
    """Reprint the summary table of RESULTS_DIR and redraw its plots."""
    path = Path(results_dir)
    summary = load_or_build_summary(path)
    if not no_plots:
        summary.plots = [p.name for p in draw_all(path, summary)]
        write_summary(path, summary)
    if as_json:
        print_json(summary.to_dict())
        return
    click.echo(render_table(summary))
    if not no_plots:
        out.print(f"\nplots: {', '.join(summary.plots or [])} in {path / 'plots'}")
