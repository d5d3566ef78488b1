"""Run the flows of a topology on a running lab and collect everything: ``mptcpdock run``.

Order of events (each node gets as few execs as possible):

1. Check the input completely (flows, ports, MPTCP on both ends, the lab is up or can be
   brought up) - nothing starts before that.
2. On every node that runs a monitor or ends a flow: ONE exec starts the node's agent
   (``ip -ts mptcp monitor`` where wanted, and one sampler loop writing ``ss -tinMOH`` and
   ``/proc/net/dev`` every ``sample_period`` seconds) and records the node's settings.
3. One exec per flow starts its iperf3 server (``-s -1 -J``, under ``mptcpize`` for MPTCP)
   and returns once it listens; then each client starts, detached, at its start time.
4. When every client is done (or at Ctrl-C), ONE exec per node stops what the run started
   (by pid files), and the node's run directory is copied out (``docker cp``).
5. The files are laid out under ``results/<lab>-<YYYYmmdd-HHMMSS>/``, then the summary,
   the checklist (before and after), ``commands.sh`` and the plots are written.

Monitors: the nodes whose topology says ``mptcp.monitor: true`` (their logs are the
published ones, as in NeST), plus both ends of every MPTCP flow, because the after-run
check (subflows expected vs established) needs a monitor on the flow's ends. The summary
marks which monitors were asked for and which were added for the check.

Baseline (a flow's ``baseline: true``, or ``baseline=True`` / ``--baseline`` for every MPTCP
flow): after the flows, the MPTCP flow's subflow paths (as its monitor saw them; the
checklist's expected ones without monitor data) are measured again, one at a time, with a
single-path TCP flow each (bound to the subflow's local address), for the same duration:
their sum is what the MPTCP goodput is compared with (``baseline.ratio`` in summary.json).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import math
import shlex
import signal
import tarfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..errors import LabNotFound, MptcpdockError, RuntimeFailure, TopologyError
from ..plan.checklist import Checklist, make_checklist, render_checklist
from ..plan.commands import BLACKHOLE_TIMEOUT, apply_kernel_sysctls, make_plan
from ..plan.events import EventPlan, plan_events, restore_text, schedule_text
from ..report.parsers import parse_iperf3, parse_iperf3_version, parse_monitor
from ..report.layout import arrange_files
from ..report.plots import draw_all
from ..report.records import Summary
from ..report.summary import build_summary, connections_from_monitor, write_summary
from ..runtime import docker_api, lab as lab_api
from ..runtime.apply import parallel
from ..runtime.probe import KernelProbe, require_for_events
from ..runtime.progress import Progress, Step
from ..runtime.state import LabState
from ..topology.loader import topology_to_dict, topology_to_yaml
from ..topology.model import Flow, Topology
from ..topology.validate import validate
from .node_scripts import BASH_SCRIPTS, EVENTS, SAMPLER, SCRIPTS

RUN_DIR_IN_NODE = "/tmp/mptcpdock-run"
LEAD_SECONDS = 1.0  # between the servers listening and t=0 (more with many agents: see _lead)
EVENT_INTERVAL = 0.1  # iperf3 -i during runs with events or traces (the goodput gap needs it)
FINISH_GRACE = 5  # seconds the servers get to end after their clients
CONNECT_TIMEOUT_MS = 5000
BASELINE_GAP = 1.0  # seconds between baseline flows
NATIVE_MPTCP_IPERF3 = (3, 19)  # iperf3 with --mptcp (-m)


@dataclass
class RunResult:
    results_dir: Path
    summary: Summary
    incomplete: bool
    checklist: Checklist | None = None  # the one shown before traffic; the summary has the outcomes


@dataclass
class RunCommand:
    """One command of the run, for commands.sh."""

    time: float
    node: str | None
    container: str | None
    argv: list[str]
    detach: bool = False
    comment: str | None = None


@dataclass
class ScheduledFlow:
    flow: Flow
    role: str = "flow"  # flow | baseline
    baseline_of: str | None = None
    exec_id: str | None = None
    launched_at: float | None = None
    finished: bool = False
    timed_out: bool = False
    checked_at: float = 0.0  # when its exec was last asked whether it runs (Docker host's clock)


@dataclass
class Run:
    """Everything one run knows while it goes."""

    lab: str
    topology: Topology  # resolved, with the run's flows
    state: LabState
    results_dir: Path
    node_dir: str
    sample_period: float
    monitors_requested: list[str]
    monitors_added: list[str]
    agents: list[str]  # nodes with an agent (monitor and/or sampler)
    mptcp_tool: str  # mptcpize | native
    events: EventPlan | None = None  # the schedules of the run's events and traces
    captures: dict[str, list[str]] = field(default_factory=dict)  # node -> interfaces tcpdump records
    interval: float = 1.0  # iperf3 -i
    commands: list[RunCommand] = field(default_factory=list)
    scheduled: list[ScheduledFlow] = field(default_factory=list)
    t0: float = 0.0  # epoch seconds of the Docker host's clock (every node's)
    clock_offset: float = 0.0  # the Docker host's clock minus this machine's
    agent_clocks: dict[str, float] = field(default_factory=dict)  # when each agent started (host clock)
    reasons: list[str] = field(default_factory=list)  # why the run is incomplete
    up_trace: str = ""
    engine_lost: BaseException | None = None  # the error by which the engine went away, if it did
    slowest_exec: float = 0.0  # seconds: the slowest exec round trip so far (the engine's latency)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def container(self, node: str) -> str:
        return self.state.container(node)

    def host_now(self) -> float:
        """Now on the Docker host's clock (which t0 and every node use)."""
        return time.time() + self.clock_offset

    def record(self, node: str | None, argv: list[str], *, detach: bool = False, comment: str | None = None) -> None:
        with self._lock:
            self.commands.append(RunCommand(time.time(), node, self.container(node) if node else None, list(argv),
                                            detach, comment))

    def exec(self, node: str, argv: list[str], comment: str | None = None) -> docker_api.ExecResult:
        self.record(node, argv, comment=comment)
        started = time.perf_counter()
        try:
            return docker_api.run_exec(self.container(node), argv)
        finally:
            self.saw_exec(time.perf_counter() - started)

    def saw_exec(self, seconds: float) -> None:
        """Keep the slowest exec round trip: t0's lead, the baselines' start and the flows'
        deadlines grow with it (a software-emulated VM engine takes a second or more per exec
        under load, the local engine some 30 ms)."""
        with self._lock:
            self.slowest_exec = max(self.slowest_exec, seconds)

    def engine_margin(self, execs: int = 1) -> float:
        """Seconds for ``execs`` rounds of exec at the slowest latency seen, at least LEAD_SECONDS."""
        return max(LEAD_SECONDS, execs * self.slowest_exec)


