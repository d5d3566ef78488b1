"""The summary of a results directory, computed from its files alone: which connections and
subflows each flow had (the monitors), what each path carried (the ss samples), what
iperf3 measured, and the single-path baselines, as :mod:`mptcpdock.report.records`.

Everything in ``summary.json`` comes from the files :mod:`mptcpdock.report.layout` lays out,
so ``mptcpdock report DIR`` can recompute and redraw it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import MptcpdockError
from ..plan.checklist import Checklist, FlowChecklist, owner_interface, render_checklist
from ..topology.loader import load_topology
from ..topology.model import Topology
from ..topology.validate import validate
from . import counters as kernel_counters
from . import events as event_results
from .layout import read_json
from .parsers import IperfResult, MonitorEvent, Sample, SocketSample, parse_iperf3, parse_monitor, parse_samples
from .records import (Baseline, BaselinePath, Connection, EventsSummary, Fairness, FlowSummary, InterfaceBytes, MonitorSummary,
                      NodeCounters, PathStats, SubflowOutcome, Summary, TraceReplay, UdpOutcome)

#: 4-tuple (local, local port, peer, peer port) -> [(time, sample)]: one node's view of a flow's subflows.
SocketSeries = dict[tuple[str, int, str, int], list[tuple[float, SocketSample]]]

#: Samples of a subflow count for RTT and cwnd once it has this many bytes acked.
BUSY_BYTES = 100_000

# -- monitor: the flow's connections and their subflows -------------------------------------------


def connections_from_monitor(events: list[MonitorEvent], client_ports: list[int], server_port: int) -> list[Connection]:
    """The data connections of one iperf3 test as one node's monitor saw them.

    A connection is matched by its initial subflow's ports (the client's data ports and the
    server's port), whichever end the monitor ran on; its token then links the other
    events. ``pairs`` are (client address, server address) of each established subflow."""
    ports = set(client_ports)
    out = []
    for event in events:
        if event.event != "CREATED" or event.token is None:
            continue
        if event.sport in ports and event.dport == server_port:
            out.append(_connection(events, event, server_view=False))
        elif event.sport == server_port and event.dport in ports:
            out.append(_connection(events, event, server_view=True))
    return out


def _connection(events: list[MonitorEvent], created: MonitorEvent, server_view: bool) -> Connection:
    def oriented(e: MonitorEvent) -> tuple[str, str]:
        return (e.daddr or "?", e.saddr or "?") if server_view else (e.saddr or "?", e.daddr or "?")

    related = [e for e in events if e.token == created.token and e.time >= created.time]
    closed_at = next((e.time for e in related if e.event == "CLOSED"), None)
    established = any(e.event == "ESTABLISHED" for e in related)
    pairs = [oriented(created)] if established else []
    subflows = [f"{pairs[0][0]} -> {pairs[0][1]} (initial)"] if established else []
    announced, failed = [], []
    for e in related:
        if e.event == "SF_ESTABLISHED":
            pair = oriented(e)
            pairs.append(pair)
            subflows.append(f"{pair[0]} -> {pair[1]}")
        elif e.event == "ANNOUNCED":
            announced.append(f"{e.daddr or e.saddr} (remote id {e.fields.get('remid', '?')})")
        elif e.event == "SF_CLOSED" and (closed_at is None or e.time < closed_at):
            pair = oriented(e)
            failed.append(f"{pair[0]} -> {pair[1]} closed" + "".join(
                f" {key}={e.fields[key]}" for key in ("error", "reset_reason", "reset_flags") if key in e.fields))
    return Connection(token=created.token or "", view="server" if server_view else "client", pairs=pairs,
                      subflows=subflows, announced=announced, failed=failed, established=len(pairs),
                      events=[e.describe() for e in related][:50])


# -- samples: the flow's sockets -------------------------------------------------------------------


def _is_initial(sock: SocketSample, is_client: bool, client_ports: set[int], server_port: int) -> bool:
    if is_client:
        return sock.local_port in client_ports and sock.peer_port == server_port
    return sock.local_port == server_port and sock.peer_port in client_ports


def flow_sockets(samples: list[Sample], is_client: bool, client_ports: list[int], server_port: int,
                 protocol: str) -> SocketSeries:
    """The TCP sockets (subflows) carrying one flow on one node, sample by sample."""
    ports = set(client_ports)
    tokens: set[str] = set()
    for sample in samples:
        for sock in sample.sockets:
            if sock.netid == "tcp" and _is_initial(sock, is_client, ports, server_port) and sock.msk_token:
                tokens.add(sock.msk_token)
    series: SocketSeries = {}
    for sample in samples:
        for sock in sample.sockets:
            if sock.netid != "tcp":
                continue
            mine = (sock.msk_token in tokens) if (protocol == "mptcp" and sock.msk_token) else \
                _is_initial(sock, is_client, ports, server_port)
            if mine:
                series.setdefault((sock.local, sock.local_port, sock.peer, sock.peer_port), []).append((sample.time, sock))
    return series


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def path_stats(topology: Topology, sender: str, receiver: str,
               sender_series: SocketSeries, receiver_series: SocketSeries) -> list[PathStats]:
    """Per path (sender address -> receiver address): bytes, share, RTT, cwnd, retransmits;
    the path that carried most first."""
    paths: dict[tuple[str, str], PathStats] = {}
    rtts: dict[tuple[str, str], list[float]] = {}
    cwnds: dict[tuple[str, str], list[float]] = {}
    min_rtts: dict[tuple[str, str], list[float]] = {}

    def path(local: str, peer: str) -> PathStats:
        if (local, peer) not in paths:
            paths[(local, peer)] = PathStats(sender_address=local, receiver_address=peer,
                                             sender_interface=owner_interface(topology, sender, local),
                                             receiver_interface=owner_interface(topology, receiver, peer))
        return paths[(local, peer)]

    for (local, lport, peer, pport), points in sender_series.items():
        entry = path(local, peer)
        socks = [sock for _, sock in points]
        entry.bytes += max((s.info.get("bytes_acked", 0) for s in socks), default=0)
        entry.retransmits += max((s.info.get("retrans_total", 0) for s in socks), default=0)
        busy = [s for s in socks if s.info.get("bytes_acked", 0) > BUSY_BYTES]
        rtts.setdefault((local, peer), []).extend(s.info["rtt_ms"] for s in busy if "rtt_ms" in s.info)
        cwnds.setdefault((local, peer), []).extend(s.info["cwnd"] for s in busy if "cwnd" in s.info)
        min_rtts.setdefault((local, peer), []).extend(s.info["min_rtt_ms"] for s in socks if "min_rtt_ms" in s.info)
        _add_limits(entry, socks)
        entry.sockets.append((local, lport, peer, pport))
        entry.states = sorted(set(entry.states) | {sock.state for sock in socks})
        entry.first_seen = min(entry.first_seen or points[0][0], points[0][0])
        entry.last_seen = max(entry.last_seen or points[-1][0], points[-1][0])
    for (local, lport, peer, pport), points in receiver_series.items():
        path(peer, local).bytes_received += max((s.info.get("bytes_received", 0) for _, s in points), default=0)
    total = sum(entry.carried for entry in paths.values())
    for key, entry in paths.items():
        entry.share = entry.carried / total if total else None
        entry.rtt_ms_mean = _mean(rtts.get(key, []))
        entry.cwnd_mean = _mean(cwnds.get(key, []))
        entry.rtt_ms_min = min(min_rtts.get(key, []), default=None)
    return sorted(paths.values(), key=lambda entry: -entry.carried)


def _add_limits(entry: PathStats, socks: list[SocketSample]) -> None:
    """Add one subflow's tcp_info busy and limited times to its path: cumulative counters, so
    the largest (last) value each showed; nothing while the subflow was never busy."""
    def last(key: str) -> int:
        return max((s.info.get(key, 0) for s in socks), default=0)

    busy = last("busy_ms")
    if not busy:
        return
    entry.busy_ms = (entry.busy_ms or 0) + busy
    entry.rwnd_limited_ms = (entry.rwnd_limited_ms or 0) + last("rwnd_limited_ms")
    entry.sndbuf_limited_ms = (entry.sndbuf_limited_ms or 0) + last("sndbuf_limited_ms")


def interface_bytes(samples: list[Sample], start: float | None, end: float | None, node: str) -> NodeCounters | None:
    """rx/tx bytes per interface of ``node`` between the samples closest to ``start`` and ``end``."""
    if not samples or start is None or end is None:
        return None
    before = [s for s in samples if s.time <= start and s.interfaces]
    after = [s for s in samples if s.time >= end and s.interfaces]
    first = before[-1] if before else next((s for s in samples if s.interfaces), None)
    last = after[0] if after else next((s for s in reversed(samples) if s.interfaces), None)
    if first is None or last is None or last.time <= first.time:
        return None
    counted = {name: InterfaceBytes(rx - first.interfaces[name][0], tx - first.interfaces[name][1])
               for name, (rx, tx) in last.interfaces.items() if name != "lo" and name in first.interfaces}
    return NodeCounters(node=node, window=(first.time, last.time), bytes=counted)


def failed_attempts(client_series: SocketSeries) -> list[str]:
    """Subflows the client's samples show but never in ESTAB state (e.g. a SYN with no answer)."""
    out = []
    for (local, lport, peer, pport), points in client_series.items():
        states = [sock.state for _, sock in points]
        if "ESTAB" in states:
            continue
        seen = "/".join(dict.fromkeys(states))
        why = " (its SYNs got no answer)" if set(states) == {"SYN-SENT"} and len(points) >= 4 else ""
        out.append(f"{local} -> {peer}: only {seen} seen in {len(points)} sample(s){why}")
    return out


