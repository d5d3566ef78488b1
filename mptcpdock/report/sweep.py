"""A sweep's results: per point (one combination of the swept values) and flow, the mean,
standard deviation and 95% confidence interval of goodput, subflows and path shares over the
point's repetitions, computed from each run's own summary.json; ``sweep.json``,
``sweep.csv`` and ``plots/sweep.png`` (goodput against the first swept parameter, with
the confidence intervals as error bars, one line per flow and value of the others)."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .plots import _pyplot, _save
from .records import Record, Summary

#: Student's t, two-sided 95%, by degrees of freedom (n - 1); above 30: 1.96.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
       20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
       29: 2.045, 30: 2.042}


@dataclass
class Stat(Record):
    n: int = 0
    mean: float | None = None
    stdev: float | None = None  # sample standard deviation (n - 1); None for n < 2
    ci95: float | None = None  # half width: mean +- ci95 (Student's t); None for n < 2
    values: list[float] = field(default_factory=list)


def stat(values: list[float]) -> Stat:
    if not values:
        return Stat()
    mean = statistics.fmean(values)
    if len(values) < 2:
        return Stat(n=1, mean=mean, values=list(values))
    stdev = statistics.stdev(values)
    return Stat(n=len(values), mean=mean, stdev=stdev, ci95=T95.get(len(values) - 1, 1.96) * stdev / math.sqrt(len(values)),
                values=list(values))


@dataclass
class FlowStats(Record):
    goodput_bps: Stat = field(default_factory=Stat)
    subflows: Stat = field(default_factory=Stat)
    path_shares: dict[str, Stat] = field(default_factory=dict)  # receiver interface -> share of the flow's bytes


@dataclass
class SweepRun(Record):
    repetition: int = 0
    results_dir: str = ""  # relative to the sweep directory
    incomplete: bool = False


@dataclass
class SweepPoint(Record):
    index: int = 0
    values: dict[str, str] = field(default_factory=dict)  # PATH -> value
    lab: str = ""  # what the point did to the lab: "up" (anew), "reshaped" (tc ... change in place), "reused"
    changes: list[str] = field(default_factory=list)  # "node: tc line" applied in place for it
    runs: list[SweepRun] = field(default_factory=list)
    flows: dict[str, FlowStats] = field(default_factory=dict)


#: The version of sweep.json's layout, written as its ``"schema"`` key (raised when a key
#: changes meaning or goes away).
SWEEP_SCHEMA = 1


@dataclass
class SweepSummary(Record):
    schema: int = SWEEP_SCHEMA  # the layout's version (docs/json.md): first, as in every --json document
    topology: str = ""
    parameters: dict[str, list[str]] = field(default_factory=dict)
    repeat: int = 1
    points: list[SweepPoint] = field(default_factory=list)
    complete: bool = False  # every point ran every repetition
    reasons: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)


def point_stats(summaries: list[Summary]) -> dict[str, FlowStats]:
    """Per flow (not baselines), over the repetitions' summaries; a failed flow's run counts
    for nothing."""
    names = [flow.name for flow in summaries[0].flows if flow.role != "baseline"] if summaries else []
    out = {}
    for name in names:
        flows = [flow for summary in summaries for flow in summary.flows if flow.name == name and flow.status == "ok"]
        interfaces = sorted({path.receiver_interface or path.path for flow in flows for path in flow.paths
                             if path.share is not None})
        out[name] = FlowStats(
            goodput_bps=stat([flow.goodput_bps for flow in flows if flow.goodput_bps is not None]),
            subflows=stat([float(flow.subflows.established) for flow in flows if flow.subflows.established is not None]),
            path_shares={iface: stat([sum(path.share or 0.0 for path in flow.paths
                                          if (path.receiver_interface or path.path) == iface) for flow in flows])
                         for iface in interfaces},
        )
    return out


def write_sweep(folder: Path, summary: SweepSummary) -> None:
    """sweep.json and sweep.csv (one row per point, flow and figure)."""
    (folder / "sweep.json").write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    params = list(summary.parameters)
    with open(folder / "sweep.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["point", *params, "flow", "figure", "n", "mean", "stdev", "ci95_low", "ci95_high"])
        for point in summary.points:
            for name, flow in point.flows.items():
                figures = [("goodput_bps", flow.goodput_bps), ("subflows", flow.subflows),
                           *[(f"share:{iface}", value) for iface, value in flow.path_shares.items()]]
                for figure, value in figures:
                    low = value.mean - value.ci95 if value.mean is not None and value.ci95 is not None else ""
                    high = value.mean + value.ci95 if value.mean is not None and value.ci95 is not None else ""
                    writer.writerow([point.index, *[point.values.get(p, "") for p in params], name, figure, value.n,
                                     "" if value.mean is None else value.mean,
                                     "" if value.stdev is None else value.stdev, low, high])


def draw_sweep(folder: Path, summary: SweepSummary) -> Path | None:
    """plots/sweep.png: mean goodput (Mbit/s) per value of the first parameter, error bars
    the 95% CI; one line per flow and combination of the other parameters."""
    points = [point for point in summary.points if point.flows]
    if not points or not summary.parameters:
        return None
    first, *others = list(summary.parameters)
    xs = summary.parameters[first]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[int, float, float]]] = {}
    for point in points:
        rest = ", ".join(f"{p}={point.values[p]}" for p in others)
        for name, flow in point.flows.items():
            if flow.goodput_bps.mean is None:
                continue
            label = name + (f" ({rest})" if rest else "")
            series.setdefault(label, []).append((xs.index(point.values[first]), flow.goodput_bps.mean / 1e6,
                                                 (flow.goodput_bps.ci95 or 0.0) / 1e6))
    for label, items in series.items():
        items.sort()
        ax.errorbar([i for i, _, _ in items], [m for _, m, _ in items], yerr=[c for _, _, c in items], marker="o",
                    capsize=4, label=label)
    ax.set_xticks(range(len(xs)), xs)
    ax.set_xlabel(first)
    ax.set_ylabel("goodput (Mbit/s), mean ± 95% CI")
    ax.set_title(f"{Path(summary.topology).name}: {summary.repeat} repetition(s) per point", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    (folder / "plots").mkdir(exist_ok=True)
    return _save(fig, folder / "plots" / "sweep.png")
