"""What a run's events did: applied vs planned, and each MPTCP flow's answer to each event.

Reads the files the nodes' event agents wrote (``nodes/<node>/events.log``, the ``nstat``
snapshots ``nstat-<t>.txt`` taken :data:`~mptcpdock.plan.events.SNAP_LEAD` s before each event
time) and recomputes the event plan from ``topology.yaml`` (pure), then, per flow and per event
that touches one of its paths (a link on a routed path of one of its subflows, or a node at
one of its ends):

* ``before_bps``: mean receiver goodput over the 2 s before the event (0.1 s iperf3 intervals);
* ``gap_s``: the longest stretch after the event (until the next event) with goodput below 10%
  of ``before_bps``: the stall;
* ``allowed_bps``: what the flow's remaining paths allow after the event: per path, the lowest
  shaped rate on its way (as the events left it; a down or blackholed hop either way kills the
  path), shared equally with the other flows through that hop; MPTCP uses its backup paths only
  when no other path lives (RFC 8684); times the payload share of a frame (MPTCP 1420/1514,
  TCP 1448/1514);
* ``recovery_s``: from the event to the start of the first 0.5 s window whose mean goodput
  reaches 90% of ``allowed_bps`` (None: not within the window);
* ``paths``: bytes per path before (the 2 s before, or since the previous event) and after
  (until the next event or the flow's end): from the sender's ``ss`` samples (bytes acked per
  subflow: this flow only) and from the receiver's interface counters (every flow on it);
* ``subflow_events``: the monitor's events of the flow's connections from 1 s before;
* ``counters``: per end node, the MPTcpExt counter deltas between this event's snapshot and
  the next one (or the end): a counter the kernel does not have is ``"unsupported"``, not 0.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plan.commands import Plan, make_plan
from ..plan.events import END_SNAPSHOT, TRACE_STEP, EventPlan, plan_events
from ..plan.routing import compute_routing, trace_packet
from ..topology.model import Topology
from .counters import COUNTER_FAMILIES, COUNTERS, PREFIX, counter_deltas, nstat_section, parse_nstat  # noqa: F401
from .parsers import MonitorEvent, Sample
from .records import (AppliedCommand, EventOccurrence, EventPathBytes, FlowEvent, FlowSummary, LagStats, Scheduling,
                      TraceSecond, TraceTracking)

EFFICIENCY = {"mptcp": 1420 / 1514, "tcp": 1448 / 1514}
BEFORE_S = 2.0
GAP_FRACTION = 0.10
RECOVERY_FRACTION = 0.90
RECOVERY_WINDOW_S = 0.5
STEADY_RATIO = 1.10  # trace tracking: a second counts where the trace varies by at most this ratio


@dataclass
class AppliedStep:
    id: str
    node: str
    planned: float | None  # epoch seconds (None: setup/restore)
    started: float
    ended: float
    rc: int
    command: str
    output: str

    @property
    def start_lag_ms(self) -> float | None:
        return (self.started - self.planned) * 1000 if self.planned is not None else None

    @property
    def done_lag_ms(self) -> float | None:
        return (self.ended - self.planned) * 1000 if self.planned is not None else None


def parse_events_log(text: str, node: str) -> list[AppliedStep]:
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 6:
            continue
        try:
            planned = int(parts[1]) / 1e6 if parts[1].isdigit() else None
            out.append(AppliedStep(parts[0], node, planned, int(parts[2]) / 1e6, int(parts[3]) / 1e6, int(parts[4]),
                                   parts[5], parts[6].strip() if len(parts) > 6 else ""))
        except ValueError:
            continue
    return out


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[index]


def lag_stats(values: list[float]) -> LagStats:
    return LagStats(count=len(values), median_ms=_round(statistics.median(values)) if values else None,
                    p95_ms=_round(_percentile(values, 0.95)), max_ms=_round(max(values)) if values else None)


@dataclass
class EventContext:
    topology: Topology
    plan: Plan
    events: EventPlan
    t0: float
    applied: list[AppliedStep]
    snapshots: dict[str, dict[str, dict[str, int]]]  # node -> 't.ttt' -> counters
    end_counters: dict[str, dict[str, int]]
    start_counters: dict[str, dict[str, int]]
    routing: dict = field(default_factory=dict)


def load_context(results_dir: Path, topology: Topology, t0: float, drop_impairments: bool) -> EventContext | None:
    plan = make_plan(topology, drop_impairments=drop_impairments)
    events = plan_events(topology, plan)
    if events.empty:
        return None
    applied: list[AppliedStep] = []
    snapshots: dict[str, dict[str, dict[str, int]]] = {}
    ends: dict[str, dict[str, int]] = {}
    starts: dict[str, dict[str, int]] = {}
    for node_dir in sorted((results_dir / "nodes").glob("*")):
        node = node_dir.name
        log = node_dir / "events.log"
        if log.exists():
            applied += parse_events_log(log.read_text(errors="replace"), node)
        for path in node_dir.glob("nstat-*.txt"):
            snapshots.setdefault(node, {})[path.stem[len("nstat-"):]] = parse_nstat(path.read_text(errors="replace"))
        for name, target in (("info-end.txt", ends), ("info-start.txt", starts)):
            if (node_dir / name).exists():
                target[node] = nstat_section((node_dir / name).read_text(errors="replace"))
    return EventContext(topology, plan, events, t0, applied, snapshots, ends, starts,
                        compute_routing(topology))


def occurrences_summary(ctx: EventContext) -> tuple[list[EventOccurrence], Scheduling, list[str]]:
    """(events[], scheduling figures, failure reasons)."""
    by_id: dict[str, list[AppliedStep]] = {}
    for step in ctx.applied:
        by_id.setdefault(step.id, []).append(step)
    reasons: list[str] = []
    out = []
    for occ in ctx.events.occurrences:
        steps = by_id.get(occ.id, [])
        failed = [s for s in steps if s.rc != 0]
        status = "failed" if failed else ("no change" if occ.note and not occ.steps else
                                          "applied" if len(steps) >= len(occ.steps) else "not applied")
        if failed:
            reasons.append(f"event {occ.id} ({occ.label}) at t={occ.t:g} s failed on "
                           + "; ".join(f"{s.node}: '{s.command}' -> {s.output or f'exit {s.rc}'}" for s in failed))
        elif status == "not applied":
            reasons.append(f"event {occ.id} ({occ.label}) at t={occ.t:g} s: {len(steps)} of {len(occ.steps)} "
                           "commands were applied (the run ended first?)")
        out.append(EventOccurrence(
            id=occ.id, event=occ.event, t=occ.t, label=occ.label, action=occ.action, link=occ.link, node=occ.node,
            nodes=occ.nodes, status=status, note=occ.note, planned=[f"{s.node}: {s.line()}" for s in occ.steps],
            applied=[AppliedCommand(s.node, s.command, s.rc, _round(s.start_lag_ms), _round(s.done_lag_ms),
                                    s.output if s.rc else None) for s in steps]))
    for step in ctx.applied:
        if step.rc != 0 and not step.id.startswith("e"):
            reasons.append(f"{step.id} step on {step.node} failed: '{step.command}' -> {step.output or step.rc}")
    timed = [s for s in ctx.applied if s.planned is not None and s.id != "snap"]
    lags = [s.start_lag_ms for s in timed if s.start_lag_ms is not None]
    scheduling = Scheduling(
        steps=len(timed), start_lag=lag_stats(lags),
        done_lag=lag_stats([s.done_lag_ms for s in timed if s.done_lag_ms is not None]),
        events_only=lag_stats([s.start_lag_ms for s in timed if s.id.startswith("e") and s.start_lag_ms is not None]),
        trace_only=lag_stats([s.start_lag_ms for s in timed if s.id == "trace" and s.start_lag_ms is not None]))
    return out, scheduling, reasons


def _round(value: float | None, digits: int = 3) -> float | None:
    return round(value, digits) if value is not None else None


# -- per flow ---------------------------------------------------------------------------------------


def _hops(ctx: EventContext, sender: str, local: str, remote: str) -> tuple[list, list] | None:
    receiver = next((name for name in ctx.topology.nodes for link in ctx.topology.links_of(name)
                     if link.end(name).address == remote), None)
    if receiver is None:
        return None
    there = trace_packet(ctx.topology, ctx.routing, sender, local, remote)
    back = trace_packet(ctx.topology, ctx.routing, receiver, remote, local)
    if not (there.delivered and back.delivered):
        return None
    return there.hops, back.hops


def _links_of_hops(ctx: EventContext, hops: list[tuple[str, str]]) -> set[str]:
    out = set()
    for node, interface in hops:
        for link in ctx.topology.links_of(node):
            if link.end(node).interface == interface and link.name:
                out.add(link.name)
    return out


def flow_paths(ctx: EventContext, flow: FlowSummary) -> list[dict[str, Any]]:
    """The flow's paths (sender address -> receiver address) with their hops and backup flag."""
    backups: dict[tuple[str, str], bool] = {}
    for connection in flow.subflows.connections:
        for raw in connection.events:
            parts = raw.split()
            if parts and parts[0] == "SF_ESTABLISHED" and "->" in parts:
                local = parts[1].rsplit(":", 1)[0]
                remote = parts[3].rsplit(":", 1)[0]
                flag = any(p == "backup=1" for p in parts)
                pair = (local, remote) if connection.view != "server" else (remote, local)
                backups[pair] = flag
    out = []
    seen = set()
    for path in flow.paths:
        pair = (path.sender_address, path.receiver_address)
        if pair in seen:
            continue
        seen.add(pair)
        client_pair = pair if flow.sender == flow.src else (pair[1], pair[0])
        hops = _hops(ctx, flow.sender, *pair)
        if hops is None:
            continue
        out.append({"pair": pair, "there": hops[0], "back": hops[1],
                    "links": _links_of_hops(ctx, hops[0] + hops[1]),
                    "backup": backups.get(client_pair, False), "receiver_interface": path.receiver_interface,
                    "sockets": [list(socket) for socket in path.sockets]})
    return out