# -- summary ---------------------------------------------------------------------------------------


class _Cache:
    """Parsed node files, read once per summary."""

    def __init__(self, results_dir: Path) -> None:
        self.dir = results_dir
        self._samples: dict[str, list[Sample]] = {}
        self._monitors: dict[str, list[MonitorEvent] | None] = {}
        self.iproute2: str | None = None  # the node image's (the probe's), for what ss printed

    def samples(self, node: str) -> list[Sample]:
        if node not in self._samples:
            path = self.dir / "samples" / f"{node}.txt"
            self._samples[node] = parse_samples(path.read_text(errors="replace")) if path.exists() else []
        return self._samples[node]

    def monitor(self, node: str) -> list[MonitorEvent] | None:
        if node not in self._monitors:
            path = self.dir / "monitors" / f"{node}.log"
            self._monitors[node] = parse_monitor(path.read_text(errors="replace")) if path.exists() else None
        return self._monitors[node]


def _iperf(path: Path) -> IperfResult | None:
    return parse_iperf3(path.read_text(errors="replace")) if path.exists() else None


#: The keys of run.json's flow entries that a FlowSummary repeats, in summary.json's order.
SPEC_KEYS = ("name", "src", "dst", "protocol", "src_address", "dst_address", "port", "start", "duration", "streams",
             "congestion", "reverse", "role", "baseline_of")


