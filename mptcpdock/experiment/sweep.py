"""``mptcpdock sweep``: run a topology once per point of a grid of values (``--set
PATH=V1,V2`` per parameter), each point ``repeat`` times, into one sweep directory::

    results/<lab>-sweep-<YYYYmmdd-HHMMSS>/
        sweep.json  sweep.csv  plots/sweep.png
        p<point>/<lab>-<timestamp>/...      one results directory per repetition

PATH addresses a field of the resolved topology: ``links.<link name>.<key>``,
``flows.<flow name>.<key>``, ``nodes.<node>.<key>...`` (e.g. ``nodes.h1.mptcp.limits.subflows``),
or a top-level key. Every point is built and validated before anything starts.

The lab: where a point changes only shaping (rates, delays, queues: the same qdiscs) or flows,
the running lab is kept and its shaping changed in place (``tc class/qdisc change``,
:func:`mptcpdock.runtime.lab.reshape`); where it changes the network or the qdiscs' layout,
the lab is brought down and up anew. sweep.json says which, per point. Ctrl-C keeps every
finished run (sweep.json is rewritten after each one); the lab stays up, as after ``run``.
"""

from __future__ import annotations

import copy
import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import MptcpdockError, TopologyError
from ..report.records import Summary
from ..report.sweep import SweepPoint, SweepRun, SweepSummary, draw_sweep, point_stats, write_sweep
from ..runtime import lab as lab_api
from ..runtime.state import find_state
from ..topology.loader import SHAPING_KEYS, load_topology_text, topology_to_dict
from ..topology.model import Topology
from ..topology.validate import validate
from .runner import Progress, run_experiment


@dataclass
class SweepResult:
    folder: Path
    summary: SweepSummary


def parse_set(text: str) -> tuple[str, list[str]]:
    """'links.r2-h2.delay=5ms,50ms' -> ('links.r2-h2.delay', ['5ms', '50ms'])."""
    path, sep, values = text.partition("=")
    items = [value.strip() for value in values.split(",")] if sep else []
    if not sep or not path.strip() or not items or any(not item for item in items):
        raise MptcpdockError(f"--set {text!r}: write PATH=V1,V2,... e.g. --set links.r2-h2.rate=5mbit,10mbit")
    return path.strip(), items


def _walk(data: dict[str, Any], path: str, value: str) -> None:
    parts = path.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[:depth + 1])
        if isinstance(node, list):  # links / flows, by name
            named = {item.get("name"): item for item in node}
            if part not in named:
                raise MptcpdockError(f"--set {path}: no {parts[depth - 1].rstrip('s')} {part!r} "
                                     f"(there are: {', '.join(str(name) for name in named)})")
            node = named[part]
        elif isinstance(node, dict):
            if part not in node:
                if depth == 0 or where.startswith("links."):
                    raise MptcpdockError(f"--set {path}: the topology has no {where!r}")
                node[part] = {}
            node = node[part]
        else:
            raise MptcpdockError(f"--set {path}: {'.'.join(parts[:depth])} is a value, not a mapping")
    if isinstance(node, list):
        raise MptcpdockError(f"--set {path}: name an item of {parts[-2]} and then its key, e.g. {path}.rate")
    node[parts[-1]] = yaml.safe_load(value) if value not in ("", None) else value


def apply_values(topology: Topology, values: dict[str, str]) -> Topology:
    """The topology with each PATH set to its value, validated (a bad value is the topology
    error of that field, prefixed with the --set it came from)."""
    data = topology_to_dict(validate(topology))
    for path, value in values.items():
        _walk(data, path, value)
    try:
        model = load_topology_text(yaml.safe_dump(data, sort_keys=False), source=topology.source)
        model.name = topology.name
        return validate(model)
    except TopologyError as exc:
        setting = ", ".join(f"{path}={value}" for path, value in values.items())
        raise MptcpdockError(f"--set {setting}: {exc}") from None