def _path_capacity(ctx: EventContext, path: dict[str, Any], t: float) -> tuple[bool, float | None, tuple | None]:
    """(alive, bottleneck bit/s (None: unshaped), the bottleneck egress)."""
    best: tuple[float | None, tuple | None] = (None, None)
    for hop in path["there"] + path["back"]:
        state = ctx.events.state_at(hop[0], hop[1], t)
        if state is not None and (not state.up or state.blackholed):
            return False, None, None
    for hop in path["there"]:
        state = ctx.events.state_at(hop[0], hop[1], t)
        rate = _rate_at(ctx, hop, t, state.rate if state else None)
        if rate is not None and (best[0] is None or rate < best[0]):
            best = (rate, hop)
    return True, best[0], best[1]


def _rate_at(ctx: EventContext, hop: tuple[str, str], t: float, fallback: float | None) -> float | None:
    points = ctx.events.traced.get(hop)
    if points:
        index = min(len(points) - 1, max(0, int(t / TRACE_STEP + 1e-9)))
        return float(points[index][1])
    return fallback


def allowed_rate(ctx: EventContext, flow: FlowSummary, paths: list[dict[str, Any]], t: float,
                 competitors: list[tuple[FlowSummary, list[dict[str, Any]]]]) -> tuple[float | None, list[str]]:
    """What the flow's paths allow at ``t`` (see the module's documentation), and which paths."""
    alive = []
    for path in paths:
        ok, rate, hop = _path_capacity(ctx, path, t)
        if ok:
            alive.append((path, rate, hop))
    if not alive:
        return 0.0, []
    regular = [item for item in alive if not item[0]["backup"]]
    used = regular if (regular or flow.protocol != "mptcp") else alive
    total, names = 0.0, []
    for path, rate, hop in used:
        if rate is None:
            return None, [f"{path['pair'][0]}->{path['pair'][1]}"]
        sharing = 1
        for other, other_paths in competitors:
            begin = other.start or 0.0
            if other.name == flow.name or not begin <= t < begin + (other.duration or 0.0):
                continue
            if any(hop in p["there"] and _path_capacity(ctx, p, t)[0] for p in other_paths):
                sharing += 1
        total += rate / sharing
        names.append(f"{path['pair'][0]}->{path['pair'][1]}" + (" (backup)" if path["backup"] else "")
                     + (f" shared by {sharing} flows" if sharing > 1 else ""))
    return total * EFFICIENCY.get(flow.protocol, 1.0), names