def _status(spec: dict[str, Any], client: IperfResult | None, rc: int | None, flow_dir: Path) -> tuple[str, str | None]:
    """(status, error) of a flow from its client's iperf3 output and exit status."""
    if not spec.get("launched"):
        return "not started", "the run ended before this flow's start time"
    if spec.get("tool") == "command":
        if rc == 0:
            return "ok", None
        stderr = flow_dir / "client.stderr.txt"
        detail = (": " + stderr.read_text(errors="replace").strip()[-300:]) if stderr.exists() else ""
        status = "interrupted" if spec.get("timed_out") else "failed"
        return status, (f"the command exited with {rc}" if rc is not None else "the command did not end") + detail
    if client is None:
        return "failed", "no client output"
    if client.ok and rc == 0:
        return "ok", None
    status = "interrupted" if spec.get("timed_out") or (client.error and "interrupt" in client.error) else "failed"
    error = client.error or (f"iperf3 exited with {rc}" if rc else "no result")
    if spec.get("protocol") == "udp" and not client.intervals and UDP_SETUP_FAILED in error:
        error += UDP_SETUP_LOST
    stderr = flow_dir / "client.stderr.txt"
    if stderr.exists():
        error += ": " + stderr.read_text(errors="replace").strip()[-300:]
    return status, error


