"""Events and traces as per-node schedules: exact ``ip``/``tc`` argument lists at exact times (pure).

:func:`plan_events` turns a validated topology's ``events:`` and ``trace:`` links, with the
:class:`~mptcpdock.plan.commands.Plan` of the lab as it was brought up, into one
:class:`NodeSchedule` per node. Each node's agent (``experiment/node_scripts.py``) receives
its schedule at the start of a run and applies each step at ``t0 + t``:

* ``state: down|up``: ``ip link set dev IF down|up`` on both ends; on ``up`` the node's routes
  through IF are put back (``ip route replace``: the kernel deletes IPv4 routes through an
  interface that goes down, the connected ones come back by themselves).
* ``blackhole: on|off``: a filter on the clsact egress hook that drops every packet
  (a one-instruction classic BPF program returning TC_ACT_SHOT, ``bpf da``: this needs only
  cls_bpf, where ``matchall action drop`` needs cls_matchall and act_gact, which many kernels
  lack); the interface stays up. The clsact qdisc is added before t=0 (it sits beside the htb
  root and never touches it) and removed after the run.
* ``set:``: the planner keeps each egress's current shaping and merges the named parameters
  into it, then writes ``tc class change ... htb`` with every class parameter for a rate and
  ``tc qdisc change ... netem|pfifo`` with every leaf parameter for delay, jitter, loss or
  queue (``qdisc change ... netem`` resets what it does not name). Nothing is deleted or
  re-added mid-run; an egress that gets delay/jitter/loss events has a netem leaf from ``up``
  on (:func:`mptcpdock.plan.commands.netem_event_egresses`).
* ``endpoint:``: ``ip mptcp endpoint add ... id N`` / ``delete id N`` / ``change id N
  backup|nobackup|fullmesh|nofullmesh`` (a change of signal/subflow is a delete and an add
  with the same id). Endpoint ids are the order of the node's endpoints at ``up`` (1, 2, ...).
* ``limits:``: ``ip mptcp limits set`` with both limits (merged).
* ``trace:``: every :data:`TRACE_STEP` seconds from t=0 to the end of the run, ``tc class
  change`` to the trace's mean rate over that step (steps with the same rate are skipped).

Every node with an agent also gets an ``nstat`` snapshot :data:`SNAP_LEAD` seconds before
each event time (for the per-event MPTcpExt counter deltas). After the run each node's
``restore`` lines put the lab back as ``up`` left it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..errors import TopologyError
from ..topology.model import Endpoint, Event, Shaping, Topology
from ..topology.validate import line_of
from ..topology.units import format_percent, format_rate, format_time_us
from .commands import Plan, endpoint_ids
from .shaping import (CLASS_ID, LEAF_HANDLE, ROOT_HANDLE, has_netem_leaf, htb_class_args, leaf_args,
                      without_impairments)

TRACE_STEP = 0.1  # seconds between trace steps
SNAP_LEAD = 0.05  # seconds: the nstat snapshot before an event
END_SNAPSHOT = "end"  # the last snapshot's label: at the run's end, before anything is restored
#: A filter that drops every packet: one classic BPF instruction, 'ret #2' (TC_ACT_SHOT), in
#: direct-action mode. It needs only cls_bpf (matchall/gact are missing from some kernels).
DROP_FILTER = ("pref", "1", "handle", "1", "bpf", "da", "bytecode", "1,6 0 0 2")
DEFAULT_LIMITS = {"subflows": 2, "add_addr_accepted": 0}  # the kernel's, when up set none


@dataclass(frozen=True)
class Step:
    """One command of a node's schedule."""

    t: float  # seconds after t0 ('setup' steps: before t0; 'restore': after the run)
    node: str
    tool: str  # ip | tc | snap
    args: tuple[str, ...]
    id: str  # e3.0 (event 3, first time), trace, snap, setup, restore
    kind: str  # event | trace | snap | setup | restore

    def line(self) -> str:
        return " ".join([self.tool, *self.args]) if self.tool != "snap" else "nstat -asz (snapshot)"


@dataclass(frozen=True)
class KernelNeed:
    """A kernel feature an event needs, with where it was asked for (for a one-line error)."""

    feature: str  # netem | blackhole
    field: str
    line: int | None
    what: str


