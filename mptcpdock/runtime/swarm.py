"""The engine's swarm, for overlay links: make it a one-node manager that listens on loopback
only, say what it is, join a worker, leave.

``init`` binds everything swarm listens on (2377/tcp control, 7946/tcp+udp gossip, the VXLAN
data path) to ``127.0.0.1`` by default, so a one-node swarm accepts nothing from outside this
machine and, having no peers, sends nothing anywhere. A worker on another engine needs an
address both can reach (docs/multi-host.md: a private host-only bridge to the VM).
"""

from __future__ import annotations

from dataclasses import dataclass

from docker.errors import APIError

from ..errors import RuntimeFailure
from . import docker_api
from .docker_api import LABEL_LAB

LOOPBACK = "127.0.0.1"
CONTROL_PORT = 2377


@dataclass(frozen=True)
class SwarmStatus:
    role: str  # manager | worker | inactive | pending | error | locked
    node_id: str
    nodes: int  # known to the manager (0 when not a manager)
    managers: list[str]  # addresses of the managers
    overlays: dict[str, int]  # lab -> its overlay networks on this engine

    def lines(self) -> list[str]:
        out = [f"engine {docker_api.engine().describe()}: swarm {self.role}"
               + (f", node {self.node_id[:12]}" if self.node_id else "")]
        if self.role == "manager":
            out.append(f"  {self.nodes} swarm node(s); managers: {', '.join(self.managers) or '-'}")
        for lab, count in sorted(self.overlays.items()):
            out.append(f"  lab {lab}: {count} overlay network(s)")
        if self.role == "inactive":
            out.append("  (overlay links need a manager: 'mptcpdock swarm init')")
        return out


def status() -> SwarmStatus:
    info = docker_api.engine_info().get("Swarm") or {}
    role = docker_api.swarm_role()
    nodes = int(info.get("Nodes") or 0) if role == "manager" else 0
    managers = [str(m.get("Addr")) for m in info.get("RemoteManagers") or []]
    overlays: dict[str, int] = {}
    for network in docker_api.lab_networks():
        if network.get("Driver") == "overlay":
            lab = (network.get("Labels") or {}).get(LABEL_LAB, "?")
            overlays[lab] = overlays.get(lab, 0) + 1
    return SwarmStatus(role=role, node_id=str(info.get("NodeID") or ""), nodes=nodes, managers=managers,
                       overlays=overlays)


def init(advertise: str = LOOPBACK) -> bool:
    """Make the engine a one-node swarm manager listening on ``advertise`` only (and carrying
    VXLAN from it). False when it already was a manager (nothing changed)."""
    role = docker_api.swarm_role()
    if role == "manager":
        return False
    if role != "inactive":
        raise RuntimeFailure(f"the engine at {docker_api.engine().describe()} is a swarm {role}; 'swarm init' "
                             "makes only an engine in no swarm a manager (fix: 'docker swarm leave' first)")
    try:
        docker_api.client().swarm.init(advertise_addr=advertise, listen_addr=f"{advertise}:{CONTROL_PORT}",
                                       data_path_addr=advertise)
    except APIError as exc:
        raise RuntimeFailure(f"'swarm init' on {docker_api.engine().describe()} failed: "
                             f"{docker_api.first_line(exc)}") from exc
    return True


def node_id() -> str:
    return str((docker_api.engine_info().get("Swarm") or {}).get("NodeID") or "")


def remove_node(node: str) -> None:
    """On the manager: forget a node that left (``docker node rm --force``)."""
    try:
        docker_api.client().api.remove_node(node, force=True)
    except APIError as exc:
        if exc.status_code != 404:
            raise RuntimeFailure(f"removing swarm node {node[:12]} failed: {docker_api.first_line(exc)}") from exc


def worker_token() -> str:
    if docker_api.swarm_role() != "manager":
        raise RuntimeFailure(f"the engine at {docker_api.engine().describe()} is not a swarm manager "
                             "(fix: 'mptcpdock swarm init' first)")
    return str(docker_api.client().swarm.attrs["JoinTokens"]["Worker"])


def join(manager: str, token: str, advertise: str) -> None:
    """Join this engine to the swarm of ``manager`` (ADDR:2377) as a worker advertising ``advertise``."""
    try:
        docker_api.client().swarm.join(remote_addrs=[manager], join_token=token, advertise_addr=advertise,
                                       listen_addr=f"{advertise}:{CONTROL_PORT}", data_path_addr=advertise)
    except APIError as exc:
        raise RuntimeFailure(f"'swarm join' of {docker_api.engine().describe()} to {manager} failed: "
                             f"{docker_api.first_line(exc)}") from exc


def leave() -> bool:
    """Leave the swarm (forced: a one-node manager can only leave so). Refused while a lab's
    overlays exist. False when the engine was in no swarm."""
    if docker_api.swarm_role() == "inactive":
        return False
    labs = status().overlays
    if labs:
        raise RuntimeFailure(f"labs {', '.join(sorted(labs))} still have overlay networks on this engine "
                             "(fix: 'mptcpdock down LAB' first)")
    try:
        docker_api.client().swarm.leave(force=True)
    except APIError as exc:
        raise RuntimeFailure(f"'swarm leave' failed: {docker_api.first_line(exc)}") from exc
    return True
