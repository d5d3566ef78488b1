"""The lab life cycle as one API, shared by the CLI, the Python API and the NeST layer:
load -> validate -> plan -> apply, and back down again."""

from __future__ import annotations

from pathlib import Path

from ..errors import LabNotFound, RuntimeFailure
from ..plan.commands import Plan, make_plan
from ..topology.bundled import find_bundled
from ..topology.loader import load_topology, topology_to_yaml
from ..topology.model import Topology
from ..topology.validate import validate
from . import apply, docker_api
from .apply import Progress, UpResult
from .engine import EngineMismatch, mismatch
from .image import image_info
from .state import LabState, find_engines, find_state, known_labs, load_state, save_state, state_dir


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
    where = find_engines(lab)  # a lab on several engines: every one its state (or up's record) names
    containers, networks = apply.down(lab, progress) if where is None else apply.down(lab, progress, where=where)
    trace_path(lab).unlink(missing_ok=True)
    return lab, containers, networks


def is_topology_file(target: str | None) -> bool:
    """Whether a command's TARGET names a topology file (rather than a lab or a node)."""
    return bool(target) and (target.endswith((".yaml", ".yml")) or Path(target).is_file()  # type: ignore[union-attr]
                             or find_bundled(target) is not None)  # type: ignore[arg-type]


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
        if state.engines:  # several engines: the count on each ('local 2/2, vm 2/2')
            counts = engine_counts(state)
            containers = sum(max(running, 0) for running, _ in counts.values())
            notes.append("engines " + ", ".join(f"{name} {'?' if running < 0 else running}/{placed}"
                                                  for name, (running, placed) in counts.items()))
        elif mismatch(lab, state.engine, here) and state.engine is not None:
            containers = "-"
            notes.append(f"on another engine: {state.engine.describe()} ({state.engine.command()})")
        elif containers == 0:
            notes.append("no containers (stale state)")
        rows.append([lab, state.source or "-", len(state.nodes), len(state.networks), containers, "; ".join(notes)])
    return rows


def engine_counts(state: LabState) -> dict[str, tuple[int, int]]:
    """A lab on several engines: engine name -> (its running node containers, the nodes placed
    there); an engine that does not answer counts -1 running."""
    where, counts = state.where(), {}
    for name, target in where.engines.items():
        placed = sum(1 for node in state.nodes.values() if node.engine == name)
        try:
            with docker_api.using(target):
                running = sum(1 for c in docker_api.lab_containers(state.lab) if c.get("State") == "running")
        except Exception as exc:  # noqa: BLE001 - an engine away: say so in its count, the others still count
            if not docker_api.engine_gone(exc) and not isinstance(exc, docker_api.DockerUnavailable):
                raise
            running = -1
        counts[str(name)] = (running, placed)
    return counts


def running_containers(state: LabState) -> int:
    """The lab's running node containers, on every engine it is on."""
    if not state.engines:
        return sum(1 for c in docker_api.lab_containers(state.lab) if c.get("State") == "running")
    return sum(max(running, 0) for running, _ in engine_counts(state).values())


def docker_reachable() -> None:
    docker_api.client()


def _tc_shape(line: str) -> tuple[str, ...]:
    """What a tc line adds, without its parameters: ('qdisc', 'dev', 'eth0', 'parent', '1:1', 'handle',
    '10:', 'netem'). Two lines of the same shape can be changed into each other in place."""
    tokens = line.split()
    anchor = "classid" if tokens and tokens[0] == "class" else "handle"
    end = tokens.index(anchor) + 3 if anchor in tokens else len(tokens)
    return (tokens[0], *tokens[2:end]) if len(tokens) > 1 else tuple(tokens)


def reshape(state: LabState, topology: Topology, progress: Progress = lambda _: None) -> list[tuple[str, str]] | None:
    """Change a running lab's shaping in place (``tc qdisc/class change``) to ``topology``'s
    (a validated topology with the same nodes and links); the lab's state then records it.

    Returns the (node, tc arguments) changes applied, or None, changing nothing, when the qdiscs'
    layout differs (say a netem leaf that was a pfifo): the lab must then be brought up anew.
    A tc error is raised with its own message (the lab is left as far as it got)."""
    have = make_plan(state.topology(), drop_impairments=state.impairments_dropped)
    want = make_plan(topology, drop_impairments=state.impairments_dropped)
    changes: list[tuple[str, str]] = []
    for name, node in want.nodes.items():
        old = [line for line in have.nodes[name].tc_lines() if not line.startswith("#")]
        new = [line for line in node.tc_lines() if not line.startswith("#")]
        if len(old) != len(new) or any(_tc_shape(a) != _tc_shape(b) for a, b in zip(old, new)):
            return None
        changes += [(name, b) for a, b in zip(old, new) if a != b]
    applied = []
    for name, line in changes:
        tokens = line.split()
        argv = ["tc", tokens[0], "change", *tokens[2:]]
        progress(f"{name}: {' '.join(argv)}")
        applied.append((name, " ".join(argv[1:])))
        result = docker_api.run_exec(state.container(name), argv)
        if result.exit_code != 0:
            raise RuntimeFailure(f"changing the shaping of lab {state.lab!r} in place failed on {name}: "
                                 f"{' '.join(argv)}: {(result.stderr or result.stdout).strip()}")
    state.topology_yaml = topology_to_yaml(topology)
    save_state(state)
    return applied