# -- input: which lab, which flows ------------------------------------------------------------


def _lab_is_up(lab: str) -> LabState | None:
    try:
        state = lab_api.lab_state(lab)  # refuses a lab that lives on another engine
    except LabNotFound:
        return None
    running = lab_api.running_containers(state)  # on every engine the lab is on
    if running < len(state.nodes):
        raise LabNotFound(f"lab {lab!r} has a state file but only {running} of its {len(state.nodes)} containers "
                          f"run; run 'mptcpdock down {lab}' and bring it up again")
    return state


def _without_captures(topology: Topology) -> Topology:
    out = copy.deepcopy(topology)
    for link in out.links:
        link.a.capture = link.b.capture = False
    return out


def _same_network(a: Topology, b: Topology) -> bool:
    """Same nodes and links (what is captured is the run's business, not the network's)."""
    left, right = topology_to_dict(_without_captures(a)), topology_to_dict(_without_captures(b))
    return left["nodes"] == right["nodes"] and left["links"] == right["links"]


def _with_duration(topology: Topology, duration: float | None) -> Topology:
    if duration is None:
        return topology
    if duration <= 0:
        raise MptcpdockError(f"--duration {duration:g}: the duration must be positive")
    out = copy.deepcopy(topology)
    out.locations = topology.locations
    for flow in out.flows:
        flow.duration = float(duration)
    return out


def _check_flows(topology: Topology, state: LabState | None) -> None:
    """Problems validate() cannot see: no flows, MPTCP switched off by a sysctl or the kernel."""
    if not topology.flows:
        raise TopologyError("the topology has no flows", field="flows", source=topology.source,
                            line=topology.locations.get("flows"),
                            fix="add a 'flows:' list, e.g. '- {src: h1, dst: h2, protocol: mptcp}' "
                                "(see docs/experiments.md)")
    for index, flow in enumerate(topology.flows):
        if flow.protocol != "mptcp":
            continue
        for key in ("src", "dst"):
            node = getattr(flow, key)
            if topology.nodes[node].sysctls.get("net.mptcp.enabled") == "0":
                raise TopologyError(f"MPTCP flow but node {node!r} sets net.mptcp.enabled=0", source=topology.source,
                                    field=f"flows[{index}].protocol", line=topology.locations.get(f"flows[{index}]"),
                                    fix="remove that sysctl or use protocol: tcp")
    if state is not None and state.probe and not state.probe.get("mptcp", True):
        raise MptcpdockError(f"the Docker host's kernel ({state.probe.get('kernel')}) has no MPTCP; "
                             "MPTCP flows cannot run here (use protocol: tcp, or a host whose kernel has CONFIG_MPTCP)")


def resolve_inputs(lab: str | None, topology: Topology | None, duration: float | None,
                   bring_up_if_needed: bool) -> tuple[str, Topology, LabState | None]:
    """(lab name, resolved topology with the run's flows, the lab's state or None when it is not up).

    Every input error is raised here, before anything is started."""
    if topology is None:
        name = lab_api.resolve_lab(lab)
        state = _lab_is_up(name)
        if state is None:
            raise LabNotFound(f"lab {name!r} is not running; run 'mptcpdock up TOPOLOGY.yaml' first, or give "
                              "the topology file to 'mptcpdock run' to bring it up")
        resolved = _with_duration(state.topology(), duration)
        resolved = validate(resolved)
    else:
        model = copy.deepcopy(topology)
        model.locations = topology.locations
        if lab:
            model.name = lab
        name = model.name
        resolved = validate(_with_duration(model, duration))
        state = _lab_is_up(name)
        if state is not None and not _same_network(resolved, state.topology()):
            raise MptcpdockError(f"lab {name!r} is up with a different network (its nodes or links differ from "
                                 f"{topology.source or 'this topology'}); run 'mptcpdock down {name}' first, or "
                                 "give --lab another name")
        if state is not None:
            _check_layout(resolved, state)
        if state is None and not bring_up_if_needed:
            raise LabNotFound(f"lab {name!r} is not running; run 'mptcpdock up' first")
    _check_flows(resolved, state)
    if state is not None and state.probe:
        plan = make_plan(resolved, drop_impairments=state.impairments_dropped)
        require_for_events(KernelProbe.from_dict(state.probe), plan_events(resolved, plan).kernel_needs,
                           resolved.source)
    return name, resolved, state


