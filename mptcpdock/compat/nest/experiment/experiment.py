"""NeST's ``Flow`` and ``Experiment`` on mptcpdock.

``Experiment.run()`` brings the lab up, runs its flows with :func:`mptcpdock.experiment.runner.run_experiment`
(the code behind ``mptcpdock run``, so the results directory is the same), and tears the lab
down. Errors are raised, never logged and ignored: an uncaught one ends the script with exit
status 1.

Environment:

* ``MPTCPDOCK_FLOW_DURATION`` (seconds, e.g. ``10``): every flow runs this long instead of
  its ``stop_time - start_time`` (the model keeps the script's times; the run overrides them).
* ``MPTCPDOCK_LAB``: the lab's name (default: the Experiment's name, made Docker-safe).
* ``MPTCPDOCK_RESULTS``: where results directories go (default ``results``).
* ``MPTCPDOCK_BASELINE=1``: after the flows, measure single-path TCP over each path the
  MPTCP flows used (``mptcpdock run --baseline``), for comparison in ``summary.json``.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from ....api import caller_location, env_duration, flow_model, stop_if_capturing
from ....errors import RuntimeFailure, TopologyError
from ....experiment.runner import run_experiment
from ....plan.checklist import make_checklist, render_checklist
from ....report.table import render_table
from ....runtime import lab as lab_api
from ....runtime.progress import phase_lines
from ....topology.model import Flow as FlowModel
from ....topology.model import Topology
from ....topology.validate import validate
from .. import config
from .._session import session
from ..topology.address import Address
from ..topology.interface import Interface
from ..topology.node import Node

#: NeST runs flows with netperf by default; the node image runs iperf3 (under mptcpize for MPTCP).
TOOLS = {"netperf": "iperf3", "iperf3": "iperf3"}


class Flow:
    """A flow from ``source_node`` to ``destination_address`` (on ``destination_node``)."""

    def __init__(self, source_node: Node, destination_node: Node, destination_address: "str | Address",
                 start_time: float, stop_time: float, number_of_streams: int,
                 source_address: "str | Address | None" = None) -> None:
        self.source_node = source_node
        self.destination_node = destination_node
        self.destination_address = Address(destination_address)
        self.start_time = start_time
        self.stop_time = stop_time
        self.number_of_streams = number_of_streams
        if source_address is None:
            if not source_node.interfaces:
                raise TopologyError(f"node {source_node.name!r} has no interface to send from",
                                    fix="connect it before creating the flow")
            source_address = source_node.interfaces[0].get_address()  # type: ignore[assignment]
        self.source_address = Address(source_address)  # type: ignore[arg-type]

    @staticmethod
    def setup_mptcp_connection(source_interface: Interface, destination_interface: Interface,
                               start_time: float, stop_time: float, number_of_streams: int = 1) -> "Flow":
        """NeST's MPTCP helper: configure both hosts for MPTCP and return the flow.

        As NeST does it: MPTCP on for both nodes (which forgets their earlier endpoints);
        on both, limits ``subflows = min(5, interfaces(src) * interfaces(dst) - 1)`` and
        ``add_addr_accepted = min(5, max(interfaces(src), interfaces(dst)))``; every
        interface of the source an endpoint ``[subflow, fullmesh]`` (the node image's
        iproute2 knows fullmesh), every interface of the destination ``[signal]``; the flow
        goes from the source interface's address to the destination interface's address.
        Unlike NeST (which logs and exits with status 0), a pair of hosts where neither is
        multihomed and multiaddressed raises an error."""
        source, destination = source_interface.node, destination_interface.node
        source.enable_mptcp()
        destination.enable_mptcp()
        count_src, count_dst = len(source.interfaces), len(destination.interfaces)
        add_addr_accepted = min(5, max(count_src, count_dst))
        subflows = min(5, count_src * count_dst - 1)
        source.set_mptcp_parameters(max_subflows=subflows, max_add_addr_accepted=add_addr_accepted)
        destination.set_mptcp_parameters(max_subflows=subflows, max_add_addr_accepted=add_addr_accepted)
        if not (source.is_mptcp_supported() or destination.is_mptcp_supported()):
            where, line = caller_location()
            raise TopologyError(f"neither {source.name!r} nor {destination.name!r} is multihomed and multiaddressed, "
                                "so MPTCP has no second path", source=where, line=line,
                                fix="connect one of them to the network twice, in different subnets")
        for interface in source.interfaces:
            interface.enable_mptcp_endpoint(["subflow", "fullmesh"])
        for interface in destination.interfaces:
            interface.enable_mptcp_endpoint(["signal"])
        return Flow(source, destination, destination_interface.get_address(), start_time, stop_time,  # type: ignore[arg-type]
                    number_of_streams, source_address=source_interface.get_address())  # type: ignore[arg-type]

    def _model(self, protocol: str, congestion: str | None, tool: str) -> FlowModel:
        return flow_model(self.source_node.name, self.destination_node.name, start=self.start_time,
                          stop=self.stop_time, dst_address=self.destination_address.get_addr(with_subnet=False),
                          src_address=self.source_address.get_addr(with_subnet=False),
                          streams=int(self.number_of_streams), protocol=protocol, congestion=congestion,
                          tool=tool, source=session().lab.topology.source)

    def __repr__(self) -> str:
        return (f"Flow({self.source_node!r}, {self.destination_node!r}, {self.source_address!r}, "
                f"{self.destination_address!r}, {self.start_time!r}, {self.stop_time!r}, {self.number_of_streams!r})")


class Experiment:
    """The flows to run on the topology the script built."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.flows: list[FlowModel] = []
        self._flow_lines: list[int | None] = []

    # flows --------------------------------------------------------------------------------
    def add_flow(self, flow: Flow) -> None:
        """A TCP flow with cubic (NeST's ``add_flow`` default)."""
        self._add(flow, "tcp", "cubic", "netperf", {})

    def add_tcp_flow(self, flow: Flow, congestion_algorithm: str = "cubic", tool: str = "netperf",
                     **kwargs: Any) -> None:
        self._add(flow, "tcp", congestion_algorithm, tool, kwargs)

    def add_mptcp_flow(self, flow: Flow, congestion_algorithm: str = "cubic", tool: str = "netperf",
                       **kwargs: Any) -> None:
        """An MPTCP flow (run under mptcpize). NeST's defaults: cubic; netperf runs as iperf3."""
        self._add(flow, "mptcp", congestion_algorithm, tool, kwargs)

    def add_udp_flow(self, flow: Flow, *args: Any, **kwargs: Any) -> None:
        raise TopologyError("UDP flows are not supported by mptcpdock", source=caller_location()[0],
                            line=caller_location()[1], fix="use add_tcp_flow or add_mptcp_flow")

    def _add(self, flow: Flow, protocol: str, congestion: str, tool: str, options: dict[str, Any]) -> None:
        source, line = caller_location()
        if tool not in TOOLS:
            raise TopologyError(f"tool {tool!r} is not available", source=source, line=line,
                                fix="use iperf3 (netperf is accepted and runs as iperf3)")
        if options:
            raise TopologyError(f"tool options {sorted(options)} are not supported by the NeST layer",
                                source=source, line=line, fix="drop them; flows run iperf3 with mptcpdock's options")
        self.flows.append(flow._model(protocol, congestion, TOOLS[tool]))  # a snapshot, as NeST deep-copies
        self._flow_lines.append(line)

    # the model ----------------------------------------------------------------------------
    def lab_name(self) -> str:
        return os.environ.get("MPTCPDOCK_LAB") or sanitize_lab_name(self.name)

    def topology(self) -> Topology:
        """The model of the script's network with this experiment's flows (nothing is run)."""
        model = copy.deepcopy(session().lab.topology)
        model.name = self.lab_name()
        for link in model.links:
            _collapse_symmetric_shaping(link)
        for index, (flow, line) in enumerate(zip(self.flows, self._flow_lines)):
            model.flows.append(copy.deepcopy(flow))
            if line:
                model.locations[f"flows[{index}]"] = line
        return model

    # running ------------------------------------------------------------------------------
    def run(self) -> None:
        """Bring the lab up, run the flows, write the results, take the lab down.

        Raises on any failure, an incomplete run included (an uncaught exception ends the
        script with exit status 1)."""
        topology = self.topology()
        stop_if_capturing(topology)
        lab_api.prepare(topology)  # every input error before Docker is touched
        duration = env_duration()
        baseline = os.environ.get("MPTCPDOCK_BASELINE", "").strip() not in ("", "0")
        results_root = Path(os.environ.get("MPTCPDOCK_RESULTS") or "results")
        name = topology.name
        _say(f"Running experiment {self.name} as lab {name!r}"
             + (f" (flows shortened to {duration:g} s by MPTCPDOCK_FLOW_DURATION)" if duration else ""))
        if config.get_value("show_mptcp_checklist"):
            print(_checklist_text(topology), flush=True)
        up = lab_api.bring_up(topology, allow_no_impairments=True, progress=_progress)
        warning = up.state.warning()
        if warning:
            _say(f"warning: {warning}")
        result = None
        try:
            result = run_experiment(name, topology, duration=duration, results_root=results_root,
                                    progress=_progress, bring_up_if_needed=False, baseline=baseline)
            print(render_table(result.summary), flush=True)
            if config.get_value("show_mptcp_checklist"):
                print(_after_run_checklist(result.results_dir), flush=True)
            _say(f"results: {result.results_dir}")
        finally:
            if config.trace_enabled():
                _write_commands(result.results_dir if result else None, up)
            if config.get_value("delete_namespaces_on_termination"):
                lab_api.tear_down(name)
            else:
                _say(f"lab {name!r} stays up (delete_namespaces_on_termination is False); "
                     f"remove it with: mptcpdock down {name}")
        if result is not None and result.incomplete:
            reasons = "; ".join(result.summary.reasons) or "see run.json"
            raise RuntimeFailure(f"the experiment did not complete ({reasons}); results in {result.results_dir}")

    def __repr__(self) -> str:
        return f"Experiment({self.name!r})"