#: iperf3's error when its UDP stream's set-up datagram, or the server's answer, is lost:
#: iperf3 sends it once and waits 30 s (iperf_udp_connect), with no retry.
UDP_SETUP_FAILED = "unable to read from stream socket"
UDP_SETUP_LOST = (" (iperf3 sends its UDP stream's set-up datagram once and waits 30 s for the server's "
                  "answer: one of the two was lost; a lossy link end on the path loses it at its loss rate, "
                  "so run the flow again)")


#: A flow whose intervals, placed from the client's end, start this much later than the client
#: did, had a slow connect (placement from the end is then used).
SLOW_CONNECT_S = 0.2


def _interval_offset(started: float | None, ended: float | None, t0: float, spec: dict[str, Any],
                     receiver: IperfResult | None) -> float:
    """Seconds from t0 to iperf3's interval 0. iperf3 counts from when its data connections
    are up, not from its own start: a SYN lost in a full queue (a flow starting beside a busy
    one) delays that by a retransmission timeout (1 s). So the intervals are placed from the
    end (the client exits right after its last interval) when that differs by more than
    SLOW_CONNECT_S from placing them at the client's start."""
    offset = (started - t0) if started else spec.get("start", 0.0)
    if ended and receiver and receiver.intervals:
        from_end = (ended - t0) - receiver.intervals[-1].end
        if from_end - offset > SLOW_CONNECT_S:
            return from_end
    return offset


def _flow_summary(cache: _Cache, topology: Topology, meta: dict[str, Any], spec: dict[str, Any],
                  checklist: Checklist | None) -> FlowSummary:
    name = spec["name"]
    flow_dir = cache.dir / "flows" / name
    command = spec.get("tool") == "command"
    client, server = (None, None) if command else (_iperf(flow_dir / "client.json"), _iperf(flow_dir / "server.json"))
    timing = (read_json(flow_dir / "timing.json") or {}).get("client") or {}
    started, ended, rc = timing.get("start"), timing.get("end"), timing.get("rc")
    reverse = bool(spec.get("reverse"))
    sender, receiver = (spec["dst"], spec["src"]) if reverse else (spec["src"], spec["dst"])
    client_ports = client.local_ports if client else []
    status, error = _status(spec, client, rc, flow_dir)

    goodput = client.received_bps if client and client.received_bps else (server.received_bps if server else None)
    receiver_json = client if reverse else server
    offset = _interval_offset(started, ended, meta.get("t0") or 0.0, spec, receiver_json)
    intervals = [(round(offset + i.end, 3), i.bits_per_second) for i in (receiver_json.intervals if receiver_json else [])]

    expected_item = checklist.flow(name) if checklist and any(f.flow == name for f in checklist.flows) else None
    sender_series = flow_sockets(cache.samples(sender), sender == spec["src"], client_ports, spec["port"], spec["protocol"])
    receiver_series = flow_sockets(cache.samples(receiver), receiver == spec["src"], client_ports, spec["port"],
                                   spec["protocol"])
    client_series = sender_series if sender == spec["src"] else receiver_series
    completion = None  # the client's wall time: connect, the transfer, and iperf3's result exchange (about 2 RTT)
    if (command and rc == 0) or (spec.get("bytes") and client and client.ok):
        completion = round(ended - started, 3) if started and ended else None
    udp = None
    if spec.get("protocol") == "udp" and client and client.lost_packets is not None:
        udp = UdpOutcome(jitter_ms=client.jitter_ms, lost_packets=client.lost_packets, packets=client.packets,
                         loss_percent=client.lost_percent)
    connection_bytes, bytes_note = None, None
    if spec["protocol"] == "mptcp":
        if kernel_counters.ss_bytes_supported(cache.iproute2):
            connection_bytes = [item for node, series in ((sender, sender_series), (receiver, receiver_series))
                                for item in kernel_counters.connection_bytes(
                                    cache.samples(node), node, {sock.msk_token for points in series.values()
                                                                for _, sock in points if sock.msk_token})]
        else:
            bytes_note = (f"unavailable: the node image's iproute2 ({cache.iproute2 or 'unknown'}) has no "
                          "per-connection byte counters in ss -M (they need iproute2 6.5 or later)")
    return FlowSummary(
        tool=spec.get("tool") if spec.get("tool") not in (None, "iperf3") else None,
        bitrate_bps=spec.get("bitrate"), bytes_requested=spec.get("bytes"), completion_s=completion, udp=udp,
        **{key: spec.get(key) for key in SPEC_KEYS},
        status=status, error=error, client_rc=rc, started_at=started, ended_at=ended, goodput_bps=goodput,
        sent_bps=client.sent_bps if client else None,
        bytes_received=client.received_bytes if client else None,
        retransmits=client.retransmits if client else None,
        iperf3_mean_rtt_ms=client.mean_rtt_ms if client else None,
        congestion_used=client.congestion if client else None,
        client_ports=client_ports, sender=sender, receiver=receiver, intervals=intervals,
        subflows=_subflow_outcome(cache, spec, client_ports, client_series, expected_item),
        paths=path_stats(topology, sender, receiver, sender_series, receiver_series),
        receiver_interfaces=interface_bytes(cache.samples(receiver), started, ended, receiver),
        connection_bytes=connection_bytes, connection_bytes_note=bytes_note,
    )


