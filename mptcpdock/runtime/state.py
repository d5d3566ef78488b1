"""What a running lab is: saved by ``up`` and read by every later command.

Docker labels are the source of truth for *which* objects belong to a lab (``down`` needs
nothing else); this state file adds what labels cannot hold: the resolved topology, the
kernel probe, the image, whether impairments were dropped, and the engine the lab lives on
(:class:`~mptcpdock.runtime.engine.EngineIdentity`: later commands refuse to act on the lab
through another engine).
Location: ``$MPTCPDOCK_STATE_DIR`` or ``$XDG_STATE_HOME/mptcpdock`` (``~/.local/state/mptcpdock``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LabNotFound
from .engine import Engine, EngineIdentity, OnEngine, spec_engine
from ..topology.loader import load_topology_text, topology_to_yaml
from ..topology.model import Topology
from ..topology.validate import validate


def state_dir() -> Path:
    base = os.environ.get("MPTCPDOCK_STATE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "mptcpdock"


@dataclass
class NodeState:
    container: str  # container name
    container_id: str
    interfaces: dict[str, str]  # interface -> address/prefix
    original_names: dict[str, str] = field(default_factory=dict)  # interface -> Docker's ethN
    engine: str | None = None  # the topology's engine name, for a lab on several engines


@dataclass
class LabState:
    lab: str
    topology_yaml: str  # the resolved topology
    source: str | None
    created: float
    image: dict[str, Any]
    probe: dict[str, Any]
    impairments_dropped: bool
    dropped_links: list[str]
    nodes: dict[str, NodeState]
    networks: dict[str, str]  # link -> network name
    timings: dict[str, float] = field(default_factory=dict)
    engine: EngineIdentity | None = None  # None: recorded before engines were
    #: node -> the sysctls its container was created with (the plan's, plus the kernel-dependent
    #: ones such as net.mptcp.blackhole_timeout=0 where the kernel has it)
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)
    #: A lab on several engines: engine name -> {"host", "context" (as in the topology), "identity"
    #: (EngineIdentity as a dict), "manager" (its swarm holds the lab's overlays), "probe" (summary)}
    engines: dict[str, dict[str, Any]] = field(default_factory=dict)

    def where(self) -> "LabEngines":
        """The engines this lab's objects are on."""
        if not self.engines:
            return LabEngines.single()
        return LabEngines.from_record(self.engines)

    def topology(self) -> Topology:
        topology = validate(load_topology_text(self.topology_yaml, source=f"state of lab {self.lab}"))
        topology.source = self.source
        return topology

    def container(self, node: str) -> str:
        """The node's container name; an OnEngine (requests go to its engine) when the lab is on
        several engines and the node is not on the environment's."""
        try:
            state = self.nodes[node]
        except KeyError:
            raise LabNotFound(f"lab {self.lab!r} has no node {node!r}; nodes: {', '.join(self.nodes)}") from None
        if not self.engines or state.engine is None:
            return state.container
        target = self.where().engines.get(state.engine)
        return OnEngine(state.container, target) if target is not None else state.container

    def warning(self) -> str | None:
        if not self.impairments_dropped:
            return None
        return (f"lab {self.lab!r} runs WITHOUT the delay/jitter/loss its topology asks for on "
                f"{', '.join(self.dropped_links)} (no netem in the Docker host's kernel); rates are applied")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "LabState":
        data = json.loads(text)
        data["nodes"] = {name: NodeState(**node) for name, node in data["nodes"].items()}
        if data.get("engine"):
            data["engine"] = EngineIdentity.from_dict(data["engine"])
        return cls(**data)


def state_path(lab: str) -> Path:
    return state_dir() / "labs" / f"{lab}.json"


def save_state(state: LabState) -> Path:
    path = state_path(state.lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(state.to_json())
    tmp.replace(path)
    return path


def load_state(lab: str) -> LabState:
    state = find_state(lab)
    if state is None:
        raise LabNotFound(f"lab {lab!r} is not up (no state at {state_path(lab)}); run 'mptcpdock up TOPOLOGY.yaml' "
                          "first")
    return state


def find_state(lab: str) -> LabState | None:
    """The lab's state, or None when it has none."""
    return LabState.from_json(state_path(lab).read_text()) if state_path(lab).exists() else None


def delete_state(lab: str) -> None:
    state_path(lab).unlink(missing_ok=True)
    engines_record_path(lab).unlink(missing_ok=True)


@dataclass(frozen=True)
class LabEngines:
    """Where a lab's objects go: engine name -> the engine (None: the environment's, which the
    default client reaches), and which engine's swarm manager holds its overlays. A lab on one
    engine is ``{None: None}``, as every lab was before several engines."""

    engines: dict[str | None, Engine | None]
    specs: dict[str, dict[str, str | None]] = field(default_factory=dict)  # name -> {"host", "context"}
    manager: str | None = None

    @classmethod
    def single(cls) -> "LabEngines":
        return cls({None: None})

    @classmethod
    def from_specs(cls, specs: dict[str, dict[str, str | None]], manager: str | None = None) -> "LabEngines":
        return cls({name: spec_engine(name, spec.get("host"), spec.get("context")) for name, spec in specs.items()},
                   {name: {"host": spec.get("host"), "context": spec.get("context")} for name, spec in specs.items()},
                   manager)

    @classmethod
    def from_record(cls, record: dict[str, dict[str, Any]]) -> "LabEngines":
        manager = next((name for name, entry in record.items() if entry.get("manager")), None)
        return cls.from_specs(record, manager)

    @property
    def multi(self) -> bool:
        return len(self.engines) > 1

    def record(self) -> dict[str, dict[str, Any]]:
        return {name: {**spec, "manager": name == self.manager} for name, spec in self.specs.items()}

    def describe(self, name: str | None) -> str:
        target = self.engines.get(name)
        return f"{name or 'the environment engine'}" + (f" ({target.host})" if target is not None else "")


def engines_record_path(lab: str) -> Path:
    return state_dir() / "labs" / f"{lab}.engines.json"


def save_engines_record(lab: str, where: LabEngines) -> None:
    """Written before ``up`` of a lab on several engines creates anything: ``down`` after a crash
    then still knows every engine to look on (the state file comes only at the end of ``up``)."""
    path = engines_record_path(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(where.record(), indent=2))


def find_engines(lab: str) -> LabEngines | None:
    """The engines the lab's state or its ``up``'s record names; None when neither exists (one engine)."""
    state = find_state(lab)
    if state is not None:
        return state.where() if state.engines else None
    path = engines_record_path(lab)
    return LabEngines.from_record(json.loads(path.read_text())) if path.exists() else None


def known_labs() -> list[str]:
    """Labs with a state file, or with only the engines record of an ``up`` that crashed."""
    folder = state_dir() / "labs"
    if not folder.exists():
        return []
    return sorted({path.name[:-len(".engines.json")] if path.name.endswith(".engines.json") else path.stem
                   for path in folder.glob("*.json")})


def new_state(topology: Topology, **fields: Any) -> LabState:
    return LabState(lab=topology.name, topology_yaml=topology_to_yaml(topology), source=topology.source,
                    created=time.time(), **fields)
