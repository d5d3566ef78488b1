"""The lab life cycle as one API, shared by the CLI, the Python API and the NeST layer:
load -> validate -> plan -> apply, and back down again."""

from __future__ import annotations

from pathlib import Path

from ..errors import LabNotFound
from ..plan.commands import Plan, make_plan
from ..topology.loader import load_topology
from ..topology.model import Topology
from ..topology.validate import validate
from . import apply, docker_api
from .apply import Progress, UpResult
from .image import image_info
from .state import LabState, known_labs, load_state, state_dir


def prepare(topology: Topology) -> Plan:
    """Validate and plan (pure): everything that can be checked before Docker is touched."""
    return make_plan(validate(topology))


def trace_path(lab: str) -> Path:
    return state_dir() / "labs" / f"{lab}.commands.sh"


def bring_up(topology: Topology, *, allow_no_impairments: bool = False,
             progress: Progress = lambda _: None) -> UpResult:
    plan = prepare(topology)
    try:  # the node image's labels and digest, for the record
        image = image_info(None, next(iter(plan.nodes.values())).image)
    except Exception:  # noqa: BLE001 - recording is best effort; preflight reports a missing image
        image = {}
    result = apply.up(plan, allow_no_impairments=allow_no_impairments, progress=progress, image_info=image)
    path = trace_path(plan.lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.trace.write(path)
    return result


def tear_down(target: str | None, progress: Progress = lambda _: None) -> tuple[str, int, int]:
    """``target`` is a lab name, a topology file, or None for the only lab that is up."""
    lab = resolve_lab(target, must_run=False)
    containers, networks = apply.down(lab, progress)
    trace_path(lab).unlink(missing_ok=True)
    return lab, containers, networks


def is_topology_file(target: str | None) -> bool:
    """Whether a command's TARGET names a topology file (rather than a lab or a node)."""
    return bool(target) and (target.endswith((".yaml", ".yml")) or Path(target).is_file())  # type: ignore[union-attr]


def resolve_lab(target: str | None, *, must_run: bool = True) -> str:
    if is_topology_file(target):
        return load_topology(target).name  # type: ignore[arg-type]
    if target:
        return target
    labs = sorted(set(known_labs()) | set(apply.running_labs()))
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise LabNotFound("no lab is up; run 'mptcpdock up TOPOLOGY.yaml'")
    raise LabNotFound("several labs are up (" + ", ".join(labs) + "); name one")


def current_state(target: str | None) -> LabState:
    return load_state(resolve_lab(target))


def status_rows() -> list[list[object]]:
    rows = []
    running = apply.running_labs()
    for lab in sorted(set(known_labs()) | set(running)):
        try:
            state = load_state(lab)
            source, nodes, links = state.source or "-", len(state.nodes), len(state.networks)
            note = "impairments dropped" if state.impairments_dropped else ""
        except LabNotFound:
            source, nodes, links, note = "-", running.get(lab, 0), "?", "no state file (crashed up?)"
        containers = running.get(lab, 0)
        if containers == 0:
            note = (note + "; " if note else "") + "no containers (stale state)"
        rows.append([lab, source, nodes, links, containers, note])
    return rows


def docker_reachable() -> None:
    docker_api.client()