def _subflow_outcome(cache: _Cache, spec: dict[str, Any], client_ports: list[int], client_series: SocketSeries,
                     expected: FlowChecklist | None) -> SubflowOutcome:
    established_in_samples = [key for key, points in client_series.items()
                              if any(sock.state == "ESTAB" for _, sock in points)]
    out = SubflowOutcome(expected=expected.expected_subflows if expected else 1 if spec["protocol"] != "mptcp" else None,
                         seen_in_samples=len(established_in_samples) if client_series else None,
                         failed_attempts=failed_attempts(client_series))
    if spec["protocol"] != "mptcp":
        out.established = 1 if client_series or spec.get("launched") else None
        out.source = f"{spec['protocol']}: one path"
        return out
    for node in (spec["src"], spec["dst"]):
        events = cache.monitor(node)
        if events is None or not client_ports:
            continue
        connections = connections_from_monitor(events, client_ports, spec["port"])
        if connections:
            out.connections = connections
            out.established = min(c.established for c in connections)
            out.established_per_connection = [c.established for c in connections]
            out.source = f"monitor on {node}"
            break
    return out


def _baseline(flow: FlowSummary, flows: list[FlowSummary]) -> Baseline | None:
    """``flow`` against the single-path TCP flows measured for it, if any."""
    base = [item for item in flows if item.baseline_of == flow.name]
    if not base:
        return None
    total = sum(item.goodput_bps or 0 for item in base)
    return Baseline(flows=[item.name for item in base],
                    paths=[BaselinePath(item.name, item.src_address, item.dst_address, item.goodput_bps) for item in base],
                    sum_bps=total, ratio=(flow.goodput_bps or 0) / total if total else None)


def _fairness(flows: list[FlowSummary]) -> Fairness | None:
    """Each flow's share of the summed goodput of the run's flows (not baselines) that ended ok,
    and Jain's index over them; None with fewer than two. Sets each flow's ``share``."""
    measured = [flow for flow in flows if flow.role != "baseline" and flow.status == "ok" and flow.goodput_bps]
    if len(measured) < 2:
        return None
    total = sum(flow.goodput_bps or 0.0 for flow in measured)
    squares = sum((flow.goodput_bps or 0.0) ** 2 for flow in measured)
    for flow in measured:
        flow.share = round((flow.goodput_bps or 0.0) / total, 4)
    return Fairness(flows=[flow.name for flow in measured], shares={flow.name: flow.share or 0.0 for flow in measured},
                    jain_index=round(total * total / (len(measured) * squares), 4))


def _monitors(cache: _Cache, meta: dict[str, Any]) -> dict[str, MonitorSummary]:
    requested = meta.get("monitors_requested", [])
    out = {}
    for node in sorted(set(requested) | set(meta.get("monitors_added", []))):
        events = cache.monitor(node)
        out[node] = MonitorSummary(requested=node in requested, log=f"monitors/{node}.log",
                                   events=len(events) if events is not None else None)
    return out


