"""``from mptcpdock.compat.nest.topology import *``: NeST's topology API (Node, Router,
connect, Address, Interface; Switch raises: docs/nest.md lists what is not supported)."""

from .._unsupported import UnsupportedClass
from .address import Address
from .connect import connect
from .interface import Interface
from .node import Node, Router


class Switch(UnsupportedClass):
    fix = "connect the nodes through a Router (every link is point to point here)"


__all__ = ["Address", "Interface", "Node", "Router", "Switch", "connect"]
