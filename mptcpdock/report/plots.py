"""PNG plots of a run (matplotlib, Agg backend), from summary.json and the raw samples.

* ``throughput.png``: goodput over time per flow (iperf3's receiver-side intervals);
* ``paths.png``: received throughput over time per interface of each flow's receiving
  host (interface byte counters): one line per path;
* ``subflows.png``: smoothed RTT and congestion window per subflow, from the sender's
  ``ss -ti`` samples;
* ``topology.png``: the lab itself (:mod:`mptcpdock.report.graph`).

Time is in seconds since the run's t=0 (when the first flow could start).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..topology.loader import load_topology
from ..topology.validate import validate
from .graph import GraphError, draw_topology, to_dot
from .parsers import Sample, parse_samples
from .records import Summary


def _save(fig, path: Path, laid_out: bool = False) -> Path:
    """Lay out (unless done), write the PNG and free the figure."""
    if not laid_out:
        fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path


def _pyplot():
    """matplotlib, imported on first use: it is slow to import and only plots need it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_all(results_dir: Path, summary: Summary) -> list[Path]:
    folder = results_dir / "plots"
    folder.mkdir(exist_ok=True)
    samples = {}
    for path in sorted((results_dir / "samples").glob("*.txt")):
        samples[path.stem] = parse_samples(path.read_text(errors="replace"))
    t0 = summary.t0 or 0.0
    out = [draw_throughput(folder / "throughput.png", summary),
           draw_paths(folder / "paths.png", summary, samples, t0),
           draw_subflows(folder / "subflows.png", summary, samples, t0),
           draw_lab(folder, results_dir / "topology.yaml")]
    return [path for path in out if path is not None]


def draw_lab(folder: Path, topology_file: Path) -> Path | None:
    """plots/topology.png: the lab the run ran on (``mptcpdock graph``'s picture). Where
    Graphviz's dot is missing, plots/topology.dot instead (``dot -Tpng`` draws it later)."""
    if not topology_file.exists():
        return None
    topology = validate(load_topology(topology_file))
    state = topology_file.with_name("state.json")
    dropped = bool(json.loads(state.read_text()).get("impairments_dropped")) if state.exists() else False
    try:
        return draw_topology(folder / "topology.png", topology, dropped)
    except GraphError:
        target = folder / "topology.dot"
        target.write_text(to_dot(topology, dropped))
        return target


