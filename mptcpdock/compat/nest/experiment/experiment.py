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
import json
import os
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
from ....runtime.docker_api import run_exec
from ....runtime.progress import phase_lines
from ....topology.model import Flow as FlowModel
from ....topology.model import Topology
from ....topology.validate import validate
from .. import _live, config
from .._live import sanitize_lab_name
from .._session import session
from .._unsupported import UnsupportedClass, unsupported_attribute
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

    def _model(self, protocol: str, congestion: str | None, tool: str, bitrate: Any = None) -> FlowModel:
        return flow_model(self.source_node.name, self.destination_node.name, start=self.start_time,
                          stop=self.stop_time, dst_address=self.destination_address.get_addr(with_subnet=False),
                          src_address=self.source_address.get_addr(with_subnet=False),
                          streams=int(self.number_of_streams), protocol=protocol, congestion=congestion,
                          tool=tool, bitrate=bitrate, source=session().lab.topology.source)

    def __repr__(self) -> str:
        return (f"Flow({self.source_node!r}, {self.destination_node!r}, {self.source_address!r}, "
                f"{self.destination_address!r}, {self.start_time!r}, {self.stop_time!r}, {self.number_of_streams!r})")


class Experiment:
    """The flows to run on the topology the script built."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.flows: list[FlowModel] = []
        self._flow_lines: list[int | None] = []
        self.qdisc_stats: list[Interface] = []
        session().experiment_name = name

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

    def add_udp_flow(self, flow: Flow, target_bandwidth: Any = "1mbit", server_options: dict | None = None,
                     client_options: dict | None = None) -> None:
        """A UDP flow (iperf3 -u) at ``target_bandwidth`` per stream (NeST's default 1mbit);
        loss and jitter are reported."""
        source, line = caller_location()
        options = {**(server_options or {}), **(client_options or {})}
        if options:
            raise TopologyError(f"iperf3 options {sorted(options)} are not supported by the NeST layer",
                                source=source, line=line, fix="drop server_options/client_options")
        bitrate = target_bandwidth
        for attribute in ("string_value",):
            bitrate = getattr(bitrate, attribute, bitrate)
        self.flows.append(flow._model("udp", None, "iperf3", bitrate=bitrate))
        self._flow_lines.append(line)

    # qdisc statistics ---------------------------------------------------------------------
    def require_qdisc_stats(self, interface: Interface, stats: Any = "") -> None:
        """Record the counters of ``interface``'s qdisc (``tc -s -j qdisc show``) right after the
        lab is up and after the flows, into the results' ``qdisc-stats.json``, and print them.
        NeST samples them during the run; ``stats`` (a selection) is ignored there too."""
        source, line = caller_location()
        if stats:
            raise TopologyError(f"require_qdisc_stats(stats={stats!r}): a selection of counters is not supported "
                                "(NeST ignores it as well)", source=source, line=line,
                                fix="drop stats: every counter tc reports is recorded")
        if not isinstance(interface, Interface) or interface.get_qdisc() is None:
            raise TopologyError("Given interface hasn't been assigned any qdisc.", source=source, line=line,
                                fix="call interface.set_qdisc(...) first")
        if interface not in self.qdisc_stats:
            self.qdisc_stats.append(interface)

    def __getattr__(self, name: str) -> Any:
        return unsupported_attribute("Experiment", name)

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
        return _live.lab_name(self.name)

    def topology(self) -> Topology:
        """The model of the script's network with this experiment's flows (nothing is run)."""
        model = _live.network_model(self.lab_name())
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
        up = _live.take_over(topology) or _live.bring_up(topology, _progress)
        warning = up.state.warning()
        if warning:
            _say(f"warning: {warning}")
        result = None
        try:
            before = _qdisc_counters(up, self.qdisc_stats)
            result = run_experiment(name, topology, duration=duration, results_root=results_root,
                                    progress=_progress, bring_up_if_needed=False, baseline=baseline)
            print(render_table(result.summary), flush=True)
            if self.qdisc_stats:
                _write_qdisc_stats(result.results_dir, before, _qdisc_counters(up, self.qdisc_stats))
            _finish_captures(result.results_dir)
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


class CoapApplication(UnsupportedClass):
    fix = "use add_tcp_flow/add_udp_flow, or a topology file's 'tool: command' flow"


class MpegDashApplication(UnsupportedClass):
    fix = "use add_tcp_flow, or a topology file's 'tool: command' flow"


class SipApplication(UnsupportedClass):
    fix = "use add_udp_flow, or a topology file's 'tool: command' flow"


class Application(UnsupportedClass):
    fix = "use add_tcp_flow/add_udp_flow, or a topology file's 'tool: command' flow"


def _qdisc_counters(up: Any, interfaces: list[Interface]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(node, interface) -> the qdiscs of that interface with their counters (``tc -s -j``)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for interface in interfaces:
        result = run_exec(up.state.container(interface.node.name),
                          ["tc", "-s", "-j", "qdisc", "show", "dev", interface.name])
        if result.exit_code != 0:
            raise RuntimeFailure(f"tc -s qdisc show dev {interface.name} in {interface.node.name} failed: "
                                 f"{(result.stdout + result.stderr).strip()}")
        out[(interface.node.name, interface.name)] = json.loads(result.stdout or "[]")
        out[(interface.node.name, interface.name)].insert(0, {"_asked": interface.get_qdisc()})
    return out


def _write_qdisc_stats(results_dir: Path, before: dict, after: dict) -> None:
    """qdisc-stats.json (per interface: the qdisc asked for, all qdiscs at the start and the
    end) and one line per interface with its AQM's counters over the run."""
    records = []
    for (node, interface), end in after.items():
        asked = end[0]["_asked"]
        start = before.get((node, interface), [{}])[1:]
        records.append({"node": node, "interface": interface, "qdisc": asked, "start": start, "end": end[1:]})
        leaf = next((q for q in end[1:] if q.get("kind") == asked), None)
        first = next((q for q in start if q.get("kind") == asked), {})
        if leaf is None:
            _say(f"qdisc stats {node} {interface}: no {asked} qdisc found (tc shows "
                 f"{', '.join(q.get('kind', '?') for q in end[1:])})")
            continue
        delta = {key: leaf.get(key, 0) - first.get(key, 0) for key in ("bytes", "packets", "drops", "overlimits")}
        extra = "".join(f", {key} {leaf[key] - first.get(key, 0)}" for key in ("ecn_mark", "ce_mark") if key in leaf)
        print(f"qdisc {asked} on {node} {interface}: sent {delta['bytes']} bytes, {delta['packets']} packets, "
              f"dropped {delta['drops']}, overlimits {delta['overlimits']}{extra}, backlog {leaf.get('backlog', 0)} "
              "bytes at the end", flush=True)
    (Path(results_dir) / "qdisc-stats.json").write_text(json.dumps(records, indent=2) + "\n")


def _finish_captures(results_dir: Path) -> None:
    """Node.capture_packets' packet_count (the first N packets kept) and its copy in packet_capture/."""
    current = session()
    for (node, interface) in sorted(set(current.capture_counts) | set(current.capture_files)):
        pcap = Path(results_dir) / "captures" / f"{node}-{interface}.pcap"
        if not pcap.is_file():
            raise RuntimeFailure(f"the capture on {node} {interface} wrote no {pcap}")
        if (node, interface) in current.capture_counts:
            _keep_first_packets(pcap, current.capture_counts[(node, interface)])
        if (node, interface) in current.capture_files:
            target = Path(current.capture_files[(node, interface)])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(pcap, target)
            _say(f"capture {node} {interface}: {target}")


def _keep_first_packets(pcap: Path, count: int) -> None:
    """Cut a pcap file (libpcap format, as tcpdump -w writes it) after its first ``count`` packets."""
    data = pcap.read_bytes()
    if len(data) < 24:
        return
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offset, seen = 24, 0
    while offset + 16 <= len(data) and seen < count:
        captured = int.from_bytes(data[offset + 8:offset + 12], "little" if order == "<" else "big")
        offset += 16 + captured
        seen += 1
    pcap.write_bytes(data[:offset])


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