def _check_layout(resolved: Topology, state: LabState) -> None:
    """The qdiscs the run's events need (a netem leaf where delay/loss will change) must be
    the ones the lab was brought up with: a qdisc is never replaced mid-run."""
    want = make_plan(resolved, drop_impairments=state.impairments_dropped)
    have = make_plan(state.topology(), drop_impairments=state.impairments_dropped)
    for name, node in want.nodes.items():
        if node.tc_lines() != have.nodes[name].tc_lines():
            raise MptcpdockError(f"lab {state.lab!r} is up with other qdiscs on {name} than these events need (an "
                                 "egress whose delay, jitter or loss an event changes needs a netem leaf from 'up' "
                                 f"on); run 'mptcpdock down {state.lab}' and give the topology to 'run' again")


# -- commands --------------------------------------------------------------------------------


def _seconds(value: float) -> str:
    """iperf3 takes whole seconds for -t."""
    return str(max(1, int(math.ceil(value - 1e-9))))


def _mptcp_wrap(argv: list[str], protocol: str, tool: str) -> list[str]:
    if protocol != "mptcp":
        return argv
    return argv + ["--mptcp"] if tool == "native" else ["mptcpize", "run", *argv]


def _substitute(argv: list[str], flow: Flow) -> list[str]:
    """A command flow's argv with its placeholders filled in, argument by argument (no shell)."""
    values = {"{dst_address}": str(flow.dst_address), "{src_address}": str(flow.src_address or ""),
              "{port}": str(flow.port), "{duration}": _seconds(flow.duration)}
    out = []
    for arg in argv:
        for key, value in values.items():
            arg = arg.replace(key, value)
        out.append(arg)
    return out


def server_argv(flow: Flow, tool: str, interval: float = 1.0, bind: bool = False) -> list[str] | None:
    """The flow's server command; None: a command flow without a server. ``bind``: listen on
    the flow's destination address only (``-B``), not on every address of both families:
    mptcpd 0.13's plugins match a connection's local address to an interface, and a
    dual-stack listener's IPv4 connections carry IPv4-mapped IPv6 ones."""
    if flow.tool == "command":
        return _mptcp_wrap(_substitute(flow.server, flow), flow.protocol, "mptcpize") if flow.server else None
    argv = ["iperf3", "-s", "-1", "-p", str(flow.port), "-J"] + (["-i", f"{interval:g}"] if interval != 1 else [])
    if flow.protocol == "udp" or bind:  # the UDP stream's replies must come from the address the client sent to, whatever
        argv += ["-B", str(flow.dst_address)]  # the routes back prefer (ex.1's h2 answers 192.168.11.2 via eth2a)
    return _mptcp_wrap(argv, flow.protocol, tool)


#: iperf3's TCP block size (-l) when intervals are shorter than 1 s (runs with events or traces).
INTERVAL_BLOCK = "16K"


def client_argv(flow: Flow, tool: str, interval: float = 1.0) -> list[str]:
    if flow.tool == "command":
        return _mptcp_wrap(_substitute(flow.command, flow), flow.protocol, "mptcpize")
    amount = ["-n", str(flow.bytes)] if flow.bytes else ["-t", _seconds(flow.duration)]
    argv = ["iperf3", "-c", str(flow.dst_address), "-p", str(flow.port), *amount,
            "-i", f"{interval:g}", "-J", "--connect-timeout", str(CONNECT_TIMEOUT_MS)]
    if flow.protocol == "udp":
        argv.append("-u")
    elif interval < 1:
        # iperf3 3.16+ (trixie's 3.18) reads whole 128 KiB blocks: at a few Mbit/s a 0.1-1 s
        # interval then counts 1, 2 or 3 blocks (measured: 2.10/3.15 Mbit/s alternating at a
        # steady 2.88). 16 KiB blocks keep short intervals within ~5%.
        argv += ["-l", INTERVAL_BLOCK]
    if flow.bitrate is not None:
        argv += ["-b", str(flow.bitrate)]
    if flow.streams > 1:
        argv += ["-P", str(flow.streams)]
    if flow.src_address:
        argv += ["-B", flow.src_address]
    if flow.congestion:
        argv += ["-C", flow.congestion]
    if flow.reverse:
        argv.append("-R")
    return _mptcp_wrap(argv, flow.protocol, tool)


def _script(name: str) -> list[str]:
    return ["sh", "-c", SCRIPTS[name], f"mptcpdock-{name.lower()}"]


def _mptcp_tool(state: LabState) -> str:
    version = parse_iperf3_version(str(state.probe.get("iperf3", "")))
    return "native" if version and version >= NATIVE_MPTCP_IPERF3 else "mptcpize"


# -- the run ---------------------------------------------------------------------------------


