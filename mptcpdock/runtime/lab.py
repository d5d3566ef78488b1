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
from .engine import EngineMismatch, mismatch
from .image import image_info
from .state import LabState, find_state, known_labs, load_state, state_dir


def prepare(topology: Topology) -> Plan:
    """Validate and plan (pure): everything that can be checked before Docker is touched."""
    return make_plan(validate(topology))


def trace_path(lab: str) -> Path:
    return state_dir() / "labs" / f"{lab}.commands.sh"


def bring_up(topology: Topology, *, allow_no_impairments: bool = False,
             progress: Progress = lambda _: None) -> UpResult:
    plan = prepare(topology)
    existing = find_state(plan.lab)
    if existing is not None:  # up on another engine: its record must not be overwritten
        require_same_engine(existing)
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
    state = find_state(lab)
    if state is not None:  # without a state file, the labels on this engine are all there is
        require_same_engine(state)
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
    return lab_state(resolve_lab(target))


def lab_state(lab: str) -> LabState:
    """The state of a lab that is up on the engine this process talks to."""
    state = load_state(lab)
    require_same_engine(state)
    return state


def require_same_engine(state: LabState) -> None:
    """Refuse (one line naming both engines and the fix) when the lab lives on another engine."""
    refusal = mismatch(state.lab, state.engine, docker_api.engine_identity())
    if refusal:
        raise EngineMismatch(refusal)


def status_rows() -> list[list[object]]:
    rows = []
    running = apply.running_labs()
    here = docker_api.engine_identity()
    for lab in sorted(set(known_labs()) | set(running)):
        state = find_state(lab)
        if state is None:
            rows.append([lab, "-", running.get(lab, 0), "?", running.get(lab, 0), "no state file (crashed up?)"])
            continue
        notes = ["impairments dropped"] if state.impairments_dropped else []
        containers: object = running.get(lab, 0)
        if mismatch(lab, state.engine, here) and state.engine is not None:
            containers = "-"
            notes.append(f"on another engine: {state.engine.describe()} ({state.engine.command()})")
        elif containers == 0:
            notes.append("no containers (stale state)")
        rows.append([lab, state.source or "-", len(state.nodes), len(state.networks), containers, "; ".join(notes)])
    return rows


def docker_reachable() -> None:
    docker_api.client()
