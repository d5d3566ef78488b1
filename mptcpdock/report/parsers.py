"""Parsers for what the nodes write during a run (pure: text in, dataclasses out).

* ``ip -ts mptcp monitor`` logs -> :class:`MonitorEvent`
* the sampler's file (``ss -tinMOH`` and ``/proc/net/dev`` every period) -> :class:`Sample`
* iperf3 ``-J`` output -> :class:`IperfResult`
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

# -- ip -ts mptcp monitor ----------------------------------------------------------------------

#: Events iproute2 6.1 prints as "UNKNOWN N" (newer kernels than its headers).
UNKNOWN_EVENTS = {"15": "LISTENER_CREATED", "16": "LISTENER_CLOSED"}
_MONITOR_RE = re.compile(r"^\[(?P<ts>[0-9T:.\-]+)\]\s+\[\s*(?P<event>[A-Z_]+(?: \d+)?)\s*\]\s*(?P<rest>.*)$")


@dataclass(frozen=True)
class MonitorEvent:
    time: float  # epoch seconds
    event: str  # CREATED, ESTABLISHED, ANNOUNCED, SF_ESTABLISHED, SF_CLOSED, CLOSED, ...
    fields: dict[str, str]

    @property
    def token(self) -> str | None:
        return self.fields.get("token")

    @property
    def saddr(self) -> str | None:
        return _plain_address(self.fields.get("saddr4") or self.fields.get("saddr6"))

    @property
    def daddr(self) -> str | None:
        return _plain_address(self.fields.get("daddr4") or self.fields.get("daddr6"))

    @property
    def sport(self) -> int | None:
        return _int(self.fields.get("sport"))

    @property
    def dport(self) -> int | None:
        return _int(self.fields.get("dport"))

    def describe(self) -> str:
        parts = [self.event]
        if self.saddr and self.daddr:
            parts.append(f"{self.saddr}:{self.sport} -> {self.daddr}:{self.dport}")
        elif self.saddr or self.daddr:
            parts.append(f"{self.saddr or self.daddr}:{self.sport or self.dport}")
        for key in ("remid", "locid", "backup", "error", "reset_reason", "reset_flags"):
            if key in self.fields:
                parts.append(f"{key}={self.fields[key]}")
        return " ".join(parts)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _plain_address(address: str | None) -> str | None:
    if address is None:
        return None
    address = address.strip("[]")
    return address[7:] if address.startswith("::ffff:") else address


def parse_iso_utc(text: str) -> float:
    """'2026-11-25T16:18:02.181466' (the node's local time, which is UTC) -> epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def parse_monitor(text: str) -> list[MonitorEvent]:
    """Lines of ``ip -ts mptcp monitor``; lines that are not events are skipped."""
    events = []
    for line in text.splitlines():
        match = _MONITOR_RE.match(line.strip())
        if not match:
            continue
        event = match["event"]
        if event.startswith("UNKNOWN "):
            event = UNKNOWN_EVENTS.get(event.split()[1], event.replace(" ", "_"))
        fields = dict(part.split("=", 1) for part in match["rest"].split() if "=" in part)
        try:
            when = parse_iso_utc(match["ts"])
        except ValueError:
            continue
        events.append(MonitorEvent(time=when, event=event, fields=fields))
    return events


# -- sampler: ss -tinMOH and /proc/net/dev -----------------------------------------------------


@dataclass(frozen=True)
class SocketSample:
    netid: str  # tcp | mptcp
    state: str
    local: str  # address
    local_port: int
    peer: str
    peer_port: int
    info: dict[str, Any]

    @property
    def msk_token(self) -> str | None:
        """The MPTCP connection's token on this node (for a subflow: the second token)."""
        return self.info.get("msk_token") if self.netid == "tcp" else self.info.get("token")

    @property
    def is_subflow(self) -> bool:
        return self.netid == "tcp" and "msk_token" in self.info


@dataclass
class Sample:
    time: float
    sockets: list[SocketSample] = field(default_factory=list)
    interfaces: dict[str, tuple[int, int]] = field(default_factory=dict)  # iface -> (rx_bytes, tx_bytes)


_TCP_NUMBERS = {
    "cwnd": re.compile(r"\bcwnd:(\d+)"),
    "bytes_acked": re.compile(r"\bbytes_acked:(\d+)"),
    "bytes_received": re.compile(r"\bbytes_received:(\d+)"),
    "bytes_sent": re.compile(r"\bbytes_sent:(\d+)"),
    "bytes_retrans": re.compile(r"\bbytes_retrans:(\d+)"),
    "delivery_rate": re.compile(r"\bdelivery_rate (\d+)bps"),
    "mss": re.compile(r"\bmss:(\d+)"),
}
_RTT_RE = re.compile(r"\brtt:([\d.]+)/([\d.]+)")
_RETRANS_RE = re.compile(r"\bretrans:\d+/(\d+)")
_MIN_RTT_RE = re.compile(r"\bminrtt:([\d.]+)")
#: tcp_info's cumulative busy time and the parts of it the socket was limited by the peer's
#: receive window or by its own send buffer (ss prints them once the socket has been busy).
_LIMITS = {key: re.compile(rf"\b{key}:(\d+)ms") for key in ("busy", "rwnd_limited", "sndbuf_limited")}
_SUBFLOW_RE = re.compile(r"tcp-ulp-mptcp flags:(\S+) token:([0-9a-f]+)\(id:(\d+)\)/([0-9a-f]+)\(id:(\d+)\)")
_MSK_RE = re.compile(r"\btoken:([0-9a-f]+)\b(?!\()")
_MSK_NUMBERS = {key: re.compile(rf"\b{key}:(\d+)") for key in ("subflows", "add_addr_signal", "add_addr_accepted",
                                                                "subflows_max", "add_addr_accepted_max",
                                                                "subflows_total", "bytes_sent", "bytes_received",
                                                                "bytes_acked", "bytes_retrans")}
_CONGESTION_RE = re.compile(r"^(reno|cubic|bbr|bbr2|bic|dctcp|vegas|westwood|htcp|illinois|hybla|scalable|lp|veno|yeah|nv|cdg|highspeed)\b")


def split_endpoint(text: str) -> tuple[str, int]:
    """'10.0.0.1:5201', '[::ffff:10.0.0.1]:5201' or '10.0.0.1%eth1:5201' -> ('10.0.0.1', 5201);
    '*:*' -> ('*', 0)."""
    host, _, port = text.rpartition(":")
    host = host.split("%", 1)[0]  # '10.0.2.1%eth2b': a socket bound to a device
    return _plain_address(host) or "*", int(port) if port.isdigit() else 0


def parse_ss_line(line: str) -> SocketSample | None:
    parts = line.split()
    if len(parts) < 6 or parts[0] not in ("tcp", "mptcp"):
        return None
    netid, state = parts[0], parts[1]
    local, local_port = split_endpoint(parts[4])
    peer, peer_port = split_endpoint(parts[5])
    rest = " ".join(parts[6:])
    info: dict[str, Any] = {}
    if netid == "tcp":
        for key, pattern in _TCP_NUMBERS.items():
            match = pattern.search(rest)
            if match:
                info[key] = int(match[1])
        match = _RTT_RE.search(rest)
        if match:
            info["rtt_ms"] = float(match[1])
            info["rttvar_ms"] = float(match[2])
        match = _MIN_RTT_RE.search(rest)
        if match:  # the kernel's windowed minimum: the path's delay without its queue
            info["min_rtt_ms"] = float(match[1])
        match = _RETRANS_RE.search(rest)
        if match:
            info["retrans_total"] = int(match[1])
        for key, pattern in _LIMITS.items():
            match = pattern.search(rest)
            if match:
                info[f"{key}_ms"] = int(match[1])
        match = _CONGESTION_RE.match(rest)
        if match:
            info["congestion"] = match[1]
        match = _SUBFLOW_RE.search(rest)
        if match:
            info["mptcp_flags"] = match[1]
            # ss prints tokens with %x, the monitor with %08x: keep the monitor's form
            info["subflow_token"], info["local_id"] = match[2].zfill(8), int(match[3])
            info["msk_token"], info["remote_id"] = match[4].zfill(8), int(match[5])
    else:
        match = _MSK_RE.search(rest)
        if match:
            info["token"] = match[1].zfill(8)
        for key, pattern in _MSK_NUMBERS.items():
            match = pattern.search(rest)
            if match:
                info[key] = int(match[1])
    return SocketSample(netid, state, local, local_port, peer, peer_port, info)


def parse_proc_net_dev(lines: Iterable[str]) -> dict[str, tuple[int, int]]:
    out = {}
    for line in lines:
        if ":" not in line or "|" in line:
            continue
        name, _, numbers = line.partition(":")
        values = numbers.split()
        if len(values) >= 9 and values[0].isdigit():
            out[name.strip()] = (int(values[0]), int(values[8]))
    return out


def parse_samples(text: str) -> list[Sample]:
    """The sampler's file: blocks of '@ EPOCH', ss lines, '%dev', /proc/net/dev lines."""
    samples: list[Sample] = []
    dev_lines: list[str] = []
    in_dev = False

    def close() -> None:
        if samples and dev_lines:
            samples[-1].interfaces = parse_proc_net_dev(dev_lines)

    for line in text.splitlines():
        if line.startswith("@ "):
            close()
            dev_lines, in_dev = [], False
            try:
                samples.append(Sample(time=float(line[2:].strip())))
            except ValueError:
                continue
        elif not samples:
            continue
        elif line.startswith("%dev"):
            in_dev = True
        elif in_dev:
            dev_lines.append(line)
        else:
            sock = parse_ss_line(line)
            if sock is not None:
                samples[-1].sockets.append(sock)
    close()
    return samples


# -- iperf3 -J ---------------------------------------------------------------------------------


@dataclass
class IperfInterval:
    start: float  # seconds since the test started
    end: float
    bits_per_second: float
    retransmits: int | None = None


@dataclass
class IperfResult:
    ok: bool
    error: str | None
    timestamp: float | None  # epoch seconds of the test start (iperf3 gives whole seconds)
    local_ports: list[int]  # the client's data connections' local ports
    received_bps: float | None  # goodput at the receiver (end.sum_received)
    sent_bps: float | None
    received_bytes: int | None
    sent_bytes: int | None
    seconds: float | None
    retransmits: int | None
    mean_rtt_ms: float | None  # iperf3's own (TCP_INFO of the socket; for MPTCP only one subflow)
    intervals: list[IperfInterval] = field(default_factory=list)
    congestion: str | None = None
    jitter_ms: float | None = None  # UDP (at the receiver)
    lost_packets: int | None = None  # UDP
    packets: int | None = None  # UDP: datagrams sent
    lost_percent: float | None = None  # UDP


def parse_iperf3(text: str) -> IperfResult:
    """iperf3 ``-J`` output (client or server). Empty or broken output -> ok=False."""
    try:
        data = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError as exc:
        return IperfResult(False, f"iperf3 output is not JSON ({exc.msg})", None, [], None, None, None, None,
                           None, None, None)
    if not data:
        return IperfResult(False, "no iperf3 output", None, [], None, None, None, None, None, None, None)
    start = data.get("start") or {}
    end = data.get("end") or {}
    connected = start.get("connected") or []
    received = end.get("sum_received") or {}
    sent = end.get("sum_sent") or {}
    rtts = [stream.get("sender", {}).get("mean_rtt") for stream in end.get("streams") or []]
    rtts = [rtt for rtt in rtts if isinstance(rtt, (int, float)) and rtt > 0]
    intervals = []
    for interval in data.get("intervals") or []:
        total = interval.get("sum") or {}
        if "bits_per_second" in total:
            intervals.append(IperfInterval(float(total.get("start", 0)), float(total.get("end", 0)),
                                           float(total["bits_per_second"]), total.get("retransmits")))
    error = data.get("error")
    timestamp = (start.get("timestamp") or {}).get("timesecs")
    udp = received if "lost_packets" in received else end.get("sum") or {}  # iperf3 -u (older ones: only "sum")
    if "lost_packets" in udp and not received:
        received = udp
    return IperfResult(
        ok=error is None and bool(received),
        error=error,
        timestamp=float(timestamp) if timestamp else None,
        local_ports=[int(c["local_port"]) for c in connected if "local_port" in c],
        received_bps=received.get("bits_per_second"),
        sent_bps=sent.get("bits_per_second"),
        received_bytes=received.get("bytes"),
        sent_bytes=sent.get("bytes"),
        seconds=received.get("seconds"),
        retransmits=sent.get("retransmits"),
        mean_rtt_ms=(sum(rtts) / len(rtts) / 1000) if rtts else None,
        intervals=intervals,
        congestion=end.get("sender_tcp_congestion") or end.get("receiver_tcp_congestion"),
        jitter_ms=udp.get("jitter_ms") if "lost_packets" in udp else None,
        lost_packets=udp.get("lost_packets"),
        packets=udp.get("packets") if "lost_packets" in udp else None,
        lost_percent=udp.get("lost_percent"),
    )


def parse_iperf3_version(text: str) -> tuple[int, ...]:
    """'iperf 3.12 (cJSON 1.7.15)' -> (3, 12); unknown -> ()."""
    match = re.search(r"iperf\s+(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else ()