def _mean(points: list[tuple[float, float]], start: float, end: float) -> float | None:
    values = [rate for when, rate in points if start < when <= end + 1e-9]
    return sum(values) / len(values) if values else None


def _socket_bytes(samples: list[Sample], socket: list, at: float) -> int:
    local, lport, peer, pport = socket
    value = 0
    for sample in samples:
        if sample.time > at:
            break
        for sock in sample.sockets:
            if sock.netid == "tcp" and sock.local == local and sock.local_port == lport and sock.peer == peer \
                    and sock.peer_port == pport:
                value = max(value, sock.info.get("bytes_acked", 0))
    return value


def _interface_rx(samples: list[Sample], interface: str, at: float) -> int | None:
    value = None
    for sample in samples:
        if sample.time > at and value is not None:
            break
        if interface in sample.interfaces:
            value = sample.interfaces[interface][0]
    return value


def flow_events(ctx: EventContext, flow: FlowSummary, flows: list[FlowSummary],
                samples: dict[str, list[Sample]], monitors: dict[str, list[MonitorEvent] | None]) -> list[FlowEvent]:
    if flow.status == "not started" or not flow.intervals:
        return []
    paths = flow_paths(ctx, flow)
    competitors = [(other, flow_paths(ctx, other)) for other in flows if other.name != flow.name and other.intervals]
    links = set().union(*(p["links"] for p in paths)) if paths else set()
    start = float(flow.start or 0)
    end = start + float(flow.duration or 0)
    points = [(float(t), float(rate)) for t, rate in flow.intervals]
    occurrences = [occ for occ in ctx.events.occurrences if start <= occ.t < end]
    times = sorted({occ.t for occ in occurrences})
    tokens = {c.token for c in flow.subflows.connections}
    out = []
    for occ in occurrences:
        touches = sorted(({occ.link} & links) if occ.link else ({occ.node} & {flow.src, flow.dst}))
        if not touches:
            continue
        later = [t for t in times if t > occ.t]
        window_end = min(later[0], end) if later else end
        earlier = [t for t in times if t < occ.t]
        window_start = max(earlier[-1] if earlier else start, occ.t - BEFORE_S, start + 0.5)
        before = _mean(points, window_start, occ.t)
        after = [(t, r) for t, r in points if occ.t < t <= window_end + 1e-9]
        threshold = GAP_FRACTION * (before or 0)
        gap, gap_from, run_start = 0.0, None, None
        for when, rate in after:
            if before and rate < threshold:
                if run_start is None:
                    run_start = when - 0.1
                if when - run_start > gap:
                    gap, gap_from = when - run_start, run_start
            else:
                run_start = None
        allowed, allowed_paths = allowed_rate(ctx, flow, paths, occ.t + 0.05, competitors)
        recovery = None
        if allowed:
            for when, _ in after:
                window = [r for t, r in after if when - 0.1 < t <= when - 0.1 + RECOVERY_WINDOW_S + 1e-9]
                if len(window) >= int(RECOVERY_WINDOW_S / 0.1) and sum(window) / len(window) >= RECOVERY_FRACTION * allowed:
                    recovery = max(0.0, when - 0.1 - occ.t)
                    break
        path_rows = []
        sender_samples = samples.get(flow.sender, [])
        receiver_samples = samples.get(flow.receiver, [])
        edges = [ctx.t0 + window_start, ctx.t0 + occ.t, ctx.t0 + window_end]
        for path in paths:
            acked = [sum(_socket_bytes(sender_samples, socket, at) for socket in path["sockets"]) for at in edges]
            row: dict[str, Any] = {"path": f"{path['pair'][0]}->{path['pair'][1]}", "backup": path["backup"],
                                   "receiver_interface": path["receiver_interface"],
                                   "bytes_before": acked[1] - acked[0], "bytes_after": acked[2] - acked[1]}
            if path["receiver_interface"]:
                rx = [_interface_rx(receiver_samples, path["receiver_interface"], at) for at in edges]
                if None not in rx:
                    row["interface_rx_before"] = rx[1] - rx[0]  # type: ignore[operator]
                    row["interface_rx_after"] = rx[2] - rx[1]  # type: ignore[operator]
            path_rows.append(row)
        for key in ("bytes_before", "bytes_after", "interface_rx_before", "interface_rx_after"):
            total = sum(row.get(key, 0) for row in path_rows)
            for row in path_rows:
                if key in row:
                    row[key.replace("bytes", "share").replace("interface_rx", "interface_share")] = \
                        round(row[key] / total, 4) if total else None
        seen = []
        for node in (flow.src, flow.dst):
            for event in monitors.get(node) or []:
                if event.token in tokens and ctx.t0 + occ.t - 1 <= event.time < ctx.t0 + window_end:
                    seen.append(f"t={event.time - ctx.t0:+.2f} s {node}: {event.describe()}")
        counters = {}
        label = f"{occ.t:.3f}"
        counter_nodes = (flow.src, flow.dst) if flow.protocol == "mptcp" else ()
        next_label = f"{later[0]:.3f}" if later else END_SNAPSHOT
        for node in counter_nodes:
            before_counts = ctx.snapshots.get(node, {}).get(label)
            after_counts = ctx.snapshots.get(node, {}).get(next_label) or ctx.end_counters.get(node)
            if before_counts is not None and after_counts is not None:
                counters[node] = counter_deltas(before_counts, after_counts)
        out.append(FlowEvent(
            id=occ.id, t=occ.t, label=occ.label, touches=touches, before_bps=_round(before, 0),
            gap_s=round(gap, 3), gap_from=_round(gap_from), min_bps=min((r for _, r in after), default=None),
            allowed_bps=_round(allowed, 0), allowed_paths=allowed_paths, recovery_s=_round(recovery),
            window=(round(window_start, 3), round(window_end, 3)), paths=[EventPathBytes(**row) for row in path_rows],
            subflow_events=seen[:40], counters=counters))
    return out


