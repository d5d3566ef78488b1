"""NeST's ``Node`` and ``Router``: each becomes one container of the lab."""

from __future__ import annotations

from typing import Any

from ....api import NodeRef, caller_location
from ....errors import TopologyError
from .._session import session
from .address import Address
from .interface import Interface


class Node:
    """A host. MPTCP is on, as in NeST."""

    _kind = "host"

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("Node name can't be an empty string")
        current = session()
        if name in current.nodes:
            source, line = caller_location()
            raise TopologyError(f"node {name!r} exists already", source=source, line=line,
                                fix="give every node its own name (they name the containers)")
        self._name = name
        self.ref: NodeRef = (current.lab.router(name) if self._kind == "router" else current.lab.host(name))
        self._interfaces: list[Interface] = []
        current.nodes[name] = self

    @property
    def name(self) -> str:
        return self._name

    @property
    def id(self) -> str:
        return self._name

    @property
    def interfaces(self) -> list[Interface]:
        return list(self._interfaces)

    @property
    def is_mptcp(self) -> bool:
        return self.ref.model.mptcp.enabled

    # MPTCP --------------------------------------------------------------------------------
    def enable_mptcp(self) -> None:
        """MPTCP on. Like NeST (``ip mptcp endpoint flush``), this forgets the node's endpoints."""
        self.ref.model.mptcp.enabled = True
        self.ref.model.mptcp.endpoints.clear()

    def disable_mptcp(self) -> None:
        """MPTCP off (``net.mptcp.enabled=0``); forgets the node's endpoints, as NeST does."""
        self.ref.model.mptcp.enabled = False
        self.ref.model.mptcp.endpoints.clear()

    def set_mptcp_parameters(self, max_subflows: int, max_add_addr_accepted: int) -> None:
        """``ip mptcp limits set subflows N add_addr_accepted M``."""
        self.ref.mptcp(subflows=int(max_subflows), add_addr_accepted=int(max_add_addr_accepted))

    def add_mptcp_monitor(self) -> None:
        """One ``ip mptcp monitor`` on this node for the whole experiment (however many flows)."""
        self.ref.monitor()

    def get_mptcp_endpoints(self) -> dict[str, tuple[str, ...]]:
        endpoints: dict[str, tuple[str, ...]] = {}
        for interface in self._interfaces:
            endpoints.update(interface.get_mptcp_endpoints())
        return endpoints

    def is_mptcp_supported(self) -> bool:
        """Multihomed (two or more interfaces) and multiaddressed (in two or more subnets)."""
        subnets = {interface.subnet() for interface in self._interfaces}
        return len(self._interfaces) > 1 and len(subnets - {None}) > 1

    # routes -------------------------------------------------------------------------------
    def add_route(self, dest_addr: "str | Address", via_interface: Interface,
                  next_hop_addr: "str | Address | None" = None) -> None:
        """A static route to ``dest_addr``'s subnet ("DEFAULT": the default route), leaving by
        ``via_interface`` towards its peer (or ``next_hop_addr``)."""
        source, line = caller_location()
        if not isinstance(via_interface, Interface) or via_interface.node is not self:
            raise TopologyError(f"{via_interface!r} is not an interface of node {self.name!r}", source=source,
                                line=line, fix="route through one of this node's own interfaces")
        destination = Address(dest_addr)
        if destination.is_default():
            to = "default"
        elif "/" in destination.get_addr():
            to = destination.get_subnet()
        else:
            to = destination.get_addr()
        via = Address(next_hop_addr).get_addr(with_subnet=False) if next_hop_addr is not None else None
        self.ref.route(to, dev=via_interface.name, via=via)

    # other NeST node settings that map onto the model ---------------------------------------
    def configure_tcp_param(self, param: str, value: Any) -> None:
        """``net.ipv4.tcp_<param>`` in this node (set when its container is created)."""
        self.ref.sysctl(f"net.ipv4.tcp_{param}", value)

    def _add_interface(self, interface: Interface) -> None:
        self._interfaces.append(interface)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Router(Node):
    """A node that forwards (``net.ipv4.ip_forward=1``)."""

    _kind = "router"
