"""mptcpdock: emulate networks out of Docker containers for real Multipath TCP experiments.

One package per stage of the pipeline; imports point only down this list (checked by
tests/test_layout.py), and docs/architecture.md tells what flows between the stages:

    cli/          every click command (the only package that imports click)
    compat/nest/  NeST's Python API, built on mptcpdock.api
    api.py        the Python API: Lab, and running lab scripts for export
    experiment/   running a lab's flows and collecting the results directory
    report/       a run's files -> summary, table, plots      } siblings: neither
    runtime/      Docker: up, down, probe, image, lab state   } imports the other
    plan/         routes, shaping, per-node commands, checklist (pure)
    topology/     model, YAML, validation, units (pure)
    errors.py     the errors every layer raises (imports nothing)

This module itself holds only the version and the node image's name, so every layer may
import it.
"""

__version__ = "0.1.0"

#: The node image every node runs unless its topology names another.
NODE_IMAGE = f"mptcpdock/node:{__version__}"
