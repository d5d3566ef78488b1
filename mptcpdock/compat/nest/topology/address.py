"""NeST's ``Address``: an IPv4 address with its prefix length, or "DEFAULT"."""

from __future__ import annotations

import ipaddress

from ....errors import TopologyError


class Address:
    """``Address("10.0.0.1/24")``, ``Address("10.0.0.0/24")`` (a subnet) or ``Address("DEFAULT")``."""

    def __init__(self, addr_str: "str | Address") -> None:
        if isinstance(addr_str, Address):
            addr_str = addr_str.get_addr()
        text = str(addr_str).strip()
        if text.upper() == "DEFAULT":
            self.ip_addr = "default"
            return
        try:
            if "/" in text:
                ipaddress.IPv4Interface(text)
            else:
                ipaddress.IPv4Address(text)
        except ValueError:
            raise TopologyError(f"{text!r} is not an IPv4 address (the NeST layer supports IPv4)",
                                fix="write e.g. 10.0.0.1/24 or 10.0.0.0/24") from None
        self.ip_addr = text

    def get_addr(self, with_subnet: bool = True) -> str:
        return self.ip_addr if with_subnet else self.ip_addr.split("/")[0]

    def get_subnet(self) -> str:
        if self.ip_addr == "default":
            raise TopologyError("the DEFAULT address has no subnet")
        return str(ipaddress.IPv4Interface(self.ip_addr).network)

    def is_subnet(self) -> bool:
        return self.ip_addr != "default" and "/" in self.ip_addr and self.ip_addr == self.get_subnet()

    def is_default(self) -> bool:
        return self.ip_addr == "default"

    def __str__(self) -> str:
        return self.ip_addr

    def __repr__(self) -> str:
        return f"Address({self.ip_addr!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Address, str)):
            return self.get_addr() == Address(other).get_addr()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.ip_addr)
