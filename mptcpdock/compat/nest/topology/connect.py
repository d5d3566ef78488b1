"""NeST's ``connect``: a link between two nodes, returning their two interfaces."""

from __future__ import annotations

from ....api import caller_location
from ....errors import TopologyError
from ....topology.validate import IFNAME_RE
from .._session import session
from .interface import Interface
from .network import Network
from .node import Node


def connect(node1: Node, node2: Node, interface1_name: str = "", interface2_name: str = "",
            network: Network | None = None) -> tuple[Interface, Interface]:
    """Join ``node1`` and ``node2``; returns (interface in node1, interface in node2).

    Interfaces are named as NeST names them, ``<node>-<peer>-<n>`` with n counting earlier
    connections between the two (``h1-r1-0``); when that exceeds Linux's 15 characters the
    name is ``eth<k>``, k counting the node's interfaces."""
    source, line = caller_location()
    for node in (node1, node2):
        if not isinstance(node, Node):
            raise TopologyError(f"connect() takes two nodes, got {node!r}", source=source, line=line)
    if node1 is node2:
        raise TopologyError(f"connect() joins node {node1.name!r} to itself", source=source, line=line,
                            fix="join two different nodes")
    network = network if network is not None else session().current_network
    if network is not None and len(network.interfaces) >= 2:
        raise TopologyError(f"network {network.subnet} already holds a link; mptcpdock gives each link a "
                            "subnet of its own", source=source, line=line, fix="create one Network per connect()")
    earlier = sum(1 for interface in node1.interfaces if interface.pair is not None and interface.pair.node is node2)
    name1 = interface1_name or _default_name(node1, node2, earlier)
    name2 = interface2_name or _default_name(node2, node1, earlier)
    link = session().lab.link(node1.ref, node2.ref, interfaces=(name1, name2),
                              subnet=str(network.subnet) if network is not None else None)
    interface1 = Interface(name1, node1, link.a, network)
    interface2 = Interface(name2, node2, link.b, network)
    interface1.pair, interface2.pair = interface2, interface1
    node1._add_interface(interface1)
    node2._add_interface(interface2)
    if network is not None:
        network.add_interface(interface1)
        network.add_interface(interface2)
    return interface1, interface2


def _default_name(node: Node, peer: Node, earlier: int) -> str:
    name = f"{node.name}-{peer.name}-{earlier}"
    return name if IFNAME_RE.match(name) else f"eth{len(node.interfaces)}"