@dataclass
class EgressState:
    rate: int | None
    up: bool = True
    blackholed: bool = False


@dataclass
class Occurrence:
    """One time one event happens."""

    event: int  # index in topology.events
    k: int  # which of its times
    t: float
    id: str
    action: str
    label: str
    link: str | None
    node: str | None
    nodes: list[str]
    steps: list[Step] = field(default_factory=list)
    note: str | None = None  # e.g. "no change" when the lab already was that way


@dataclass
class NodeSchedule:
    node: str
    setup: list[Step] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    restore: list[Step] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.setup or self.steps or self.restore)


@dataclass
class EventPlan:
    occurrences: list[Occurrence]
    schedules: dict[str, NodeSchedule]
    kernel_needs: list[KernelNeed]
    #: (node, interface) -> [(t, state from t on)], the first at t=0 (the lab as up left it)
    egress_timeline: dict[tuple[str, str], list[tuple[float, EgressState]]]
    traced: dict[tuple[str, str], list[tuple[float, int]]]  # the trace steps per egress: (t, bit/s)

    @property
    def empty(self) -> bool:
        return not self.occurrences and not self.traced

    def state_at(self, node: str, interface: str, t: float) -> EgressState | None:
        timeline = self.egress_timeline.get((node, interface))
        if not timeline:
            return None
        current = timeline[0][1]
        for when, state in timeline:
            if when > t + 1e-9:
                break
            current = state
        return current


def describe(event: Event) -> str:
    """'primary down', 'wifi blackhole on', 'lte set rate=5mbit (from h1)', ..."""
    if event.label:
        return event.label
    if event.state is not None:
        return f"{event.link} {event.state}"
    if event.blackhole is not None:
        text = f"{event.link} blackhole {'on' if event.blackhole else 'off'}"
    elif event.set is not None:
        parts = []
        values = event.set
        if values.rate is not None:
            parts.append(f"rate={format_rate(values.rate)}")
        if values.delay is not None:
            parts.append(f"delay={format_time_us(values.delay)}")
        if values.jitter is not None:
            parts.append(f"jitter={format_time_us(values.jitter)}")
        if values.loss is not None:
            parts.append(f"loss={format_percent(values.loss)}")
        if values.loss_model is not None:
            parts.append(f"loss={values.loss_model.model}")
        if values.queue is not None:
            parts.append(f"queue={values.queue}")
        text = f"{event.link} set {' '.join(parts)}"
    elif event.endpoint is not None:
        change = "removed" if event.endpoint.remove else "[" + ", ".join(event.endpoint.flags) + "]"
        return f"{event.node} endpoint {event.endpoint.interface} {change}"
    else:
        return f"{event.node} limits " + " ".join(f"{k}={v}" for k, v in (event.limits or {}).items())
    return text + (f" (from {event.from_node})" if event.from_node else "")


_line_of = line_of


