"""Lay out a run's files, compute its summary and print its table.

Layout of ``results/<lab>-<YYYYmmdd-HHMMSS>/`` (see docs/experiments.md)::

    summary.json  checklist.txt  checklist.json  commands.sh  topology.yaml  state.json  run.json
    flows/<flow>/client.json  server.json  timing.json  [client.stderr.txt  server.stderr.txt]
    monitors/<node>.log                       ip -ts mptcp monitor, one line per event
    samples/<node>.txt                        raw sampler output (ss -tinMOH + /proc/net/dev)
    samples/<node>-sockets.csv  samples/<node>-interfaces.csv
    nodes/<node>/info-start.txt  info-end.txt settings, qdisc counters, nstat (MIB) at start/end
    plots/*.png

Everything in ``summary.json`` is computed from those files by :func:`build_summary`, so
``mptcpdock report DIR`` can recompute and redraw it.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from tabulate import tabulate

from ..errors import MptcpdockError
from ..plan.checklist import CandidateSubflow, Check, Checklist, FlowChecklist, owner_interface, render_checklist
from ..topology.loader import load_topology
from ..topology.model import Topology
from ..topology.units import format_rate
from ..topology.validate import validate
from .parsers import IperfResult, MonitorEvent, Sample, SocketSample, parse_iperf3, parse_monitor, parse_samples

# -- file layout ---------------------------------------------------------------------------------


def arrange_files(results_dir: Path) -> None:
    """Move the files copied out of each node (nodes/<node>/) into the published layout."""
    meta = _read_json(results_dir / "run.json") or {}
    flow_names = [flow["name"] for flow in meta.get("flows", [])]
    for node_dir in sorted((results_dir / "nodes").glob("*")):
        node = node_dir.name
        for path in sorted(node_dir.iterdir()):
            name = path.name
            if name == "monitor.log":
                _move(path, results_dir / "monitors" / f"{node}.log")
            elif name == "samples.txt":
                _move(path, results_dir / "samples" / f"{node}.txt")
            elif name.endswith(".pid"):
                path.unlink()
            else:
                for flow in flow_names:
                    for role in ("client", "server"):
                        prefix = f"{flow}.{role}."
                        if name.startswith(prefix):
                            _arrange_flow_file(path, results_dir / "flows" / flow, role, name[len(prefix):])
    for samples in sorted((results_dir / "samples").glob("*.txt")):
        _write_sample_csvs(samples)


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))


def _arrange_flow_file(path: Path, flow_dir: Path, role: str, kind: str) -> None:
    flow_dir.mkdir(parents=True, exist_ok=True)
    if kind == "json":
        _move(path, flow_dir / f"{role}.json")
    elif kind == "err":
        if path.read_text(errors="replace").strip():
            _move(path, flow_dir / f"{role}.stderr.txt")
        else:
            path.unlink()
    elif kind in ("start", "end", "rc"):
        timing_path = flow_dir / "timing.json"
        timing = _read_json(timing_path) or {}
        text = path.read_text().strip()
        try:
            value: Any = int(text) if kind == "rc" else float(text)
        except ValueError:
            value = None
        timing.setdefault(role, {})[kind] = value
        timing_path.write_text(json.dumps(timing, indent=2) + "\n")
        path.unlink()


def _write_sample_csvs(path: Path) -> None:
    samples = parse_samples(path.read_text(errors="replace"))
    node = path.stem
    with open(path.with_name(f"{node}-sockets.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        keys = ["rtt_ms", "cwnd", "bytes_acked", "bytes_received", "bytes_retrans", "retrans_total",
                "delivery_rate", "mptcp_flags", "msk_token", "token", "subflows"]
        writer.writerow(["time", "netid", "state", "local", "local_port", "peer", "peer_port", *keys])
        for sample in samples:
            for sock in sample.sockets:
                writer.writerow([f"{sample.time:.3f}", sock.netid, sock.state, sock.local, sock.local_port, sock.peer,
                                 sock.peer_port, *[sock.info.get(key, "") for key in keys]])
    with open(path.with_name(f"{node}-interfaces.csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "interface", "rx_bytes", "tx_bytes"])
        for sample in samples:
            for name, (rx, tx) in sample.interfaces.items():
                writer.writerow([f"{sample.time:.3f}", name, rx, tx])


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# -- monitor: the flow's connections and their subflows -------------------------------------------


def connections_from_monitor(events: list[MonitorEvent], client_ports: list[int], server_port: int) -> list[dict[str, Any]]:
    """The data connections of one iperf3 test as one node's monitor saw them.

    A connection is matched by its initial subflow's ports (the client's data ports and the
    server's port), whichever end the monitor ran on; its token then links the other
    events. ``pairs`` are (client address, server address) of each established subflow."""
    out = []
    ports = set(client_ports)
    for event in events:
        if event.event != "CREATED" or event.token is None:
            continue
        if event.sport in ports and event.dport == server_port:
            server_view = False
        elif event.sport == server_port and event.dport in ports:
            server_view = True
        else:
            continue
        token = event.token

        def oriented(e: MonitorEvent) -> tuple[str, str]:
            return (e.daddr or "?", e.saddr or "?") if server_view else (e.saddr or "?", e.daddr or "?")

        related = [e for e in events if e.token == token and e.time >= event.time]
        closed_at = next((e.time for e in related if e.event == "CLOSED"), None)
        established = any(e.event == "ESTABLISHED" for e in related)
        pairs = [oriented(event)] if established else []
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
        out.append({"token": token, "view": "server" if server_view else "client", "pairs": pairs,
                    "subflows": subflows, "announced": announced, "failed": failed,
                    "established": len(pairs), "events": [e.describe() for e in related][:50]})
    return out


# -- samples: the flow's sockets -------------------------------------------------------------------


def _is_initial(sock: SocketSample, is_client: bool, client_ports: set[int], server_port: int) -> bool:
    if is_client:
        return sock.local_port in client_ports and sock.peer_port == server_port
    return sock.local_port == server_port and sock.peer_port in client_ports


def flow_sockets(samples: list[Sample], is_client: bool, client_ports: list[int], server_port: int,
                 protocol: str) -> dict[tuple[str, int, str, int], list[tuple[float, SocketSample]]]:
    """4-tuple -> [(time, sample)] of the TCP sockets (subflows) carrying one flow on one node."""
    ports = set(client_ports)
    tokens: set[str] = set()
    for sample in samples:
        for sock in sample.sockets:
            if sock.netid == "tcp" and _is_initial(sock, is_client, ports, server_port) and sock.msk_token:
                tokens.add(sock.msk_token)
    series: dict[tuple[str, int, str, int], list[tuple[float, SocketSample]]] = {}
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
               sender_series: dict, receiver_series: dict) -> list[dict[str, Any]]:
    """Per path (sender address -> receiver address): bytes, share, RTT, cwnd, retransmits."""
    paths: dict[tuple[str, str], dict[str, Any]] = {}
    for (local, lport, peer, pport), points in sender_series.items():
        entry = paths.setdefault((local, peer), _new_path(topology, sender, receiver, local, peer))
        socks = [sock for _, sock in points]
        entry["bytes"] += max((s.info.get("bytes_acked", 0) for s in socks), default=0)
        entry["retransmits"] += max((s.info.get("retrans_total", 0) for s in socks), default=0)
        busy = [s for s in socks if s.info.get("bytes_acked", 0) > 100_000]
        entry["_rtt"] += [s.info["rtt_ms"] for s in busy if "rtt_ms" in s.info]
        entry["_cwnd"] += [s.info["cwnd"] for s in busy if "cwnd" in s.info]
        entry["sockets"].append([local, lport, peer, pport])
        entry["states"] = sorted(set(entry["states"]) | {sock.state for sock in socks})
        entry["first_seen"] = min(entry["first_seen"] or points[0][0], points[0][0])
        entry["last_seen"] = max(entry["last_seen"] or points[-1][0], points[-1][0])
    for (local, lport, peer, pport), points in receiver_series.items():
        entry = paths.setdefault((peer, local), _new_path(topology, sender, receiver, peer, local))
        entry["bytes_received"] += max((s.info.get("bytes_received", 0) for _, s in points), default=0)
    total = sum(entry["bytes"] or entry["bytes_received"] for entry in paths.values())
    out = []
    for entry in paths.values():
        carried = entry["bytes"] or entry["bytes_received"]
        entry["share"] = carried / total if total else None
        entry["rtt_ms_mean"] = _mean(entry.pop("_rtt"))
        entry["cwnd_mean"] = _mean(entry.pop("_cwnd"))
        out.append(entry)
    return sorted(out, key=lambda entry: -(entry["bytes"] or entry["bytes_received"]))


def _new_path(topology: Topology, sender: str, receiver: str, local: str, peer: str) -> dict[str, Any]:
    return {"sender_address": local, "receiver_address": peer,
            "sender_interface": owner_interface(topology, sender, local),
            "receiver_interface": owner_interface(topology, receiver, peer),
            "bytes": 0, "bytes_received": 0, "retransmits": 0, "_rtt": [], "_cwnd": [], "sockets": [], "states": [],
            "first_seen": None, "last_seen": None}


def interface_bytes(samples: list[Sample], start: float | None, end: float | None) -> dict[str, dict[str, int]]:
    """rx/tx bytes per interface between the samples closest to ``start`` and ``end``."""
    if not samples or start is None or end is None:
        return {}
    before = [s for s in samples if s.time <= start and s.interfaces]
    after = [s for s in samples if s.time >= end and s.interfaces]
    first = before[-1] if before else next((s for s in samples if s.interfaces), None)
    last = after[0] if after else next((s for s in reversed(samples) if s.interfaces), None)
    if first is None or last is None or last.time <= first.time:
        return {}
    out = {}
    for name, (rx, tx) in last.interfaces.items():
        if name == "lo" or name not in first.interfaces:
            continue
        out[name] = {"rx_bytes": rx - first.interfaces[name][0], "tx_bytes": tx - first.interfaces[name][1]}
    return {"window": [first.time, last.time], "bytes": out}  # type: ignore[dict-item]


# -- summary ---------------------------------------------------------------------------------------


class _Cache:
    """Parsed node files, read once per summary."""

    def __init__(self, results_dir: Path) -> None:
        self.dir = results_dir
        self._samples: dict[str, list[Sample]] = {}
        self._monitors: dict[str, list[MonitorEvent] | None] = {}

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


def checklist_from_dict(data: dict[str, Any]) -> Checklist:
    flows = []
    for item in data.get("flows", []):
        flows.append(FlowChecklist(
            flow=item["flow"], src=item["src"], dst=item["dst"], protocol=item["protocol"],
            checks=[Check(**check) for check in item.get("checks", [])],
            candidates=[CandidateSubflow(**c) for c in item.get("candidates", [])],
            expected_subflows=item.get("expected_subflows", 1), reasoning=item.get("reasoning", []),
            routing_warnings=item.get("routing_warnings", [])))
    return Checklist(Check(**data["mptcp_flow_exists"]), flows)


def _flow_summary(cache: _Cache, topology: Topology, meta: dict[str, Any], spec: dict[str, Any],
                  checklist: Checklist | None) -> dict[str, Any]:
    name = spec["name"]
    flow_dir = cache.dir / "flows" / name
    client, server = _iperf(flow_dir / "client.json"), _iperf(flow_dir / "server.json")
    timing = _read_json(flow_dir / "timing.json") or {}
    started = (timing.get("client") or {}).get("start")
    ended = (timing.get("client") or {}).get("end")
    rc = (timing.get("client") or {}).get("rc")
    reverse = bool(spec.get("reverse"))
    sender, receiver = (spec["dst"], spec["src"]) if reverse else (spec["src"], spec["dst"])
    client_ports = client.local_ports if client else []
    t0 = meta.get("t0") or 0.0

    if not spec.get("launched"):
        status, error = "not started", "the run ended before this flow's start time"
    elif client is None:
        status, error = "failed", "no client output"
    elif client.ok and rc == 0:
        status, error = "ok", None
    else:
        status = "interrupted" if spec.get("timed_out") or (client.error and "interrupt" in client.error) else "failed"
        error = client.error or (f"iperf3 exited with {rc}" if rc else "no result")
        stderr = flow_dir / "client.stderr.txt"
        if stderr.exists():
            error += ": " + stderr.read_text(errors="replace").strip()[-300:]

    goodput = client.received_bps if client and client.received_bps else (server.received_bps if server else None)
    receiver_json = client if reverse else server
    offset = (started - t0) if started else spec.get("start", 0.0)
    intervals = [[round(offset + i.end, 3), i.bits_per_second] for i in (receiver_json.intervals if receiver_json else [])]

    expected_item = checklist.flow(name) if checklist and any(f.flow == name for f in checklist.flows) else None
    sender_series = flow_sockets(cache.samples(sender), sender == spec["src"], client_ports, spec["port"], spec["protocol"])
    receiver_series = flow_sockets(cache.samples(receiver), receiver == spec["src"], client_ports, spec["port"],
                                   spec["protocol"])
    paths = path_stats(topology, sender, receiver, sender_series, receiver_series)
    client_series = sender_series if sender == spec["src"] else receiver_series
    subflows = _subflow_outcome(cache, spec, client_ports, client_series, expected_item)
    window = interface_bytes(cache.samples(receiver), started, ended)
    return {
        **{key: spec.get(key) for key in ("name", "src", "dst", "protocol", "src_address", "dst_address", "port",
                                           "start", "duration", "streams", "congestion", "reverse", "role",
                                           "baseline_of")},
        "status": status, "error": error, "client_rc": rc,
        "started_at": started, "ended_at": ended,
        "goodput_bps": goodput,
        "sent_bps": client.sent_bps if client else None,
        "bytes_received": client.received_bytes if client else None,
        "retransmits": client.retransmits if client else None,
        "iperf3_mean_rtt_ms": client.mean_rtt_ms if client else None,
        "congestion_used": client.congestion if client else None,
        "client_ports": client_ports,
        "sender": sender, "receiver": receiver,
        "intervals": intervals,
        "subflows": subflows,
        "paths": paths,
        "receiver_interfaces": {"node": receiver, **window} if window else {},
    }


def failed_attempts(client_series: dict) -> list[str]:
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


def _subflow_outcome(cache: _Cache, spec: dict[str, Any], client_ports: list[int], client_series: dict,
                     expected: FlowChecklist | None) -> dict[str, Any]:
    established_in_samples = [key for key, points in client_series.items()
                              if any(sock.state == "ESTAB" for _, sock in points)]
    out: dict[str, Any] = {"expected": expected.expected_subflows if expected else 1 if spec["protocol"] == "tcp" else None,
                           "established": None, "source": None, "connections": [],
                           "seen_in_samples": len(established_in_samples) if client_series else None,
                           "failed_attempts": failed_attempts(client_series)}
    if spec["protocol"] != "mptcp":
        out["established"] = 1 if client_series or spec.get("launched") else None
        out["source"] = "tcp: one path"
        return out
    for node in (spec["src"], spec["dst"]):
        events = cache.monitor(node)
        if events is None or not client_ports:
            continue
        connections = connections_from_monitor(events, client_ports, spec["port"])
        if connections:
            out["connections"] = connections
            out["established"] = min(c["established"] for c in connections)
            out["established_per_connection"] = [c["established"] for c in connections]
            out["source"] = f"monitor on {node}"
            break
    return out


def build_summary(results_dir: Path) -> dict[str, Any]:
    """summary.json's content, from the files of a results directory."""
    meta = _read_json(results_dir / "run.json") or {}
    state = _read_json(results_dir / "state.json") or {}
    topology = validate(load_topology(results_dir / "topology.yaml"))
    checklist_data = _read_json(results_dir / "checklist.json")
    checklist = checklist_from_dict(checklist_data) if checklist_data else None
    cache = _Cache(results_dir)
    flows = [_flow_summary(cache, topology, meta, spec, checklist) for spec in meta.get("flows", [])]
    for flow in flows:
        if flow["protocol"] != "mptcp":
            continue
        base = [f for f in flows if f.get("baseline_of") == flow["name"]]
        if base:
            total = sum(f["goodput_bps"] or 0 for f in base)
            flow["baseline"] = {"flows": [f["name"] for f in base], "paths": [
                {"flow": f["name"], "src_address": f["src_address"], "dst_address": f["dst_address"],
                 "goodput_bps": f["goodput_bps"]} for f in base],
                "sum_bps": total, "ratio": (flow["goodput_bps"] or 0) / total if total else None}
    monitors = {}
    for node in sorted(set(meta.get("monitors_requested", [])) | set(meta.get("monitors_added", []))):
        events = cache.monitor(node)
        monitors[node] = {"requested": node in meta.get("monitors_requested", []),
                          "log": f"monitors/{node}.log", "events": len(events) if events is not None else None}
    probe = state.get("probe") or {}
    reasons = list(meta.get("reasons", []))
    for flow in flows:
        if flow["status"] not in ("ok",):
            reasons.append(f"flow {flow['name']}: {flow['status']}" + (f" ({flow['error']})" if flow["error"] else ""))
    summary = {
        "lab": meta.get("lab"), "results_dir": str(results_dir), "t0": meta.get("t0"),
        "incomplete": bool(meta.get("incomplete")) or any(f["status"] != "ok" for f in flows),
        "reasons": reasons,
        "kernel": probe.get("kernel"), "iproute2": probe.get("iproute2"), "iperf3": probe.get("iperf3"),
        "netem": probe.get("netem"), "impairments_dropped": state.get("impairments_dropped"),
        "dropped_links": state.get("dropped_links"), "mptcp_tool": meta.get("mptcp_tool"),
        "sample_period": meta.get("sample_period"),
        "monitors": monitors, "flows": flows,
    }
    if checklist is not None:
        outcomes = {flow["name"]: flow["subflows"] for flow in flows}
        (results_dir / "checklist.txt").write_text(render_checklist(checklist, outcomes))
    return summary


