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
from .engine import EngineIdentity
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

    def topology(self) -> Topology:
        topology = validate(load_topology_text(self.topology_yaml, source=f"state of lab {self.lab}"))
        topology.source = self.source
        return topology

    def container(self, node: str) -> str:
        try:
            return self.nodes[node].container
        except KeyError:
            raise LabNotFound(f"lab {self.lab!r} has no node {node!r}; nodes: {', '.join(self.nodes)}") from None

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


def known_labs() -> list[str]:
    folder = state_dir() / "labs"
    return sorted(path.stem for path in folder.glob("*.json")) if folder.exists() else []


def new_state(topology: Topology, **fields: Any) -> LabState:
    return LabState(lab=topology.name, topology_yaml=topology_to_yaml(topology), source=topology.source,
                    created=time.time(), **fields)
