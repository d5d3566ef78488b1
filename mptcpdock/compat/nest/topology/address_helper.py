"""NeST's ``AddressHelper``: number the interfaces of each Network in connect order."""

from __future__ import annotations

from ....errors import TopologyError
from .._session import session
from .network import Network


class AddressHelper:
    @staticmethod
    def assign_addresses(network: Network | None = None) -> None:
        """Give the interfaces of ``network`` (default: every Network) addresses .1, .2, ...
        in the order connect() added them, as NeST does: the first node of each connect()
        gets .1, the second .2."""
        for net in [network] if network is not None else session().networks:
            hosts = net.subnet.hosts() if net.subnet.prefixlen < 31 else iter(net.subnet)
            for interface in net.interfaces:
                try:
                    address = next(hosts)
                except StopIteration:
                    raise TopologyError(f"network {net.subnet} has no address left for {interface.name!r}",
                                        fix="use a larger network") from None
                interface.set_address(f"{address}/{net.subnet.prefixlen}")