def write_summary(results_dir: Path, summary: dict[str, Any]) -> Path:
    path = results_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def load_or_build_summary(results_dir: Path) -> dict[str, Any]:
    summary = _read_json(results_dir / "summary.json")
    if summary is None:
        if not (results_dir / "run.json").exists():
            raise MptcpdockError(f"{results_dir} is not a results directory of 'mptcpdock run' (no run.json)")
        summary = build_summary(results_dir)
        write_summary(results_dir, summary)
    return summary


# -- the table -------------------------------------------------------------------------------------


def _size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def _rate(value: float | None) -> str:
    return f"{value / 1e6:.2f} Mbit/s" if value is not None else "-"


def render_table(summary: dict[str, Any]) -> str:
    rows = []
    for flow in summary.get("flows", []):
        sub = flow.get("subflows") or {}
        established = sub.get("established")
        expected = sub.get("expected")
        subflows = f"{established if established is not None else '?'} ({expected if expected is not None else '?'})"
        if sub.get("failed_attempts"):
            subflows += f"\n+{len(sub['failed_attempts'])} failed"
        paths, rtts = [], []
        for path in flow.get("paths", []):
            if not (path.get("bytes") or path.get("bytes_received")):
                continue
            where = f"{path.get('receiver_interface') or '?'} ({path['sender_address']}->{path['receiver_address']})"
            carried = path.get("bytes") or path.get("bytes_received")
            share = f"{path['share'] * 100:.0f}%" if path.get("share") is not None else "-"
            paths.append(f"{where}: {_size(carried)} {share}")
            rtts.append(f"{path['rtt_ms_mean']:.0f} ms" if path.get("rtt_ms_mean") is not None else "-")
        name = flow["name"] + (" (baseline)" if flow.get("role") == "baseline" else "")
        status = "" if flow["status"] == "ok" else f" [{flow['status']}]"
        rows.append([name + status, flow["protocol"], _rate(flow.get("goodput_bps")), subflows,
                     "\n".join(paths) or "-", flow.get("retransmits") if flow.get("retransmits") is not None else "-",
                     "\n".join(rtts) or "-"])
    text = tabulate(rows, headers=["flow", "proto", "goodput", "subflows (expected)",
                                   "path (receiver iface): bytes share", "retr", "RTT (sender, per path)"])
    notes = []
    for flow in summary.get("flows", []):
        base = flow.get("baseline")
        if base and base.get("ratio") is not None:
            parts = " + ".join(_rate(p["goodput_bps"]) for p in base["paths"])
            notes.append(f"{flow['name']}: MPTCP {_rate(flow['goodput_bps'])} = {base['ratio']:.3f} of single-path TCP "
                         f"{_rate(base['sum_bps'])} ({parts})")
    if summary.get("impairments_dropped"):
        notes.append("note: delay/jitter/loss were dropped on " + ", ".join(summary.get("dropped_links") or [])
                     + " (no netem in the kernel): rates only")
    if summary.get("incomplete"):
        notes.append("INCOMPLETE: " + "; ".join(summary.get("reasons", [])))
    return text + ("\n\n" + "\n".join(notes) if notes else "")


__all__ = ["arrange_files", "build_summary", "write_summary", "render_table", "connections_from_monitor",
           "format_rate"]