def build_summary(results_dir: Path) -> Summary:
    """The summary of a results directory, from its files (and checklist.txt rewritten with
    the after-run part)."""
    meta = read_json(results_dir / "run.json") or {}
    state = read_json(results_dir / "state.json") or {}
    topology = validate(load_topology(results_dir / "topology.yaml"))
    checklist_data = read_json(results_dir / "checklist.json")
    checklist = Checklist.from_dict(checklist_data) if checklist_data else None
    cache = _Cache(results_dir)
    cache.iproute2 = (state.get("probe") or {}).get("iproute2")
    flows = [_flow_summary(cache, topology, meta, spec, checklist) for spec in meta.get("flows", [])]
    for flow in flows:
        if flow.protocol == "mptcp":
            flow.baseline = _baseline(flow, flows)
    fairness = _fairness(flows)
    probe = state.get("probe") or {}
    reasons = list(meta.get("reasons", []))
    reasons += [f"flow {flow.name}: {flow.status}" + (f" ({flow.error})" if flow.error else "")
                for flow in flows if flow.status != "ok"]
    summary = Summary(
        lab=meta.get("lab"), results_dir=str(results_dir), t0=meta.get("t0"),
        incomplete=bool(meta.get("incomplete")) or any(flow.status != "ok" for flow in flows), reasons=reasons,
        kernel=probe.get("kernel"), iproute2=probe.get("iproute2"), iperf3=probe.get("iperf3"),
        netem=probe.get("netem"), impairments_dropped=state.get("impairments_dropped"),
        dropped_links=state.get("dropped_links"), mptcp_tool=meta.get("mptcp_tool"),
        sample_period=meta.get("sample_period"), monitors=_monitors(cache, meta), flows=flows, fairness=fairness,
        captures=sorted(f"captures/{path.name}" for path in (results_dir / "captures").glob("*.pcap")) or None,
        counters=kernel_counters.run_counters(results_dir) or None,
    )
    _add_events(results_dir, summary, topology, meta, state, cache)
    if checklist is not None:
        outcomes = {flow.name: flow.subflows.to_dict() for flow in flows}
        (results_dir / "checklist.txt").write_text(render_checklist(checklist, outcomes))
    return summary


def _add_events(results_dir: Path, summary: Summary, topology: Topology, meta: dict[str, Any], state: dict[str, Any],
                cache: _Cache) -> None:
    """summary.events, each flow's events (and trace_tracking), events.log and timeline.txt."""
    ctx = event_results.load_context(results_dir, topology, meta.get("t0") or 0.0,
                                     bool(state.get("impairments_dropped")))
    if ctx is None:
        return
    occurrences, scheduling, reasons = event_results.occurrences_summary(ctx)
    flows = summary.flows
    nodes = sorted({node for flow in flows for node in (flow.src, flow.dst, flow.sender, flow.receiver)})
    samples = {node: cache.samples(node) for node in nodes}
    monitors = {node: cache.monitor(node) for node in sorted(set(summary.monitors) | set(nodes))}
    for flow in flows:
        if ctx.events.occurrences:
            flow.events = event_results.flow_events(ctx, flow, flows, samples, monitors)
        flow.trace_tracking = event_results.trace_tracking(ctx, flow, flows)
    summary.events = EventsSummary(
        occurrences=occurrences, scheduling=scheduling,
        traces={f"{node}:{interface}": TraceReplay(steps=len(points), rate_changes=len({rate for _, rate in points}))
                for (node, interface), points in ctx.events.traced.items()},
        counters=event_results.run_counters(ctx))
    if reasons:
        summary.reasons += reasons
        summary.incomplete = True
    (results_dir / "events.log").write_text(event_results.render_events_log(ctx))
    (results_dir / "timeline.txt").write_text(event_results.render_timeline(ctx, monitors, flows))


def write_summary(results_dir: Path, summary: Summary) -> Path:
    path = results_dir / "summary.json"
    path.write_text(summary.to_json())
    return path


def read_summary(results_dir: Path) -> Summary | None:
    """The records of ``results_dir/summary.json``; None when there is none (or it is not JSON)."""
    data = read_json(results_dir / "summary.json")
    return Summary.from_dict(data) if isinstance(data, dict) else None


def load_or_build_summary(results_dir: Path) -> Summary:
    summary = read_summary(results_dir)
    if summary is None:
        if not (results_dir / "run.json").exists():
            raise MptcpdockError(f"{results_dir} is not a results directory of 'mptcpdock run' (no run.json)")
        summary = build_summary(results_dir)
        write_summary(results_dir, summary)
    return summary
