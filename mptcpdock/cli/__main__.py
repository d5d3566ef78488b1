"""``python -m mptcpdock.cli``: the same as the ``mptcpdock`` command."""

from .main import main

main()
