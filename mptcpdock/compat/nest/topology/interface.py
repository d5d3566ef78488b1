"""NeST's ``Interface``: one end of a ``connect()``; shaping and MPTCP endpoints live here."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Sequence

from ....api import InterfaceRef, caller_location, shaping
from ....errors import TopologyError
from ....topology.model import ENDPOINT_FLAGS, Shaping
from .address import Address

if TYPE_CHECKING:
    from .network import Network
    from .node import Node

#: NeST's default (``["subflow", "fullmesh", "signal"]`` on iproute2 >= 5.19) is refused by
#: the kernel: an endpoint cannot be both signal and fullmesh. NeST's own default for older
#: iproute2, which every kernel accepts, keeps the intent: announce this address and open
#: subflows from it.
DEFAULT_ENDPOINT_FLAGS: tuple[str, ...] = ("signal", "subflow")


class Interface:
    """Created by :func:`connect`; ``pair`` is the interface at the other end."""

    def __init__(self, name: str, node: "Node", ref: InterfaceRef, network: "Network | None") -> None:
        self.name = name
        self.node = node
        self.ref = ref
        self.network = network
        self.pair: "Interface | None" = None
        self._address: Address | None = None

    # addresses ----------------------------------------------------------------------------
    @property
    def address(self) -> Address | None:
        return self._address

    @property
    def id(self) -> str:
        return self.name

    @property
    def node_id(self) -> str:
        return self.node.name

    def set_address(self, address: "str | Address") -> None:
        """Give this interface its address (AddressHelper does this for a Network's interfaces)."""
        value = Address(address)
        if value.is_default() or "/" not in value.get_addr():
            raise TopologyError(f"{value.get_addr()!r} needs a prefix length", fix="write e.g. 10.0.0.1/24")
        self._address = value
        link = self.ref.lab.topology.links[self.ref.link_index]
        end = link.a if self.ref.side == 0 else link.b
        end.address = value.get_addr(with_subnet=False)
        if link.subnet is None:
            link.subnet = value.get_subnet()

    def get_address(self, ipv4: bool = True, ipv6: bool = True, as_list: bool = False) -> "Address | list[Address]":
        if self._address is None:
            raise TopologyError(f"interface {self.name!r} of node {self.node.name!r} has no address yet",
                                source=caller_location()[0], line=caller_location()[1],
                                fix="call AddressHelper.assign_addresses() (or set_address) first")
        return [self._address] if as_list else self._address

    def subnet(self) -> ipaddress.IPv4Network | None:
        if self._address is not None:
            return ipaddress.IPv4Network(self._address.get_subnet())
        if self.network is not None:
            return self.network.subnet
        return None

    # shaping ------------------------------------------------------------------------------
    def set_attributes(self, bandwidth: Any, delay: Any, qdisc: str | None = None, **kwargs: Any) -> None:
        """Rate and delay of what this interface sends (htb, and netem for the delay)."""
        if qdisc is not None or kwargs:
            raise TopologyError(f"qdisc {qdisc!r} cannot be chosen here: mptcpdock shapes every link end "
                                "with htb (plus netem for delay, jitter and loss)",
                                source=caller_location()[0], line=caller_location()[1],
                                fix="drop the qdisc argument")
        self._shape(rate=_text(bandwidth), delay=_text(delay))

    def set_bandwidth(self, bandwidth: Any) -> None:
        self._shape(rate=_text(bandwidth))

    def set_delay(self, delay: Any) -> None:
        self._shape(delay=_text(delay))

    def _shape(self, **values: Any) -> None:
        link = self.ref.lab.topology.links[self.ref.link_index]
        field = f"links[{self.ref.link_index}].egress.{self.node.name}"
        new = shaping(field=field, source=self.ref.lab.topology.source, line=caller_location()[1], **values)
        link.egress[self.node.name] = link.egress.get(self.node.name, Shaping()).merged(new)

    # MPTCP --------------------------------------------------------------------------------
    def enable_mptcp_endpoint(self, flags: Sequence[str] = DEFAULT_ENDPOINT_FLAGS) -> None:
        """Make this interface's address an MPTCP endpoint (``ip mptcp endpoint add``)."""
        flags = tuple([flags] if isinstance(flags, str) else flags)
        source, line = caller_location()
        unknown = [flag for flag in flags if flag not in ENDPOINT_FLAGS]
        if unknown or not flags:
            raise TopologyError(f"endpoint flags {list(flags)} are not valid", source=source, line=line,
                                fix="use signal, subflow, backup and/or fullmesh")
        if "signal" in flags and "fullmesh" in flags:
            raise TopologyError("the kernel refuses an endpoint that is both signal and fullmesh",
                                source=source, line=line, fix='use ["signal"] or ["subflow", "fullmesh"]')
        mptcp = self.node.ref.model.mptcp
        existing = next((ep for ep in mptcp.endpoints if ep.interface == self.name), None)
        if existing is not None:
            raise TopologyError(f"interface {self.name!r} already is an MPTCP endpoint ({', '.join(existing.flags)}); "
                                "the kernel refuses a second endpoint for the same address",
                                source=source, line=line, fix="enable each interface once")
        self.node.ref.endpoint(self.name, *flags)

    def get_mptcp_endpoints(self) -> dict[str, tuple[str, ...]]:
        """{address: flags} of this interface's endpoint (empty when it has none)."""
        for endpoint in self.node.ref.model.mptcp.endpoints:
            if endpoint.interface == self.name:
                address = self._address.get_addr(with_subnet=False) if self._address else ""
                return {address: endpoint.flags}
        return {}

    def __repr__(self) -> str:
        return f"Interface({self.name!r})"


def _text(value: Any) -> Any:
    """NeST accepts its Bandwidth/Delay objects or strings; both print as '10mbit' / '10ms'."""
    for attribute in ("string_value", "value"):
        if hasattr(value, attribute):
            return getattr(value, attribute)
    return value


__all__ = ["Interface", "DEFAULT_ENDPOINT_FLAGS"]
