"""mptcpdock: emulate networks out of Docker containers for real Multipath TCP experiments."""

__version__ = "0.1.0"

#: The node image every node runs unless its topology names another.
NODE_IMAGE = f"mptcpdock/node:{__version__}"
