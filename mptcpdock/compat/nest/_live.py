"""The network a NeST script has built so far, as a model and, when a call needs it at once
(``Node.ping``), as a running lab.

NeST runs every call at once; the layer builds a model and brings it up in
``Experiment.run()``. ``Node.ping`` needs the network while the script is still building, so
it brings the model as it is up (the lab ``Experiment.run()`` then uses, when its network has
not changed since; otherwise that lab is taken down and the experiment's brought up). A lab
brought up for a ping is taken down at exit if no experiment took it over (as NeST deletes
its namespaces).
"""

from __future__ import annotations

import atexit
import copy
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from ...runtime import lab as lab_api
from ...runtime.apply import UpResult
from ...topology.loader import topology_to_dict
from ...topology.model import Topology
from . import config
from ._scope import PerScript
from ._session import session

#: The lab's name when neither MPTCPDOCK_LAB nor an Experiment names it.
DEFAULT_LAB = "nest"


@dataclass
class LiveLab:
    name: str
    network: dict[str, Any]  # the nodes and links it was brought up with (topology_to_dict)
    up: UpResult


_live: PerScript[dict[str, LiveLab]] = PerScript(dict)


def sanitize_lab_name(name: str) -> str:
    """A Docker-safe lab name from an experiment name: lower case, [a-z0-9_-], <= 24 characters."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:24].rstrip("-_")
    return cleaned or DEFAULT_LAB


def lab_name(experiment_name: str | None = None) -> str:
    """MPTCPDOCK_LAB, else the experiment's name made Docker-safe, else the last Experiment
    created, else ``nest``."""
    name = experiment_name if experiment_name is not None else session().experiment_name
    return os.environ.get("MPTCPDOCK_LAB") or (sanitize_lab_name(name) if name else DEFAULT_LAB)


def network_model(name: str) -> Topology:
    """A copy of the model the script built (no flows), named ``name``."""
    model = copy.deepcopy(session().lab.topology)
    model.name = name
    for link in model.links:
        _collapse_symmetric_shaping(link)
    return model


def netem_required() -> bool:
    """Whether the script asked for netem's loss, corruption, duplication, reordering or a
    delay distribution: then a kernel without netem is an error (the experiment would
    measure something else), where plain delays are dropped with a warning."""
    return any(interface.netem_extras for node in session().nodes.values() for interface in node.interfaces)


def bring_up(topology: Topology, progress: Callable[[str], None]) -> UpResult:
    return lab_api.bring_up(topology, allow_no_impairments=not netem_required(), progress=progress)


def _network(topology: Topology) -> dict[str, Any]:
    model = copy.deepcopy(topology)
    model.flows = []
    for link in model.links:
        link.a.capture = link.b.capture = False
    data = topology_to_dict(model)
    return {"nodes": data.get("nodes"), "links": data.get("links")}


def up_now(name: str, progress: Callable[[str], None]) -> LiveLab:
    """The script's network as it is now, running as lab ``name`` (brought up if needed)."""
    labs = _live.get()
    model = network_model(name)
    live = labs.get(name)
    if live is not None and live.network == _network(model):
        return live
    release_all()
    lab_api.tear_down(name)
    up = bring_up(model, progress)
    labs[name] = LiveLab(name, _network(model), up)
    atexit.register(_at_exit, labs, name)
    return labs[name]


def take_over(topology: Topology) -> UpResult | None:
    """For Experiment.run(): the lab a ping brought up, when it is ``topology``'s name and
    network (it is the experiment's from now on); any other such lab is taken down."""
    labs = _live.get()
    live = labs.pop(topology.name, None)
    release_all()
    if live is not None and live.network == _network(topology):
        return live.up
    if live is not None:
        lab_api.tear_down(live.name)
    return None


def release_all() -> None:
    """Take down every lab a ping brought up that no experiment took over."""
    labs = _live.get()
    for name in list(labs):
        labs.pop(name)
        lab_api.tear_down(name)


def _at_exit(labs: dict[str, LiveLab], name: str) -> None:
    if name in labs and config.get_value("delete_namespaces_on_termination"):
        labs.pop(name)
        lab_api.tear_down(name)


def _collapse_symmetric_shaping(link: Any) -> None:
    """NeST shapes each interface; when both ends of a link ask for the same, say it once on
    the link (as a topology file would)."""
    ends = [link.egress.get(link.a.node), link.egress.get(link.b.node)]
    if ends[0] is not None and ends[0] == ends[1] and link.shaping.is_empty:
        link.shaping, link.egress = ends[0], {}
