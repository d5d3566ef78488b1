"""NeST's ``Network``: the subnet ``connect(..., network=...)`` puts a link in."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ....errors import TopologyError
from .._session import session
from .address import Address

if TYPE_CHECKING:
    from .interface import Interface


class Network:
    """``Network("10.0.0.0/24")``; also a context manager, as in NeST (``with network: connect(...)``)."""

    def __init__(self, network_address: "str | Address") -> None:
        address = Address(network_address)
        if not address.is_subnet():
            raise TopologyError(f"{address.get_addr()!r} is not a network address",
                                fix="write the network with its prefix, e.g. 10.0.0.0/24")
        self.net_address = address
        self.interfaces: list["Interface"] = []
        session().networks.append(self)

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.net_address.get_addr())

    def add_interface(self, interface: "Interface") -> None:
        if interface not in self.interfaces:
            self.interfaces.append(interface)

    def __enter__(self) -> "Network":
        session().current_network = self
        return self

    def __exit__(self, *args: object) -> None:
        session().current_network = None

    def __repr__(self) -> str:
        return f"Network({self.net_address.get_addr()!r})"