def trace_tracking(ctx: EventContext, flow: FlowSummary, flows: list[FlowSummary]) -> TraceTracking | None:
    """Per second: the flow's goodput against what its (traced) paths allowed; the error where
    the paths held steady (what they allowed, in 100 ms steps over the second and the 0.5 s
    before, within STEADY_RATIO of each other: no level change, only the traces' own wobble)."""
    paths = flow_paths(ctx, flow)
    traced_hops = [hop for p in paths for hop in p["there"] if hop in ctx.events.traced]
    if not traced_hops or not flow.intervals:
        return None
    competitors = [(other, flow_paths(ctx, other)) for other in flows if other.name != flow.name]
    points = [(float(t), float(rate)) for t, rate in flow.intervals]
    start = float(flow.start or 0)
    end = start + float(flow.duration or 0)
    rows, errors = [], []
    second = start + 1.0  # the first second is slow start
    while second + 1.0 <= end + 1e-9:
        measured = _mean(points, second, second + 1.0)
        around = [allowed_rate(ctx, flow, paths, second - 0.5 + k * 0.1 + 0.05, competitors)[0] for k in range(15)]
        inside = [value for value in around[5:] if value]
        expected = sum(inside) / len(inside) if inside else None
        steady = all(around) and max(around) / min(around) <= STEADY_RATIO  # type: ignore[type-var, operator]
        error = abs(measured - expected) / expected if measured is not None and expected else None
        if steady and error is not None:
            errors.append(error)
        rows.append(TraceSecond(round(second, 3), _round(measured, 0), _round(expected, 0), _round(error, 4), steady))
        second += 1.0
    return TraceTracking(seconds=rows, steady_seconds=len(errors),
                         median_error=_round(statistics.median(errors), 4) if errors else None,
                         max_error=_round(max(errors), 4) if errors else None,
                         within_10_percent=sum(1 for e in errors if e <= 0.10),
                         traced_egresses=sorted({f"{n}:{i}" for n, i in traced_hops}))


