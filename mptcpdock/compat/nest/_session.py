"""The topology a NeST script builds, kept globally as NeST keeps its TopologyMap.

NeST scripts create nodes and networks at module level and never pass a topology object
around, so the layer keeps one session per process, and one per script that
:func:`mptcpdock.api.topology_of_script` runs (the export command and the tests run several
scripts in one process). :func:`reset` empties it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...api import Lab
from . import config
from ._scope import PerScript

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
        self.experiment_name: str | None = None  # the last Experiment created (names a ping's lab)
        #: Node.capture_packets: (node, interface) -> packet_count / output_file, applied after the run
        self.capture_counts: dict[tuple[str, str], int] = {}
        self.capture_files: dict[tuple[str, str], str] = {}


_current: PerScript[Session] = PerScript(Session)


def session() -> Session:
    return _current.get()


def reset() -> None:
    """Forget every node, link and network, and restore NeST's default config."""
    _current.clear()
    config.reset()
