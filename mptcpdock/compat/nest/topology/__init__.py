"""``from mptcpdock.compat.nest.topology import *``: NeST's topology API (Node, Router,
connect, Address, Interface)."""

from .address import Address
from .connect import connect
from .interface import Interface
from .node import Node, Router

__all__ = ["Address", "Interface", "Node", "Router", "connect"]