def _network(topology: Topology) -> dict[str, Any]:
    """Nodes and links without shaping and without flows: what a point may not change
    while keeping the lab."""
    data = topology_to_dict(topology)
    links = [{key: value for key, value in link.items() if key not in SHAPING_KEYS and key != "egress"}
             for link in data["links"]]
    return {**{k: v for k, v in data.items() if k not in ("links", "flows", "events")}, "links": links}


def _prepare_lab(name: str, model: Topology, allow_no_impairments: bool, progress: Progress) -> tuple[str, list[str]]:
    """Make the running lab match ``model``: ('reused'|'reshaped'|'up', the tc changes)."""
    state = find_state(name)
    if state is not None:
        current = state.topology()
        if _network(current) == _network(model):
            changes = lab_api.reshape(state, model, progress)
            if changes is not None:
                return ("reshaped" if changes else "reused"), [f"{node}: tc {line}" for node, line in changes]
            progress(f"lab {name}: the qdiscs' layout changes (a netem leaf appears or goes): bringing it up anew")
        else:
            progress(f"lab {name}: the network changes: bringing it up anew")
        lab_api.tear_down(name)
    lab_api.bring_up(model, allow_no_impairments=allow_no_impairments, progress=progress)
    return "up", []


def run_sweep(topology: Topology, sets: Sequence[tuple[str, list[str]]], *, repeat: int = 1,
              results_root: Path = Path("results"), duration: float | None = None,
              allow_no_impairments: bool = False, progress: Progress = lambda _: None,
              plots: bool = True) -> SweepResult:
    """Every point of the grid, ``repeat`` times; see the module's docstring."""
    if repeat < 1:
        raise MptcpdockError(f"--repeat {repeat}: give 1 or more")
    if not sets:
        raise MptcpdockError("a sweep needs at least one --set PATH=V1,V2,...")
    paths = [path for path, _ in sets]
    if len(set(paths)) != len(paths):
        raise MptcpdockError(f"--set names {paths} more than once: give each PATH one --set")
    combos = [dict(zip(paths, combo)) for combo in itertools.product(*[values for _, values in sets])]
    models = [apply_values(topology, values) for values in combos]  # every error before anything starts
    name = topology.name
    folder = Path(results_root) / f"{name}-sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    folder.mkdir(parents=True, exist_ok=False)
    summary = SweepSummary(topology=topology.source or name, parameters=dict(sets), repeat=repeat)
    allow = allow_no_impairments or topology.allow_no_impairments
    try:
        for index, (values, model) in enumerate(zip(combos, models)):
            point = SweepPoint(index=index, values=values)
            summary.points.append(point)
            progress(f"point {index + 1}/{len(models)}: " + ", ".join(f"{k}={v}" for k, v in values.items()))
            point.lab, point.changes = _prepare_lab(name, model, allow, progress)
            summaries: list[Summary] = []
            for repetition in range(repeat):
                result = run_experiment(lab=name, topology=copy.deepcopy(model), duration=duration,
                                        results_root=folder / f"p{index}", progress=progress,
                                        bring_up_if_needed=False, plots=plots)
                point.runs.append(SweepRun(repetition=repetition, results_dir=str(result.results_dir.relative_to(folder)),
                                           incomplete=result.incomplete))
                summaries.append(result.summary)
                point.flows = point_stats(summaries)
                write_sweep(folder, summary)
                if any(reason.startswith("interrupted") for reason in result.summary.reasons):
                    raise KeyboardInterrupt
        summary.complete = True
    except KeyboardInterrupt:
        summary.reasons.append("interrupted (Ctrl-C): the runs that finished are kept")
    finally:
        if plots:
            drawn = draw_sweep(folder, summary)
            summary.plots = [f"plots/{drawn.name}"] if drawn else []
        write_sweep(folder, summary)
    return SweepResult(folder, summary)