def sanitize_lab_name(name: str) -> str:
    """A Docker-safe lab name from an experiment name: lower case, [a-z0-9_-], <= 24 characters."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", name.lower()).strip("-_")[:24].rstrip("-_")
    return cleaned or "nest"


def _collapse_symmetric_shaping(link: Any) -> None:
    """NeST shapes each interface; when both ends of a link ask for the same, say it once on
    the link (as a topology file would)."""
    ends = [link.egress.get(link.a.node), link.egress.get(link.b.node)]
    if ends[0] is not None and ends[0] == ends[1] and link.shaping.is_empty:
        link.shaping, link.egress = ends[0], {}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_progress = phase_lines(lambda message: print(f"  {message}", file=sys.stderr, flush=True))


def _checklist_text(topology: Topology) -> str:
    """NeST's MPTCP checklist (and the subflows each flow should open), before traffic."""
    return render_checklist(make_checklist(validate(topology)))


def _after_run_checklist(results_dir: Path) -> str:
    """The after-run part of the results' checklist.txt: subflows expected vs established."""
    text = (Path(results_dir) / "checklist.txt").read_text() if (Path(results_dir) / "checklist.txt").exists() else ""
    marker = text.find("After the run")
    return text[marker:].rstrip() if marker >= 0 else "(no after-run checklist was written)"


def _write_commands(results_dir: Path | None, up: Any) -> None:
    """log_level trace: commands.sh in the current directory, as NeST writes it (the run's
    full trace; only the trace of 'up' when the run failed before writing one)."""
    recorded = Path(results_dir) / "commands.sh" if results_dir else None
    target = Path("commands.sh")
    if recorded is not None and recorded.is_file():
        shutil.copyfile(recorded, target)
    else:
        up.trace.write(target)
    target.chmod(0o755)
    _say(f"trace: {target.resolve()}")
