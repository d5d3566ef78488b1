"""The topology a NeST script builds, kept globally as NeST keeps its TopologyMap.

NeST scripts create nodes and networks at module level and never pass a topology object
around, so the layer keeps one session per process. :func:`reset` empties it (the export
command and the tests run several scripts in one process).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...api import Lab

if TYPE_CHECKING:
    from .topology.network import Network
    from .topology.node import Node

#: The lab's name until an Experiment names it.
PLACEHOLDER_NAME = "nest"


class Session:
    def __init__(self) -> None:
        self.lab = Lab(PLACEHOLDER_NAME)
        self.nodes: dict[str, "Node"] = {}
        self.networks: list["Network"] = []
        self.current_network: "Network | None" = None


_session: Session | None = None


def session() -> Session:
    global _session
    if _session is None:
        _session = Session()
    return _session


def reset() -> None:
    """Forget every node, link and network, and restore NeST's default config."""
    global _session
    _session = None
    from . import config
    config.reset()