def mark_events(ax, summary: Summary, labels: bool = True) -> None:
    """A vertical line at each event's time (seconds after t0), labelled at the top."""
    shown: dict[float, list[str]] = {}
    for occ in summary.events.occurrences if summary.events else []:
        shown.setdefault(round(occ.t, 3), []).append(occ.label)
    for when, names in sorted(shown.items()):
        ax.axvline(when, color="0.35", linestyle=":", linewidth=1)
        if labels:
            ax.annotate(" / ".join(dict.fromkeys(names)), xy=(when, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(2, -2), textcoords="offset points", rotation=90, va="top", ha="left",
                        fontsize="x-small", color="0.25")


PARTIAL = 0.5  #: an interval shorter than this share of the others is partial (iperf3's last one)


def full_intervals(points: list[tuple[float, float]] | list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    """(edges, Mbit/s, left-out lengths) of one flow's ``[end time, bit/s]`` intervals.

    iperf3 ends a test with a short interval (a few ms: the bytes after the last full second),
    whose rate over a few packets is not comparable with the others: intervals shorter than
    :data:`PARTIAL` of the usual length are left out. Each interval starts where the previous
    one ended; the first one lasts the usual length."""
    ends = [point[0] for point in points]
    lengths = [b - a for a, b in zip(ends, ends[1:])]
    usual = sorted(lengths)[len(lengths) // 2] if lengths else 1.0
    lengths = [usual, *lengths]
    edges: list[float] = []
    rates: list[float] = []
    dropped: list[float] = []
    for (end, bps), length in zip(points, lengths):
        if length < PARTIAL * usual:
            dropped.append(length)
            continue
        if edges and abs(edges[-1] - (end - length)) > 1e-6:  # a gap (a dropped interval in between)
            rates.append(float("nan"))
            edges.append(end - length)
        elif not edges:
            edges.append(end - length)
        rates.append(bps / 1e6)
        edges.append(end)
    return edges, rates, dropped


def draw_throughput(path: Path, summary: Summary) -> Path | None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    drawn, top = False, 0.0
    dropped_notes = []
    for flow in summary.flows:
        edges, rates, dropped = full_intervals(flow.intervals)
        dropped_notes += [f"{flow.name} {length * 1000:.0f} ms" for length in dropped]
        if not rates:
            continue
        label = f"{flow.name} ({flow.protocol})"
        ax.stairs(rates, edges, label=label, baseline=None,
                  linestyle="--" if flow.role == "baseline" else "-", linewidth=1.5)
        drawn, top = True, max([top, *(rate for rate in rates if rate == rate)])
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("time since t=0 (s)")
    ax.set_ylabel("goodput (Mbit/s)")
    mark_events(ax, summary)
    ax.set_title(f"Goodput per flow (iperf3 receiver, {0.1 if summary.events else 1:g} s intervals)")
    ax.set_ylim(0, top * 1.2)  # room above the highest flow for the legend
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    caption = ("iperf3's last, partial interval is left out: " + ", ".join(dropped_notes) if dropped_notes else
               "every interval is a full one (a partial last interval would be left out)")
    fig.text(0.01, 0.01, caption + ".", fontsize="small", color="0.35", ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return _save(fig, path, laid_out=True)


def interface_rates(samples: list[Sample], interfaces: set[str]) -> dict[str, tuple[list[float], list[float]]]:
    """interface -> (times, received Mbit/s) between consecutive samples."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    previous = None
    for sample in samples:
        if not sample.interfaces:
            continue
        if previous is not None and sample.time > previous.time:
            dt = sample.time - previous.time
            for name in interfaces:
                if name in sample.interfaces and name in previous.interfaces:
                    rate = (sample.interfaces[name][0] - previous.interfaces[name][0]) * 8 / dt / 1e6
                    times, rates = out.setdefault(name, ([], []))
                    times.append(sample.time)
                    rates.append(max(rate, 0.0))
        previous = sample
    return out


def draw_paths(path: Path, summary: Summary, samples: dict[str, list[Sample]], t0: float) -> Path | None:
    receivers: dict[str, set[str]] = {}
    for flow in summary.flows:
        for item in flow.paths:
            if item.receiver_interface:
                receivers.setdefault(flow.receiver, set()).add(item.receiver_interface)
    receivers = {node: names for node, names in receivers.items() if samples.get(node)}
    if not receivers:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(receivers), 1, figsize=(9, 3.5 * len(receivers)), squeeze=False)
    for ax, (node, names) in zip(axes[:, 0], sorted(receivers.items())):
        for name, (times, rates) in sorted(interface_rates(samples[node], names).items()):
            ax.plot([t - t0 for t in times], rates, label=f"{node} {name} (received)")
        mark_events(ax, summary, labels=ax is axes[0, 0])
        ax.set_ylabel("Mbit/s")
        ax.set_title(f"Throughput per path at {node} (interface counters)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    axes[-1, 0].set_xlabel("time since t=0 (s)")
    return _save(fig, path)


def subflow_series(summary: Summary, samples: dict[str, list[Sample]]) -> list[tuple[str, list[float], list[float], list[float]]]:
    """(label, times, rtt ms, cwnd) per subflow of every flow, from its sender's samples."""
    out = []
    for flow in summary.flows:
        node_samples = samples.get(flow.sender or "", [])
        for item in flow.paths:
            for local, lport, peer, pport in item.sockets:
                times, rtts, cwnds = [], [], []
                for sample in node_samples:
                    for sock in sample.sockets:
                        if (sock.netid == "tcp" and sock.local == local and sock.local_port == lport
                                and sock.peer == peer and sock.peer_port == pport and "rtt_ms" in sock.info):
                            times.append(sample.time)
                            rtts.append(sock.info["rtt_ms"])
                            cwnds.append(sock.info.get("cwnd", 0))
                if len(times) >= 2 and max(s.info.get("bytes_acked", 0) for sample in node_samples
                                           for s in sample.sockets if s.local_port == lport and s.local == local) > 100_000:
                    label = f"{flow.name}: {local} -> {peer}"
                    out.append((label, times, rtts, cwnds))
    return out


def draw_subflows(path: Path, summary: Summary, samples: dict[str, list[Sample]], t0: float) -> Path | None:
    series = subflow_series(summary, samples)
    if not series:
        return None
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for label, times, rtts, cwnds in series:
        shifted = [t - t0 for t in times]
        top.plot(shifted, rtts, label=label)
        bottom.plot(shifted, cwnds, label=label)
    top.set_ylabel("smoothed RTT (ms)")
    top.set_title("RTT and congestion window per subflow (sender's ss -ti)")
    bottom.set_ylabel("cwnd (segments)")
    bottom.set_xlabel("time since t=0 (s)")
    mark_events(top, summary)
    mark_events(bottom, summary, labels=False)
    for ax in (top, bottom):
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)
