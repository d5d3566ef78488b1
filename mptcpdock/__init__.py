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

This module itself holds only the version, the node image's name and where the bundled
data is (:func:`bundled_dir`), so every layer may import it.
"""

import os
from importlib.resources import files
from pathlib import Path

__version__ = "0.2.1"

#: The node image every node runs unless its topology names another; MPTCPDOCK_NODE_IMAGE
#: overrides it (e.g. a private tag while developing a new image: tests honour it too).
NODE_IMAGE = os.environ.get("MPTCPDOCK_NODE_IMAGE") or f"mptcpdock/node:{__version__}"

#: The bundled data folders: the node image's build context and the bundled topologies.
BUNDLED = ("images", "topologies")


def bundled_dir(name: str) -> Path:
    """The folder of bundled data ``name`` (one of :data:`BUNDLED`).

    An installed wheel carries it inside the package (``mptcpdock/_bundled/NAME``, copied
    there by setup.py); a source checkout and an editable install read the repository's own
    top-level folder. FileNotFoundError names both places when neither exists."""
    if name not in BUNDLED:
        raise ValueError(f"no bundled data {name!r}; there is {', '.join(BUNDLED)}")
    packaged = Path(str(files(__name__).joinpath("_bundled", name)))
    if packaged.is_dir():
        return packaged
    repository = Path(__file__).resolve().parent.parent
    checkout = repository / name
    if (repository / "setup.py").is_file() and checkout.is_dir():  # not some other site-packages/NAME
        return checkout
    raise FileNotFoundError(f"the bundled {name} are neither in the package ({packaged}) nor in a source "
                            f"checkout ({checkout}); reinstall mptcpdock")