class _Planner:
    def __init__(self, topology: Topology, plan: Plan, run_end: float | None) -> None:
        self.topology = topology
        self.plan = plan
        self.run_end = run_end
        self.schedules: dict[str, NodeSchedule] = {name: NodeSchedule(name) for name in topology.nodes}
        self.needs: list[KernelNeed] = []
        # the current shaping of every shaped egress, and its queue, leaf kind, layout
        self.shaping: dict[tuple[str, str], Shaping] = {}
        self.queue: dict[tuple[str, str], int] = {}
        self.netem: dict[tuple[str, str], bool] = {}
        self.htb: dict[tuple[str, str], bool] = {}
        self.initial: dict[tuple[str, str], tuple[Shaping, int]] = {}
        self.timeline: dict[tuple[str, str], list[tuple[float, EgressState]]] = {}
        self.clsact: set[tuple[str, str]] = set()
        self.down: set[tuple[str, str]] = set()
        self.blackholed: set[tuple[str, str]] = set()
        for link in topology.links:
            for end in (link.a, link.b):
                key = (end.node, end.interface or "")
                planned = plan.nodes[end.node].shaping.get(end.interface or "")
                shaping = link.shaping_from(end.node)
                if plan.impairments_dropped:
                    shaping = without_impairments(shaping)
                self.shaping[key] = shaping
                self.htb[key] = bool(planned and planned.commands and "htb" in planned.commands[0])
                self.netem[key] = bool(planned and has_netem_leaf(planned))
                self.queue[key] = planned.queue.packets if planned and planned.queue else 0
                self.initial[key] = (replace(shaping), self.queue[key])
                self.timeline[key] = [(0.0, EgressState(shaping.rate))]
        # endpoint ids and flags per node, as up added them (ids 1, 2, ... in order)
        self.endpoints: dict[str, dict[str, tuple[int, tuple[str, ...], str]]] = {}
        self.next_id: dict[str, int] = {}
        self.limits: dict[str, dict[str, int]] = {}
        for name, node in topology.nodes.items():
            addresses = {intf.name: intf.address for intf in plan.nodes[name].interfaces}
            ids = endpoint_ids(node.mptcp.endpoints)
            self.endpoints[name] = {}
            for eid, ep in zip(ids, node.mptcp.endpoints):  # an interface's first endpoint is the one events change
                self.endpoints[name].setdefault(ep.interface, (eid, tuple(ep.flags), ep.address or addresses[ep.interface]))
            self.next_id[name] = max(ids, default=0) + 1
            self.limits[name] = {"subflows": node.mptcp.subflows if node.mptcp.subflows is not None
                                 else DEFAULT_LIMITS["subflows"],
                                 "add_addr_accepted": node.mptcp.add_addr_accepted
                                 if node.mptcp.add_addr_accepted is not None else DEFAULT_LIMITS["add_addr_accepted"]}

    # -- helpers -------------------------------------------------------------------------------
    def _mark(self, key: tuple[str, str], t: float) -> None:
        state = EgressState(self.shaping[key].rate, key not in self.down, key in self.blackholed)
        timeline = self.timeline[key]
        if timeline and abs(timeline[-1][0] - t) < 1e-9:
            timeline[-1] = (t, state)
        else:
            timeline.append((t, state))

    def _ends(self, event: Event) -> list[tuple[str, str]]:
        link = self.topology.link(event.link or "")
        return [(end.node, end.interface or "") for end in (link.a, link.b)
                if event.from_node in (None, end.node)]

    # -- actions -------------------------------------------------------------------------------
    def on_state(self, occ: Occurrence, event: Event) -> None:
        for node, interface in self._ends(event):
            key = (node, interface)
            if event.state == "down":
                self.down.add(key)
                occ.steps.append(self._step(occ, node, "ip", ("link", "set", "dev", interface, "down")))
            else:
                self.down.discard(key)
                occ.steps.append(self._step(occ, node, "ip", ("link", "set", "dev", interface, "up")))
                for line in self._routes_via(node, interface):
                    occ.steps.append(self._step(occ, node, "ip", tuple(line.split())))
            self._mark(key, occ.t)

    def _routes_via(self, node: str, interface: str) -> list[str]:
        return ["route replace" + route.ip_args()[len("route add"):] for route in self.plan.nodes[node].routing.routes
                if route.dev == interface]

    def on_blackhole(self, occ: Occurrence, event: Event, index: int) -> None:
        self.needs.append(KernelNeed("blackhole", f"events[{index}].blackhole",
                                     _line_of(self.topology, f"events[{index}]"), f"{occ.label}"))
        for node, interface in self._ends(event):
            key = (node, interface)
            if key not in self.clsact:
                self.clsact.add(key)
                self.schedules[node].setup.append(Step(-1.0, node, "tc", ("qdisc", "replace", "dev", interface,
                                                                          "clsact"), "setup", "setup"))
                self.schedules[node].restore.append(Step(math.inf, node, "tc", ("qdisc", "del", "dev", interface,
                                                                                "clsact"), "restore", "restore"))
            if event.blackhole:
                self.blackholed.add(key)
                occ.steps.append(self._step(occ, node, "tc", ("filter", "replace", "dev", interface, "egress",
                                                              *DROP_FILTER)))
            elif key in self.blackholed:
                self.blackholed.discard(key)
                occ.steps.append(self._step(occ, node, "tc", ("filter", "del", "dev", interface, "egress",
                                                              *DROP_FILTER[:4], "bpf")))
            self._mark(key, occ.t)
        if not occ.steps:
            occ.note = "no change: the link was not blackholed"

    def on_set(self, occ: Occurrence, event: Event, index: int) -> None:
        values = event.set
        assert values is not None
        for param in ("delay", "jitter", "loss", "loss_model"):
            if getattr(values, param) is not None:
                param = "loss" if param == "loss_model" else param  # its YAML key
                self.needs.append(KernelNeed("netem", f"events[{index}].set.{param}",
                                             _line_of(self.topology, f"events[{index}].set.{param}")
                                             or _line_of(self.topology, f"events[{index}]"), occ.label))
        for node, interface in self._ends(event):
            key = (node, interface)
            current = self.shaping[key]
            new = current.merged(replace(values, trace=None))
            queue = values.queue if values.queue is not None else self.queue[key]
            if new.jitter and not new.delay:
                raise TopologyError("jitter without delay once this event applies", field=f"events[{index}].set.jitter",
                                    source=self.topology.source, line=_line_of(self.topology, f"events[{index}]"),
                                    fix="set a delay at least as large as the jitter")
            dev = ("dev", interface)
            if new.rate != current.rate and self.htb[key] and new.rate is not None:
                occ.steps.append(self._step(occ, node, "tc", ("class", "change", *dev, "parent", ROOT_HANDLE,
                                                              "classid", CLASS_ID, *htb_class_args(new.rate).split())))
            leaf_changed = (new.delay, new.jitter, new.loss, new.loss_model, queue) != (
                current.delay, current.jitter, current.loss, current.loss_model, self.queue[key])
            if leaf_changed and queue:
                where = ("parent", CLASS_ID) if self.htb[key] else ("root",)
                occ.steps.append(self._step(occ, node, "tc", ("qdisc", "change", *dev, *where, "handle", LEAF_HANDLE,
                                                              *leaf_args(new, queue, self.netem[key]).split())))
            self.shaping[key], self.queue[key] = new, queue
            self._mark(key, occ.t)
        if not occ.steps:
            occ.note = "no change: the link already had these values"

    def on_endpoint(self, occ: Occurrence, event: Event) -> None:
        change = event.endpoint
        assert change is not None and event.node
        node = event.node
        current = self.endpoints[node].get(change.interface)
        address = next(intf.address for intf in self.plan.nodes[node].interfaces if intf.name == change.interface)
        add = lambda eid, flags: ("mptcp", "endpoint", "add", address, "dev", change.interface,  # noqa: E731
                                  "id", str(eid), *flags)
        if change.remove:
            if current is None:
                occ.note = f"no change: {node} has no endpoint on {change.interface}"
                return
            occ.steps.append(self._step(occ, node, "ip", ("mptcp", "endpoint", "delete", "id", str(current[0]),
                                                          current[2])))
            del self.endpoints[node][change.interface]
            return
        flags = tuple(change.flags) or ("subflow",)
        if current is None:
            eid = self.next_id[node]
            self.next_id[node] += 1
            occ.steps.append(self._step(occ, node, "ip", add(eid, flags)))
            self.endpoints[node][change.interface] = (eid, flags, address)
            return
        eid, old, _ = current
        if set(old) == set(flags):
            occ.note = "no change: the endpoint already has these flags"
            return
        kinds = {"signal", "subflow"}
        if set(old) & kinds != set(flags) & kinds:
            occ.steps.append(self._step(occ, node, "ip", ("mptcp", "endpoint", "delete", "id", str(eid), address)))
            occ.steps.append(self._step(occ, node, "ip", add(eid, flags)))
        else:
            for flag in ("backup", "fullmesh"):
                if (flag in old) != (flag in flags):
                    occ.steps.append(self._step(occ, node, "ip", ("mptcp", "endpoint", "change", "id", str(eid),
                                                                  flag if flag in flags else f"no{flag}")))
        self.endpoints[node][change.interface] = (eid, flags, address)

    def on_limits(self, occ: Occurrence, event: Event) -> None:
        assert event.node and event.limits
        merged = {**self.limits[event.node], **event.limits}
        if merged == self.limits[event.node]:
            occ.note = "no change: the limits already were these"
            return
        self.limits[event.node] = merged
        occ.steps.append(self._step(occ, event.node, "ip", ("mptcp", "limits", "set", "subflows",
                                                            str(merged["subflows"]), "add_addr_accepted",
                                                            str(merged["add_addr_accepted"]))))

    def _step(self, occ: Occurrence, node: str, tool: str, args: tuple[str, ...]) -> Step:
        step = Step(occ.t, node, tool, args, occ.id, "event")
        self.schedules[node].steps.append(step)
        if node not in occ.nodes:
            occ.nodes.append(node)
        return step

    # -- traces and restore --------------------------------------------------------------------
    def traces(self) -> dict[tuple[str, str], list[tuple[float, int]]]:
        out: dict[tuple[str, str], list[tuple[float, int]]] = {}
        if not self.run_end:
            return out
        steps = int(math.ceil(self.run_end / TRACE_STEP - 1e-9))
        for (node, interface), shaping in self.shaping.items():
            trace = shaping.trace
            if trace is None or not self.htb[(node, interface)]:
                continue
            previous = None
            points = []
            for k in range(steps):
                t = round(k * TRACE_STEP, 6)
                rate = int(round(trace.mean_rate(t, t + TRACE_STEP)))
                points.append((t, rate))
                if rate == previous:
                    continue
                previous = rate
                self.schedules[node].steps.append(Step(
                    t, node, "tc", ("class", "change", "dev", interface, "parent", ROOT_HANDLE, "classid", CLASS_ID,
                                    *htb_class_args(rate).split()), "trace", "trace"))
            out[(node, interface)] = points
        return out

    def restore(self) -> None:
        """Lines that put each changed egress and node back as ``up`` left it."""
        for key, (shaping, queue) in self.initial.items():
            node, interface = key
            current = self.shaping[key]
            schedule = self.schedules[node]
            dev = ("dev", interface)
            was_down = any(not state.up for _, state in self.timeline[key])
            if was_down:
                schedule.restore.insert(0, Step(math.inf, node, "ip", ("link", "set", *dev, "up"), "restore", "restore"))
                for line in self._routes_via(node, interface):
                    schedule.restore.append(Step(math.inf, node, "ip", tuple(line.split()), "restore", "restore"))
            traced = current.trace is not None and self.run_end
            if self.htb[key] and shaping.rate is not None and (current.rate != shaping.rate or traced):
                schedule.restore.append(Step(math.inf, node, "tc", ("class", "change", *dev, "parent", ROOT_HANDLE,
                                                                    "classid", CLASS_ID,
                                                                    *htb_class_args(shaping.rate).split()),
                                             "restore", "restore"))
            if (current.delay, current.jitter, current.loss, current.loss_model, self.queue[key]) != (
                    shaping.delay, shaping.jitter, shaping.loss, shaping.loss_model, queue) and queue:
                where = ("parent", CLASS_ID) if self.htb[key] else ("root",)
                schedule.restore.append(Step(math.inf, node, "tc", ("qdisc", "change", *dev, *where, "handle",
                                                                    LEAF_HANDLE,
                                                                    *leaf_args(shaping, queue, self.netem[key]).split()),
                                             "restore", "restore"))
        for name, node in self.topology.nodes.items():
            addresses = {intf.name: intf.address for intf in self.plan.nodes[name].interfaces}
            initial: dict[str, tuple[int, tuple[str, ...], str]] = {}
            every = []
            for eid, ep in zip(endpoint_ids(node.mptcp.endpoints), node.mptcp.endpoints):
                initial.setdefault(ep.interface, (eid, tuple(ep.flags), ep.address or addresses[ep.interface]))
                every.append((eid, ep, ep.address or addresses[ep.interface]))
            if self.endpoints[name] != initial:
                schedule = self.schedules[name]
                schedule.restore.append(Step(math.inf, name, "ip", ("mptcp", "endpoint", "flush"), "restore",
                                             "restore"))
                for eid, ep, address in every:
                    port = ("port", str(ep.port)) if ep.port is not None else ()
                    schedule.restore.append(Step(math.inf, name, "ip", ("mptcp", "endpoint", "add", address, "dev",
                                                                        ep.interface, "id", str(eid), *port,
                                                                        *ep.flags),
                                                 "restore", "restore"))
            first = {"subflows": node.mptcp.subflows if node.mptcp.subflows is not None else DEFAULT_LIMITS["subflows"],
                     "add_addr_accepted": node.mptcp.add_addr_accepted if node.mptcp.add_addr_accepted is not None
                     else DEFAULT_LIMITS["add_addr_accepted"]}
            if self.limits[name] != first:
                self.schedules[name].restore.append(Step(math.inf, name, "ip", (
                    "mptcp", "limits", "set", "subflows", str(first["subflows"]), "add_addr_accepted",
                    str(first["add_addr_accepted"])), "restore", "restore"))