def _new_results_dir(root: Path, lab: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    base = f"{lab}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, index = root / base, 1
    while path.exists():
        index += 1
        path = root / f"{base}-{index}"
    path.mkdir()
    return path


def resolve_captures(topology: Topology, extra: Sequence[str] = ()) -> dict[str, list[str]]:
    """node -> interfaces to capture on: the link ends with ``capture: true`` and the run's
    ``node:interface`` items (``node`` alone: all its interfaces). Unknown ones: one line."""
    interfaces: dict[str, list[str]] = {}
    for link in topology.links:
        for end in (link.a, link.b):
            interfaces.setdefault(end.node, []).append(str(end.interface))
    out: dict[str, list[str]] = {}

    def add(node: str, iface: str) -> None:
        if iface not in out.setdefault(node, []):
            out[node].append(iface)

    for link in topology.links:
        for end in (link.a, link.b):
            if end.capture:
                add(end.node, str(end.interface))
    for item in extra:
        node, _, iface = str(item).partition(":")
        if node not in topology.nodes:
            raise MptcpdockError(f"--capture {item}: no node {node!r} (nodes: {', '.join(topology.nodes)}); "
                                 "write NODE:INTERFACE, e.g. h2:eth2a")
        if iface and iface not in interfaces.get(node, []):
            raise MptcpdockError(f"--capture {item}: {node} has no interface {iface!r} (it has: "
                                 f"{', '.join(interfaces.get(node, [])) or 'none'})")
        for name in ([iface] if iface else interfaces.get(node, [])):
            add(node, name)
    return {node: ifaces for node, ifaces in out.items() if ifaces}


def _start_captures(run: Run, progress: Progress) -> None:
    if not run.captures:
        return
    progress(f"capturing on {', '.join(f'{n}:{i}' for n, ifaces in run.captures.items() for i in ifaces)} "
             f"(snaplen {run.topology.snaplen})")

    def start(node: str) -> None:
        argv = _script("CAPTURE") + [run.node_dir, str(run.topology.snaplen), *run.captures[node]]
        result = run.exec(node, argv, comment=f"{node}: tcpdump -s {run.topology.snaplen} -U -w on "
                                              f"{', '.join(run.captures[node])}")
        if result.exit_code != 0:
            raise RuntimeFailure(f"packet capture on {node!r} failed: {(result.stdout + result.stderr).strip()}")

    parallel(start, list(run.captures), 8)


def _plan_run(name: str, topology: Topology, state: LabState, results_root: Path, sample_period: float,
              captures: dict[str, list[str]] | None = None) -> Run:
    requested = [node for node, settings in topology.nodes.items() if settings.mptcp.monitor]
    ends = {node for flow in topology.flows for node in (flow.src, flow.dst)}
    mptcp_ends = {node for flow in topology.flows if flow.protocol == "mptcp" for node in (flow.src, flow.dst)}
    added = sorted(mptcp_ends - set(requested))
    plan = make_plan(topology, drop_impairments=state.impairments_dropped)
    first = plan_events(topology, plan)
    scheduled_nodes = {name for name, schedule in first.schedules.items() if not schedule.empty}
    captures = captures or {}
    agents = [node for node in topology.nodes
              if node in ends or node in requested or node in scheduled_nodes or node in captures]
    events = plan_events(topology, plan, snap_nodes=agents) if not first.empty else None
    results_dir = _new_results_dir(results_root, name)
    return Run(lab=name, topology=topology, state=state, results_dir=results_dir,
               node_dir=f"{RUN_DIR_IN_NODE}/{results_dir.name}", sample_period=sample_period,
               monitors_requested=requested, monitors_added=added, agents=agents, mptcp_tool=_mptcp_tool(state),
               scheduled=[ScheduledFlow(flow) for flow in topology.flows], events=events, captures=captures,
               interval=EVENT_INTERVAL if events else 1.0)


def _put_schedule(run: Run, node: str) -> bool:
    """Copy the node's schedule (and restore lines) into its run directory; False: none."""
    if run.events is None or run.events.schedules[node].empty:
        return False
    schedule = run.events.schedules[node]
    files = {"schedule.txt": schedule_text(schedule).encode(), "restore.txt": restore_text(schedule).encode()}
    base, _, sub = run.node_dir.partition("/mptcpdock-run/")
    run.record(None, ["docker", "cp", f"schedule-{node}.tar", f"{run.container(node)}:{run.node_dir}/"],
               comment=f"{node}: its schedule ({len(schedule.steps)} steps, {len(schedule.setup)} before t=0, "
                       f"{len(schedule.restore)} after the run): see events/schedules/{node}.txt")
    docker_api.copy_to_container(run.container(node), base, f"mptcpdock-run/{sub}", files)
    return True


def _start_agent(run: Run, node: str) -> None:
    monitor = node in run.monitors_requested or node in run.monitors_added
    scheduled = _put_schedule(run, node)
    argv = _script("AGENT") + [run.node_dir, "1" if monitor else "0", str(round(run.sample_period * 1e6)), EVENTS,
                              SAMPLER]
    what = ("ip -ts mptcp monitor > monitor.log; " if monitor else "") + \
        f"every {run.sample_period:g} s: ss -tinMOH, /proc/net/dev > samples.txt" + \
        ("; the event agent waits for t0, then applies schedule.txt" if scheduled else "")
    result = run.exec(node, argv, comment=f"{node}: agent: {what}")
    if result.exit_code != 0 or "started" not in result.stdout:
        raise RuntimeFailure(f"starting the monitor/sampler on {node!r} failed: {(result.stdout + result.stderr).strip()}")
    clock = next((line.split()[1] for line in result.stdout.splitlines() if line.startswith("started ")), None)
    if clock and clock.isdigit():
        run.agent_clocks[node] = int(clock) / 1e6


def _start_server(run: Run, item: ScheduledFlow) -> float | None:
    """Start the flow's server; the Docker host's clock (epoch seconds) when it listened."""
    flow = item.flow
    command = server_argv(flow, run.mptcp_tool, run.interval,
                          bind=run.topology.nodes[flow.dst].mptcp.uses_mptcpd)
    if command is None:
        return None
    argv = _script("SERVER") + [run.node_dir, f"{flow.name}.server", str(flow.port), *command]
    result = run.exec(flow.dst, argv, comment=f"{flow.dst}: server of flow {flow.name}: {shlex.join(command)}")
    if result.exit_code != 0:
        raise RuntimeFailure(f"flow {flow.name}: the {flow.tool} server on {flow.dst!r} port {flow.port} did not start: "
                             f"{(result.stdout + result.stderr).strip()}")
    clock = next((line.split()[1] for line in result.stdout.splitlines()
                  if line.startswith("listening ") and len(line.split()) > 1), "")
    return int(clock) / 1e6 if clock.isdigit() else None


def _launch_client(run: Run, item: ScheduledFlow) -> None:
    """Start the client's exec now, detached: it waits in the node until t0 + start (host clock)."""
    flow = item.flow
    command = client_argv(flow, run.mptcp_tool, run.interval)
    at = int(round((run.t0 + flow.start) * 1_000_000))
    argv = _script("CLIENT") + [run.node_dir, f"{flow.name}.client", str(at), *command]
    run.record(flow.src, argv, detach=True,
               comment=f"t={flow.start:g} s {flow.src}: client of flow {flow.name}: {shlex.join(command)}")
    started = time.perf_counter()
    item.exec_id = docker_api.start_exec_detached(run.container(flow.src), argv)
    item.launched_at = time.time()
    run.saw_exec(time.perf_counter() - started)


def _stop_flow(run: Run, item: ScheduledFlow, why: str = "past its deadline") -> None:
    flow = item.flow
    files = [f"{run.node_dir}/{flow.name}.client.wait.pid", f"{run.node_dir}/{flow.name}.client.pid"]
    run.exec(flow.src, _script("KILL") + files, comment=f"{flow.src}: stop the client of flow {flow.name} ({why})")
    item.finished = True


def _deadline(run: Run, item: ScheduledFlow) -> float:
    """When a flow still running is stopped (the Docker host's clock): its planned end (or its
    duration after its client's exec was launched, if that was late), plus the time iperf3
    may take to connect and to end, plus three exec round trips at the engine's latency."""
    start = run.t0 + item.flow.start
    if item.launched_at is not None:
        start = max(start, item.launched_at + run.clock_offset)
    return start + item.flow.duration + FINISH_GRACE + CONNECT_TIMEOUT_MS / 1000 + 3 * run.slowest_exec


#: Seconds between asking the engine whether a flow's client still runs, until shortly before the
#: flow's planned end; then every WAIT_TICK. Each ask costs the Docker host's engine CPU (about
#: 12 ms of dockerd on a software-emulated host, which the flows it carries need).
EARLY_CHECK_S = 2.0
WAIT_TICK = 0.2


def _due_for_check(run: Run, item: ScheduledFlow, now: float) -> bool:
    """Whether to ask about ``item``'s exec now: every WAIT_TICK from one second before its
    planned end on, every EARLY_CHECK_S before (a client that fails early is still seen)."""
    planned_end = run.t0 + item.flow.start + item.flow.duration
    return now >= planned_end - 1.0 or now - item.checked_at >= EARLY_CHECK_S


def _wait_for_flows(run: Run, items: list[ScheduledFlow], progress: Progress, title: str) -> None:
    """Launch every client (each waits in its node for t0 + start), wait until all are done
    (or past their deadline); a :class:`Step` of seconds elapsed of the planned total, with the
    flows running, every second. Times are the Docker host's clock."""
    parallel(lambda item: _launch_client(run, item), sorted(items, key=lambda item: item.flow.start), 8)
    pending: list[ScheduledFlow] = []
    begin = min(run.t0 + item.flow.start for item in items)
    end = max(run.t0 + item.flow.start + item.flow.duration for item in items)
    last_note = 0.0
    while True:
        now = run.host_now()
        running = []
        for item in items:
            if item.exec_id and not item.finished:
                if not _due_for_check(run, item, now):
                    running.append(item.flow.name or "?")
                    continue
                item.checked_at = now
                if not docker_api.exec_running(item.exec_id):
                    item.finished = True
                elif now > _deadline(run, item):
                    item.finished = item.timed_out = True
                    run.reasons.append(f"flow {item.flow.name} did not end by its deadline; it was stopped")
                    _stop_flow(run, item)
                else:
                    running.append(item.flow.name or "?")
        if not pending and not running:
            progress(Step(title, end - begin, end - begin, "s", detail=f"{len(items)} flow(s) done"))
            return
        if now - last_note >= 1.0:
            last_note = now
            left = ", ".join(running) or "none yet"
            elapsed = min(max(now - begin, 0.0), end - begin - 0.01)  # finished only once every flow is
            progress(Step(title, int(elapsed), end - begin, "s",
                          detail=f"{len(running)} of {len(items)} flow(s) running: {left}"))
        time.sleep(WAIT_TICK)


def _node_clock(run: Run, node: str) -> float:
    """The Docker host's clock (epoch seconds), read in ``node``."""
    result = run.exec(node, ["date", "+%s%6N"], comment=f"{node}: the Docker host's clock, for t0")
    text = result.stdout.strip()
    if result.exit_code != 0 or not text.isdigit():
        raise RuntimeFailure(f"reading the clock in {node!r} failed: {(result.stdout + result.stderr).strip()}")
    return int(text) / 1e6


def _lead(run: Run, flows: int) -> float:
    """Seconds from the last agent's start to t0: t0 reaches the scheduled nodes (a file each,
    8 at a time) and the ``flows`` clients are launched (an exec each, 8 at a time) in between,
    each round at the engine's slowest exec latency seen so far, with one round to spare."""
    scheduled = len(run.agents) if run.events is not None else 0
    rounds = math.ceil(scheduled / 8) + math.ceil(flows / 8) + 1
    return LEAD_SECONDS + 0.05 * math.ceil(len(run.agents) / 8) + rounds * run.slowest_exec


def _put_t0(run: Run) -> None:
    """t0 (epoch microseconds, the Docker host's clock) to every node with a schedule: its
    agent waits for this file. A file, not an exec: values reach nodes as files or arguments."""
    if run.events is None:
        return
    nodes = [node for node in run.agents if not run.events.schedules[node].empty]
    base, _, sub = run.node_dir.partition("/mptcpdock-run/")
    text = f"{int(round(run.t0 * 1_000_000))}\n".encode()

    def put(node: str) -> None:
        run.record(None, ["docker", "cp", "t0", f"{run.container(node)}:{run.node_dir}/t0"],
                   comment=f"{node}: t0 = {run.t0:.6f} (the Docker host's clock): its agent starts counting")
        docker_api.copy_to_container(run.container(node), base, f"mptcpdock-run/{sub}", {"t0": text})

    parallel(put, nodes, 8)
    late = time.time() + run.clock_offset
    if late > run.t0:
        run.reasons.append(f"t0 reached the agents {late - run.t0:.2f} s late: their first steps are late")


def _run_phase(run: Run, items: list[ScheduledFlow], progress: Progress, title: str) -> None:
    """Start the servers; in the first phase, then every node's agent, then fix t0 on the
    Docker host's clock (a little after the last of them started) and hand it to the event
    agents; then launch the clients, which wait in their nodes for t0 + start."""
    progress(f"{title}: starting {len(items)} iperf3 server(s)")
    clocks = parallel(lambda item: _start_server(run, item), items, 8)
    if not run.t0:
        progress(f"starting monitors, samplers{' and event agents' if run.events else ''} on {len(run.agents)} "
                 "node(s)")
        parallel(lambda node: _start_agent(run, node), run.agents, 8)
        received = time.time()
        known = [clock for clock in [*clocks, *run.agent_clocks.values()] if clock]
        if not known:  # no server and no agent clock: ask a node for the Docker host's clock
            known = [_node_clock(run, items[0].flow.src)]
            received = time.time()
        host = max(known)
        run.clock_offset = host - received
        run.t0 = host + _lead(run, len(items))
        _put_t0(run)
    _wait_for_flows(run, items, progress, title)


def _established_paths(run: Run, flow: Flow) -> list[tuple[str, str]]:
    """(local, remote) of the subflows the flow's data connection(s) established, from the
    client node's monitor (read mid-run), initial subflow first."""
    files = [f"{run.node_dir}/monitor.log", f"{run.node_dir}/{flow.name}.client.json"]
    result = run.exec(flow.src, _script("CAT") + files, comment=f"{flow.src}: read the monitor for the baseline paths")
    parts: dict[str, str] = {}
    current = None
    for line in result.stdout.splitlines(keepends=True):
        if line.startswith("%%% "):
            current = line[4:].strip()
            parts[current] = ""
        elif current:
            parts[current] += line
    client = parse_iperf3(parts.get(files[1], ""))
    connections = connections_from_monitor(parse_monitor(parts.get(files[0], "")), client.local_ports, flow.port or 0)
    pairs: list[tuple[str, str]] = []
    for connection in connections:
        for local, remote in connection.pairs:
            if (local, remote) not in pairs:
                pairs.append((local, remote))
    return pairs


def _baseline_flows(run: Run, checklist: Checklist, every_mptcp_flow: bool) -> list[ScheduledFlow]:
    """One single-path TCP flow per path of each MPTCP flow that asks for a baseline (all of
    them with ``every_mptcp_flow``), one after the other."""
    used = {(flow.dst, flow.port) for flow in run.topology.flows}
    planned = max(item.flow.start + item.flow.duration for item in run.scheduled) + BASELINE_GAP
    start = max(planned, run.host_now() - run.t0 + run.engine_margin(2) + BASELINE_GAP)  # one at a time, even if late
    out = []
    for item in list(run.scheduled):
        flow = item.flow
        if flow.protocol != "mptcp" or not (flow.baseline or every_mptcp_flow):
            continue
        pairs = _established_paths(run, flow)
        if not pairs:  # no monitor data: the paths the checklist expects
            expected = checklist.flow(flow.name or "")
            routable = [c for c in expected.candidates if c.routable][:expected.expected_subflows]
            pairs = [(c.local, c.remote) for c in routable]
        for index, (local, remote) in enumerate(pairs, start=1):
            port = 5301
            while (flow.dst, port) in used:
                port += 1
            used.add((flow.dst, port))
            tcp = Flow(src=flow.src, dst=flow.dst, name=f"{flow.name}.tcp{index}", dst_address=remote,
                       src_address=local, start=start, duration=flow.duration, streams=flow.streams,
                       protocol="tcp", congestion=flow.congestion, port=port, reverse=flow.reverse)
            out.append(ScheduledFlow(tcp, role="baseline", baseline_of=flow.name))
            start += flow.duration + BASELINE_GAP
    return out


def _restore_before_baselines(run: Run) -> None:
    """The baselines measure the lab as 'up' made it: each node with a schedule stops its
    event agent and applies its restore lines now (FINISH then has nothing left to restore)."""
    if run.events is None:
        return
    nodes = [node for node in run.agents if not run.events.schedules[node].empty]
    parallel(lambda node: run.exec(node, _script("RESTORE") + [run.node_dir],
                                   comment=f"{node}: put the lab back as 'up' left it, before the baselines"), nodes)


def _finish_node(run: Run, node: str, grace: int) -> str:
    result = run.exec(node, _script("FINISH") + [run.node_dir, str(grace)],
                      comment=f"{node}: stop what this run started (pid files) after up to {grace} s")
    stopped = next((line[len("stopped:"):].split() for line in result.stdout.splitlines()
                    if line.startswith("stopped:")), [])
    return " ".join(stopped)


def _collect_node(run: Run, node: str) -> None:
    target = run.results_dir / "nodes" / node
    target.mkdir(parents=True, exist_ok=True)
    container = run.container(node)
    run.record(None, ["docker", "cp", f"{container}:{run.node_dir}/.", str(target)],
               comment=f"{node}: copy the run's files out")
    try:
        data = docker_api.copy_from_container(container, run.node_dir)
    except Exception as exc:  # noqa: BLE001 - a node without files must not lose the others'
        run.reasons.append(f"could not copy the files of {node}: {docker_api.first_line(exc)}")
        return
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            name = Path(member.name)
            if not member.isfile() or name.is_absolute() or ".." in name.parts:
                continue
            source = archive.extractfile(member)
            if source is not None:
                (target / name.name).write_bytes(source.read())


def _stop_and_collect(run: Run, grace: int, progress: Progress) -> None:
    running = [item for item in run.scheduled if item.exec_id and not item.finished]
    if running:  # clients first: a server stopped first would end its client's test as failed
        progress(f"stopping {len(running)} running client(s)")
        parallel(lambda item: _stop_flow(run, item, "interrupted"), running)
    progress("stopping monitors, samplers and servers; copying files out")
    stopped = parallel(lambda node: (node, _finish_node(run, node, grace)), run.agents)
    for node, names in stopped:
        if names:
            run.reasons.append(f"stopped on {node} before it ended: {names}")
    parallel(lambda node: _collect_node(run, node), run.agents)


def _with_local_traces(run: Run) -> Topology:
    """The run's topology with every trace copied into results/traces/ and named from there,
    so that the results directory is complete (``mptcpdock report`` reads it alone)."""
    out = copy.deepcopy(run.topology)
    folder = run.results_dir / "traces"
    for link in out.links:
        for shaping in (link.shaping, *link.egress.values()):
            if shaping.trace is None:
                continue
            source = Path(shaping.trace.path)
            folder.mkdir(exist_ok=True)
            target = folder / source.name
            if not target.exists():
                target.write_bytes(source.read_bytes())
            shaping.trace = dataclasses.replace(shaping.trace, path=f"traces/{source.name}")
    return out


def _write_inputs(run: Run, checklist: Checklist) -> None:
    (run.results_dir / "topology.yaml").write_text(topology_to_yaml(_with_local_traces(run)))
    state = asdict(run.state)
    state.pop("topology_yaml", None)
    plan = make_plan(run.topology, drop_impairments=run.state.impairments_dropped)
    apply_kernel_sysctls(plan, has_blackhole_timeout=run.state.probe.get("blackhole_timeout") is not None)
    sysctls = run.state.sysctls or {name: node.sysctls for name, node in plan.nodes.items()}
    state["sysctls"] = sysctls
    state["blackhole_timeout"] = {
        "kernel_default": run.state.probe.get("blackhole_timeout"),
        "set": {name: values[BLACKHOLE_TIMEOUT] for name, values in sysctls.items() if BLACKHOLE_TIMEOUT in values},
    } if "blackhole_timeout" in run.state.probe else None
    state["iproute2"] = run.state.probe.get("iproute2")
    state["docker_host_kernel"] = run.state.probe.get("kernel")
    (run.results_dir / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    (run.results_dir / "checklist.json").write_text(json.dumps(checklist.to_dict(), indent=2) + "\n")
    (run.results_dir / "checklist.txt").write_text(render_checklist(checklist))


def _write_run_meta(run: Run, incomplete: bool) -> None:
    meta = {
        "lab": run.lab,
        "t0": run.t0,
        "clock": "the Docker host's (every node's); t0 fixed there, after the servers listened",
        "clock_offset": run.clock_offset,
        "agent_clocks": run.agent_clocks,
        "interval": run.interval,
        "node_dir": run.node_dir,
        "sample_period": run.sample_period,
        "mptcp_tool": run.mptcp_tool,
        "monitors_requested": run.monitors_requested,
        "monitors_added": run.monitors_added,
        "agents": run.agents,
        "captures": run.captures,
        "snaplen": run.topology.snaplen,
        "incomplete": incomplete,
        "reasons": run.reasons,
        "flows": [
            {**asdict(item.flow), "role": item.role, "baseline_of": item.baseline_of,
             "launched": item.launched_at is not None and run.t0 + item.flow.start <= run.host_now(),
             "timed_out": item.timed_out}
            for item in run.scheduled
        ],
    }
    (run.results_dir / "run.json").write_text(json.dumps(meta, indent=2) + "\n")


def render_commands(run: Run) -> str:
    """commands.sh: the trace of 'up' followed by every command of this run, replayable in order."""
    lines = [run.up_trace.rstrip("\n") if run.up_trace else "#!/bin/sh\n# (no trace of 'up' was found for this lab)"]
    lines += ["", f"# ---- mptcpdock run {run.results_dir.name}: every command of the run, in order ----",
              "# The fixed scripts the run executes inside nodes; values arrive as positional arguments.",
              "set +e"]
    for name, text in {**SCRIPTS, **BASH_SCRIPTS}.items():
        lines.append(f"{name}={shlex.quote(text)}")
    previous = None
    for command in sorted(run.commands, key=lambda c: c.time):
        if previous is not None and command.time - previous > 0.05:
            lines.append(f"sleep {command.time - previous:.2f}")
        previous = command.time
        if command.comment:
            lines.append(f"# {command.comment}")
        argv = list(command.argv)
        if command.container is None:
            lines.append(shlex.join(argv))
            continue
        text = shlex.join(argv)
        if argv[:2] == ["sh", "-c"]:
            variable = next((name for name, script in SCRIPTS.items() if script == argv[2]), None)
            if variable:
                rest = [f'"${name}"' if arg == script else shlex.quote(arg) for arg in argv[3:]
                        for name, script in [next(((n, t) for n, t in BASH_SCRIPTS.items() if t == arg), ("", ""))]]
                text = f'sh -c "${variable}" ' + " ".join(rest)
        lines.append(f"docker exec {'-d ' if command.detach else ''}{shlex.quote(command.container)} {text}")
    return "\n".join(lines) + "\n"


def _read_up_trace(lab: str) -> str:
    path = lab_api.trace_path(lab)
    return path.read_text() if path.exists() else ""


class _SigintDeferred:
    """Keep Ctrl-C from interrupting the cleanup (main thread only)."""

    def __enter__(self) -> "_SigintDeferred":
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _finish_run(run: Run, grace: int, progress: Progress, plots: bool) -> Summary:
    """Stop everything, copy files out, lay them out, write summary, checklist, commands.sh, plots.
    Without an engine (it went away) only what is on this side is written."""
    if run.engine_lost is None:
        try:
            _stop_and_collect(run, grace, progress)
        except Exception as exc:  # noqa: BLE001 - re-raised unless the engine went away
            if not docker_api.engine_gone(exc):
                raise
            run.engine_lost = exc
            run.reasons.append(f"the Docker engine went away while stopping the run: {docker_api.failure_reason(exc)}")
    _write_run_meta(run, bool(run.reasons))
    commands = run.results_dir / "commands.sh"
    commands.write_text(render_commands(run))
    commands.chmod(0o755)
    progress("writing the summary")
    arrange_files(run.results_dir)
    summary = build_summary(run.results_dir)
    write_summary(run.results_dir, summary)
    if plots:
        progress("drawing plots")
        try:
            summary.plots = [path.name for path in draw_all(run.results_dir, summary)]
        except Exception as exc:  # noqa: BLE001 - plots must not lose the results
            summary.reasons.append(f"plots failed: {exc}")
        write_summary(run.results_dir, summary)
    return summary


def run_experiment(lab: str | None = None, topology: Topology | None = None, *, duration: float | None = None,
                   results_root: Path = Path("results"), progress: Progress = lambda _: None,
                   bring_up_if_needed: bool = True, allow_no_impairments: bool = False, baseline: bool = False,
                   sample_period: float = 0.5, plots: bool = True, capture: Sequence[str] = (),
                   snaplen: int | None = None, before_traffic: Callable[[Checklist], None] | None = None) -> RunResult:
    """Run the topology's flows on lab ``lab`` (bringing it up from ``topology`` if needed)
    and write everything to ``results_root/<lab>-<YYYYmmdd-HHMMSS>/``. ``capture``: more
    ``node:interface`` (or ``node``) to record with tcpdump, besides the link ends with
    ``capture: true``; ``snaplen`` overrides the topology's.

    ``before_traffic`` is called with the MPTCP checklist once the lab is up, before any
    process starts in a node (NeST's ``show_mptcp_checklist`` moment)."""
    name, resolved, state = resolve_inputs(lab, topology, duration, bring_up_if_needed)
    if snaplen is not None:
        resolved.snaplen = snaplen
        validate(resolved)
    captures = resolve_captures(resolved, capture)
    checklist = make_checklist(resolved)
    if state is None:
        progress(f"lab {name} is not up: bringing it up")
        assert topology is not None  # resolve_inputs refuses a lab that is not up without a topology
        up_model = copy.deepcopy(topology)
        up_model.locations, up_model.name = topology.locations, name
        state = lab_api.bring_up(up_model, allow_no_impairments=allow_no_impairments, progress=progress).state
    run = _plan_run(name, resolved, state, Path(results_root), sample_period, captures)
    run.up_trace = _read_up_trace(name)
    _write_inputs(run, checklist)
    if before_traffic is not None:
        before_traffic(checklist)
    interrupted, failure = False, None
    try:
        _start_captures(run, progress)
        _run_phase(run, list(run.scheduled), progress, "flows")
        if any(flow.protocol == "mptcp" and (baseline or flow.baseline) for flow in resolved.flows):
            extra = _baseline_flows(run, checklist, baseline)
            run.scheduled += extra
            if extra:
                _restore_before_baselines(run)
                _run_phase(run, extra, progress, "single-path TCP baseline")
    except KeyboardInterrupt:
        interrupted = True
        run.reasons.append("interrupted (Ctrl-C): partial results")
    except Exception as exc:  # noqa: BLE001 - stop what was started, keep what was measured, then re-raise
        failure = exc
        if docker_api.engine_gone(exc):
            run.engine_lost = exc
        run.reasons.append(f"failed: {exc if isinstance(exc, MptcpdockError) else docker_api.failure_reason(exc)}")
    with _SigintDeferred():
        summary = _finish_run(run, 2 if (interrupted or failure) else FINISH_GRACE, progress, plots)
    if run.engine_lost is not None:
        raise docker_api.gone_error(f"'run' of lab {name!r}", run.engine_lost,
                                    f"the lab's {len(state.nodes)} containers may still run, partial results are in "
                                    f"{run.results_dir}", f"run 'mptcpdock down {name}' once the engine answers "
                                    "again") from run.engine_lost
    if failure is not None:
        if isinstance(failure, MptcpdockError):
            raise RuntimeFailure(f"{failure} (partial results in {run.results_dir})") from failure
        raise failure
    return RunResult(run.results_dir, summary, summary.incomplete, checklist)
