"""Where a run's files go: the layout of ``results/<lab>-<YYYYmmdd-HHMMSS>/`` (see docs/experiments.md)::

    summary.json  checklist.txt  checklist.json  commands.sh  topology.yaml  state.json  run.json
    flows/<flow>/client.json  server.json  timing.json  [client.stderr.txt  server.stderr.txt]
                                              (tool: command flows: client.stdout.txt  server.stdout.txt)
    monitors/<node>.log                       ip -ts mptcp monitor, one line per event
    samples/<node>.txt                        raw sampler output (ss -tinMOH + /proc/net/dev)
    samples/<node>-sockets.csv  samples/<node>-interfaces.csv
    nodes/<node>/info-start.txt  info-end.txt settings, qdisc counters, nstat (MIB) at start/end
    nodes/<node>/events.log  nstat-<t>.txt    what the node's event agent applied; nstat before each event
    events.log  timeline.txt                  every node's applied steps merged; events + monitors + flows
    events/schedules/<node>.txt  <node>-restore.txt   the schedule each agent was given, the restore lines
    traces/*                                  the traces the run replayed (topology.yaml names them here)
    captures/<node>-<iface>.pcap  .log        tcpdump's packets (headers: snaplen) and its own messages
    plots/*.png

:func:`arrange_files` moves what was copied out of each node into that layout.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

from .parsers import parse_samples

# -- file layout ---------------------------------------------------------------------------------


def arrange_files(results_dir: Path) -> None:
    """Move the files copied out of each node (nodes/<node>/) into the published layout."""
    meta = read_json(results_dir / "run.json") or {}
    flow_names = [flow["name"] for flow in meta.get("flows", [])]
    commands = {flow["name"] for flow in meta.get("flows", []) if flow.get("tool") == "command"}
    for node_dir in sorted((results_dir / "nodes").glob("*")):
        node = node_dir.name
        for path in sorted(node_dir.iterdir()):
            name = path.name
            if name == "monitor.log":
                _move(path, results_dir / "monitors" / f"{node}.log")
            elif name == "samples.txt":
                _move(path, results_dir / "samples" / f"{node}.txt")
            elif name.startswith("capture-") and name.endswith((".pcap", ".log")):  # tcpdump's file, its messages
                _move(path, results_dir / "captures" / f"{node}-{name[len('capture-'):]}")
            elif name.endswith(".pid") or name == "events.done" or (name == "events.err" and not path.stat().st_size):
                path.unlink()
            elif name in ("schedule.txt", "restore.txt", "restore.applied"):  # what the event agent was given
                suffix = "" if name == "schedule.txt" else "-restore"
                _move(path, results_dir / "events" / "schedules" / f"{node}{suffix}.txt")
            else:
                for flow in flow_names:
                    for role in ("client", "server"):
                        prefix = f"{flow}.{role}."
                        if name.startswith(prefix):
                            _arrange_flow_file(path, results_dir / "flows" / flow, role, name[len(prefix):],
                                               flow in commands)
    for samples in sorted((results_dir / "samples").glob("*.txt")):
        _write_sample_csvs(samples)


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), str(target))


def _arrange_flow_file(path: Path, flow_dir: Path, role: str, kind: str, command: bool = False) -> None:
    flow_dir.mkdir(parents=True, exist_ok=True)
    if kind == "json" and command:  # a command flow's stdout
        _move(path, flow_dir / f"{role}.stdout.txt")
    elif kind == "json":
        _move(path, flow_dir / f"{role}.json")
    elif kind == "err":
        if path.read_text(errors="replace").strip():
            _move(path, flow_dir / f"{role}.stderr.txt")
        else:
            path.unlink()
    elif kind in ("start", "end", "rc"):
        timing_path = flow_dir / "timing.json"
        timing = read_json(timing_path) or {}
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
                "delivery_rate", "busy_ms", "rwnd_limited_ms",
                "sndbuf_limited_ms", "mptcp_flags", "msk_token", "token", "subflows"]
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


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