def plan_events(topology: Topology, plan: Plan, *, run_end: float | None = None,
                snap_nodes: list[str] | tuple[str, ...] = ()) -> EventPlan:
    """The schedules of a validated topology's events and traces (see the module's documentation).

    ``run_end`` (seconds; default: the end of the last flow) bounds the trace steps;
    ``snap_nodes`` get an nstat snapshot before each event time."""
    if run_end is None:
        run_end = max((flow.start + flow.duration for flow in topology.flows), default=None)
    planner = _Planner(topology, plan, run_end)
    occurrences: list[Occurrence] = []
    timed = sorted(((t, index, k) for index, event in enumerate(topology.events)
                    for k, t in enumerate(event.times())), key=lambda item: (item[0], item[1], item[2]))
    for t, index, k in timed:
        event = topology.events[index]
        action = event.action or "?"
        occ = Occurrence(index, k, t, f"e{index}.{k}", action, describe(event), event.link, event.node, [])
        if action == "state":
            planner.on_state(occ, event)
        elif action == "blackhole":
            planner.on_blackhole(occ, event, index)
        elif action == "set":
            planner.on_set(occ, event, index)
        elif action == "endpoint":
            planner.on_endpoint(occ, event)
        elif action == "limits":
            planner.on_limits(occ, event)
        occurrences.append(occ)
    traced = planner.traces()
    planner.restore()
    for t in sorted({occ.t for occ in occurrences}):
        for node in snap_nodes:
            planner.schedules[node].steps.append(Step(max(0.0, round(t - SNAP_LEAD, 6)), node, "snap", (f"{t:.3f}",),
                                                      "snap", "snap"))
    if occurrences and run_end:
        for node in snap_nodes:
            planner.schedules[node].steps.append(Step(round(run_end, 6), node, "snap", (END_SNAPSHOT,), "snap", "snap"))
    for schedule in planner.schedules.values():
        order = {"snap": 0, "event": 1, "trace": 2}
        schedule.steps.sort(key=lambda step: (step.t, order.get(step.kind, 3)))
    needs = []
    seen = set()
    for need in planner.needs:
        if (need.feature, need.field) not in seen:
            seen.add((need.feature, need.field))
            needs.append(need)
    return EventPlan(occurrences, planner.schedules, needs, planner.timeline, traced)


def schedule_text(schedule: NodeSchedule) -> str:
    """The file a node's agent reads: one step per line, fields separated by tabs:
    OFFSET_US (or 'setup'), ID, TOOL (ip | tc | snap), then the arguments."""
    lines = []
    for step in schedule.setup:
        lines.append("\t".join(["setup", step.id, step.tool, *step.args]))
    for step in schedule.steps:
        lines.append("\t".join([str(int(round(step.t * 1_000_000))), step.id, step.tool, *step.args]))
    return "\n".join(lines) + ("\n" if lines else "")


def restore_text(schedule: NodeSchedule) -> str:
    return "".join("\t".join(["restore", step.id, step.tool, *step.args]) + "\n" for step in schedule.restore)


__all__ = ["plan_events", "EventPlan", "NodeSchedule", "Step", "Occurrence", "KernelNeed", "EgressState",
           "schedule_text", "restore_text", "describe", "TRACE_STEP", "SNAP_LEAD", "DROP_FILTER", "Endpoint"]