def run_counters(ctx: EventContext) -> dict[str, dict[str, int | str]]:
    return {node: counter_deltas(ctx.start_counters.get(node, {}), counts)
            for node, counts in sorted(ctx.end_counters.items())}


# -- files ---------------------------------------------------------------------------------------


def render_events_log(ctx: EventContext) -> str:
    """events.log: every step every node's agent applied, merged, in planned order."""
    rows = sorted(ctx.applied, key=lambda s: (s.planned if s.planned is not None else
                                              (float("-inf") if s.id == "setup" else float("inf")), s.node))
    lines = ["# t (s after t0)  node  step  start-planned (ms)  done-planned (ms)  exit  command  [output]"]
    for s in rows:
        when = f"{s.planned - ctx.t0:9.3f}" if s.planned is not None else f"{s.id:>9}"
        lag = f"{s.start_lag_ms:8.2f} {s.done_lag_ms:8.2f}" if s.planned is not None else f"{'-':>8} {'-':>8}"
        lines.append(f"{when}  {s.node:<8} {s.id:<8} {lag}  {s.rc:>3}  {s.command}"
                     + (f"  [{s.output}]" if s.output else ""))
    return "\n".join(lines) + "\n"


def render_timeline(ctx: EventContext, monitors: dict[str, list[MonitorEvent] | None],
                    flows: list[FlowSummary]) -> str:
    """timeline.txt: the events as applied, every monitor's events and the flows' starts and
    ends, on one clock (seconds after t0). Trace steps and snapshots are left to events.log."""
    items: list[tuple[float, str]] = []
    labels = {occ.id: occ.label for occ in ctx.events.occurrences}
    for s in ctx.applied:
        if s.id.startswith("e") and s.planned is not None:
            text = f"{s.node:<8} event    {labels.get(s.id, s.id)}: {s.command}" + \
                (f"  FAILED (exit {s.rc}): {s.output}" if s.rc else "")
            items.append((s.started, text))
    for node, events in monitors.items():
        for event in events or []:
            items.append((event.time, f"{node:<8} monitor  {event.describe()}"))
    for flow in flows:
        if flow.started_at:
            items.append((flow.started_at, f"{flow.src:<8} flow     {flow.name} ({flow.protocol}) starts"))
        if flow.ended_at:
            items.append((flow.ended_at, f"{flow.src:<8} flow     {flow.name} ends ({flow.status})"))
    items.sort(key=lambda item: item[0])
    return "# t (s after t0)  node  source  what\n" + "".join(f"{when - ctx.t0:+10.3f}  {text}\n" for when, text in items)


__all__ = ["load_context", "occurrences_summary", "flow_events", "trace_tracking", "run_counters",
           "render_events_log", "render_timeline", "parse_events_log", "parse_nstat", "counter_deltas",
           "AppliedStep", "EventContext", "lag_stats"]
