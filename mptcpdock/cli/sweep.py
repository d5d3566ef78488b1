"""``mptcpdock sweep``: a grid of values, each point repeated, with means and confidence intervals."""

from __future__ import annotations

from pathlib import Path

import click
from tabulate import tabulate

from ..experiment.sweep import parse_set, run_sweep
from ..report.sweep import SweepSummary
from ..runtime import lab as lab_api
from ..topology.loader import load_topology
from .console import out, print_json, reporter, warning


def _mbit(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}"


def render_sweep(summary: SweepSummary) -> str:
    rows = []
    for point in summary.points:
        for name, flow in point.flows.items():
            goodput = flow.goodput_bps
            ci = f" ± {_mbit(goodput.ci95)}" if goodput.ci95 is not None else ""
            shares = ", ".join(f"{iface} {share.mean * 100:.0f}%" for iface, share in flow.path_shares.items()
                               if share.mean is not None)
            rows.append([point.index, ", ".join(f"{k}={v}" for k, v in point.values.items()), name,
                         f"{_mbit(goodput.mean)}{ci}", goodput.n,
                         "-" if flow.subflows.mean is None else f"{flow.subflows.mean:.1f}", shares or "-", point.lab])
    return tabulate(rows, headers=["point", "values", "flow", "goodput Mbit/s (95% CI)", "runs", "subflows",
                                   "path shares", "lab"])


@click.command("sweep")
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, required=True, metavar="PATH=V1,V2,...",
              help="A parameter and its values, e.g. links.r2-h2-2.rate=5mbit,10mbit; several make a grid.")
@click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True, help="Runs per point.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Every flow lasts this many seconds.")
@click.option("--results", "results_root", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Where results/<lab>-sweep-<timestamp>/ goes.")
@click.option("--allow-no-impairments", is_flag=True,
              help="On a kernel without netem, run with rates only (delay/loss dropped).")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots (of the runs and of the sweep).")
@click.option("--json", "as_json", is_flag=True,
              help="Print sweep.json instead of the table: one JSON document on stdout (docs/json.md).")
def sweep_command(topology: str, sets: tuple[str, ...], repeat: int, duration: float | None, results_root: str,
                  allow_no_impairments: bool, no_plots: bool, as_json: bool) -> None:
    """Run TOPOLOGY once per point of the --set grid, --repeat times each: sweep.json, sweep.csv,
    plots/sweep.png (mean goodput with 95% confidence intervals). The lab is kept (shaping changed
    in place) where only shaping or flows change, brought up anew where the network changes."""
    parsed = [parse_set(item) for item in sets]
    model = load_topology(topology)
    lab_api.docker_reachable()
    with reporter() as progress:
        result = run_sweep(model, parsed, repeat=repeat, results_root=Path(results_root), duration=duration,
                           allow_no_impairments=allow_no_impairments, progress=progress, plots=not no_plots)
    if as_json:
        print_json(result.summary.to_dict())
    else:
        click.echo(render_sweep(result.summary))
        kept = sum(1 for point in result.summary.points if point.lab in ("reused", "reshaped"))
        out.print(f"\nsweep: {result.folder} ({len(result.summary.points)} point(s); the lab was kept for {kept}, "
                  f"shaping changed in place where it differed)")
    if not result.summary.complete:
        warning("incomplete: " + "; ".join(result.summary.reasons))
        raise SystemExit(130)
