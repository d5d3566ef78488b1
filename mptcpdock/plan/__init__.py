"""Stage 2, what a lab needs, computed from a validated topology without touching Docker:
routes and policy rules (``routing``), link shaping as tc lines (``shaping``), the per-node
command lists ``up`` applies (``commands``: the :class:`~mptcpdock.plan.commands.Plan`),
and NeST's MPTCP checklist with the subflows each flow should open (``checklist``).

Pure: topology in, dataclasses and text out. May import :mod:`mptcpdock.topology`,
:mod:`mptcpdock.errors` and the package root.
"""
