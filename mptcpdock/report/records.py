"""The records of ``summary.json``: one typed definition for the summary a run writes, the
table and the plots it is drawn as, and whatever reads it back (``mptcpdock report``,
sweeps, ``--json``).

Each record serialises (:meth:`Record.to_dict`) to the keys of summary.json in the order
the file has them, and reads back from that form (:meth:`Record.from_dict`; a key that is
missing takes its field's default, so older and partial summaries read too). Times are
epoch seconds unless a field says otherwise; rates are bit/s; sizes bytes.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Mapping, TypeVar

#: The version of summary.json's layout, written as its ``"schema"`` key. Raise it when a
#: key changes meaning or goes away (adding a key keeps the version).
SCHEMA = 1

R = TypeVar("R", bound="Record")

#: ``to_dict`` leaves the key out while the field is None.
OMIT_WHEN_NONE = {"when_none": "omit"}
#: ``to_dict`` writes ``{}`` while the field is None (and ``from_dict`` reads ``{}`` as None).
EMPTY_WHEN_NONE = {"when_none": "empty"}


class Record:
    """A dataclass that converts to and from summary.json's plain JSON values."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for item in fields(self):  # type: ignore[arg-type]
            value = getattr(self, item.name)
            when_none = item.metadata.get("when_none")
            if value is None and when_none == "omit":
                continue
            out[item.name] = {} if value is None and when_none == "empty" else _plain(value)
        return out

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        hints = typing.get_type_hints(cls)
        values = {}
        for item in fields(cls):  # type: ignore[arg-type]
            if item.name not in data:
                continue
            value = data[item.name]
            if value == {} and item.metadata.get("when_none") == "empty":
                value = None
            values[item.name] = _typed(hints[item.name], value)
        return cls(**values)


def _plain(value: Any) -> Any:
    """Records, tuples and nested containers as JSON values (lists and dicts)."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _typed(hint: Any, value: Any) -> Any:
    """A JSON value as the type ``hint`` says: records, tuples, lists and dicts of them."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _typed(next(arg for arg in args if arg is not type(None)), value)
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value)
    if origin is list:
        return [_typed(args[0], item) for item in value]
    if origin is tuple:
        return tuple(_typed(arg, item) for arg, item in zip(args, value))
    if origin is dict:
        return {key: _typed(args[1], item) for key, item in value.items()}
    return value


# -- a flow's subflows, as the monitors and the samples saw them ---------------------------------------

@dataclass
class Connection(Record):
    """One MPTCP data connection of a flow, as one node's ``ip mptcp monitor`` saw it."""

    token: str = ""
    view: str = ""  # "client" or "server": the end whose monitor this is
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (client, server) address per established subflow, initial first
    subflows: list[str] = field(default_factory=list)  # the same, as text ("a -> b (initial)")
    announced: list[str] = field(default_factory=list)  # ADD_ADDRs received
    failed: list[str] = field(default_factory=list)  # subflows closed before the connection
    established: int = 0  # len(pairs)
    events: list[str] = field(default_factory=list)  # the connection's monitor events (at most 50)


@dataclass
class SubflowOutcome(Record):
    """How many subflows a flow was expected to open and how many it did."""

    expected: int | None = None  # from the checklist (1 for TCP)
    established: int | None = None  # the fewest over the flow's connections
    source: str | None = None  # where ``established`` comes from ("monitor on h1", "tcp: one path")
    connections: list[Connection] = field(default_factory=list)
    seen_in_samples: int | None = None  # subflows ss saw ESTAB on the client
    failed_attempts: list[str] = field(default_factory=list)  # subflows ss saw, never ESTAB
    established_per_connection: list[int] | None = field(default=None, metadata=OMIT_WHEN_NONE)


@dataclass
class PathStats(Record):
    """One path of a flow (sender address -> receiver address), from both ends' ss samples."""

    sender_address: str = ""
    receiver_address: str = ""
    sender_interface: str | None = None
    receiver_interface: str | None = None
    bytes: int = 0  # acked, at the sender
    bytes_received: int = 0  # at the receiver
    retransmits: int = 0
    sockets: list[tuple[str, int, str, int]] = field(default_factory=list)  # the sender's subflows on it
    states: list[str] = field(default_factory=list)  # TCP states ss showed
    first_seen: float | None = None
    last_seen: float | None = None
    share: float | None = None  # of the flow's bytes
    rtt_ms_mean: float | None = None  # over busy samples (> 100 kB acked): delay plus queueing
    # the least `minrtt` ss showed: the path's delay without queueing (absent in older summaries)
    rtt_ms_min: float | None = field(default=None, metadata=OMIT_WHEN_NONE)
    cwnd_mean: float | None = None
    # tcp_info at the sender, summed over the path's subflows (the last sample of each): the
    # time they had data in flight, and the parts of it they could send no more because the
    # receiver's window was full or their send buffer was (absent before any was busy)
    busy_ms: int | None = field(default=None, metadata=OMIT_WHEN_NONE)
    rwnd_limited_ms: int | None = field(default=None, metadata=OMIT_WHEN_NONE)
    sndbuf_limited_ms: int | None = field(default=None, metadata=OMIT_WHEN_NONE)

    @property
    def carried(self) -> int:
        """Bytes this path carried: acked at the sender, else received."""
        return self.bytes or self.bytes_received

    def limited_share(self, limit: str) -> float | None:
        """The share of the busy time limited by ``limit`` ('rwnd' or 'sndbuf')."""
        limited = getattr(self, f"{limit}_limited_ms")
        return (limited or 0) / self.busy_ms if self.busy_ms else None


@dataclass
class InterfaceBytes(Record):
    rx_bytes: int = 0
    tx_bytes: int = 0


@dataclass
class NodeCounters(Record):
    """One node's interface byte counters (``/proc/net/dev``) between two samples."""

    node: str = ""
    window: tuple[float, float] = (0.0, 0.0)  # times of the two samples
    bytes: dict[str, InterfaceBytes] = field(default_factory=dict)  # interface -> bytes in the window


@dataclass
class ConnectionBytes(Record):
    """One MPTCP connection's byte counters as ``ss -M`` showed them last (MPTCP_INFO: data
    level, over all its subflows; iproute2 >= 6.5)."""

    node: str = ""
    token: str = ""  # the connection's token on this node
    local: str = ""  # address:port
    peer: str = ""
    at: float = 0.0  # the sample's time
    bytes_sent: int = 0
    bytes_received: int = 0
    bytes_acked: int = 0
    bytes_retrans: int = 0
    subflows_total: int | None = None


# -- flows ----------------------------------------------------------------------------------------------

@dataclass
class BaselinePath(Record):
    flow: str = ""  # the single-path TCP flow
    src_address: str | None = None
    dst_address: str | None = None
    goodput_bps: float | None = None


@dataclass
class Baseline(Record):
    """An MPTCP flow against single-path TCP over each of its paths, one at a time."""

    flows: list[str] = field(default_factory=list)
    paths: list[BaselinePath] = field(default_factory=list)
    sum_bps: float = 0.0
    ratio: float | None = None  # MPTCP goodput / sum_bps


# -- events: what the lab's events did and each flow's answer ------------------------------------------

@dataclass
class EventPathBytes(Record):
    """Bytes one path of a flow carried before and after an event (see report/events.py)."""

    path: str = ""  # sender address -> receiver address
    backup: bool = False  # the subflow was established as a backup (monitor: backup=1)
    receiver_interface: str | None = None
    bytes_before: int = 0  # acked at the sender (this flow's subflows only: ss samples)
    bytes_after: int = 0
    share_before: float | None = None
    share_after: float | None = None
    interface_rx_before: int | None = field(default=None, metadata=OMIT_WHEN_NONE)  # every flow on the interface
    interface_rx_after: int | None = field(default=None, metadata=OMIT_WHEN_NONE)
    interface_share_before: float | None = field(default=None, metadata=OMIT_WHEN_NONE)
    interface_share_after: float | None = field(default=None, metadata=OMIT_WHEN_NONE)


@dataclass
class FlowEvent(Record):
    """One flow's answer to one event that touches one of its paths (or one of its ends)."""

    id: str = ""  # e<event index>.<which of its times>
    t: float = 0.0  # seconds after t0
    label: str = ""
    touches: list[str] = field(default_factory=list)  # the flow's links (or end nodes) it touches
    before_bps: float | None = None  # mean goodput over the 2 s before
    gap_s: float = 0.0  # longest stretch after it below 10% of before_bps
    gap_from: float | None = None
    min_bps: float | None = None
    allowed_bps: float | None = None  # what the remaining paths allow (fair share, payload)
    allowed_paths: list[str] = field(default_factory=list)
    recovery_s: float | None = None  # to the first 0.5 s at >= 90% of allowed_bps; None: not recovered
    window: tuple[float, float] = (0.0, 0.0)  # the before window's start, the after window's end (s after t0)
    paths: list[EventPathBytes] = field(default_factory=list)
    subflow_events: list[str] = field(default_factory=list)  # monitor events of the flow's connections
    counters: dict[str, dict[str, int | str]] | None = field(default=None, metadata=OMIT_WHEN_NONE)  # node -> MPTcpExt delta | "unsupported"


@dataclass
class TraceSecond(Record):
    t: float = 0.0
    goodput_bps: float | None = None
    expected_bps: float | None = None
    error: float | None = None
    steady: bool = False


@dataclass
class TraceTracking(Record):
    """A flow's per-second goodput against what its traced paths allowed."""

    seconds: list[TraceSecond] = field(default_factory=list)
    steady_seconds: int = 0
    median_error: float | None = None
    max_error: float | None = None
    within_10_percent: int = 0
    traced_egresses: list[str] = field(default_factory=list)


@dataclass
class AppliedCommand(Record):
    node: str = ""
    command: str = ""
    rc: int = 0
    start_lag_ms: float | None = None  # started - planned
    done_lag_ms: float | None = None  # finished - planned
    error: str | None = field(default=None, metadata=OMIT_WHEN_NONE)


@dataclass
class EventOccurrence(Record):
    """One time one event happened: what was planned and what each node's agent applied."""

    id: str = ""
    event: int = 0  # index in the topology's events
    t: float = 0.0
    label: str = ""
    action: str = ""
    link: str | None = None
    node: str | None = None
    nodes: list[str] = field(default_factory=list)
    status: str = ""  # applied | failed | no change | not applied
    note: str | None = None
    planned: list[str] = field(default_factory=list)
    applied: list[AppliedCommand] = field(default_factory=list)


@dataclass
class LagStats(Record):
    count: int = 0
    median_ms: float | None = None
    p95_ms: float | None = None
    max_ms: float | None = None


@dataclass
class Scheduling(Record):
    """Planned vs applied, over every timed step the agents logged (events and trace steps)."""

    steps: int = 0
    start_lag: LagStats = field(default_factory=LagStats)
    done_lag: LagStats = field(default_factory=LagStats)
    events_only: LagStats = field(default_factory=LagStats)
    trace_only: LagStats = field(default_factory=LagStats)


@dataclass
class TraceReplay(Record):
    steps: int = 0
    step_s: float = 0.1
    rate_changes: int = 0


@dataclass
class EventsSummary(Record):
    log: str = "events.log"
    timeline: str = "timeline.txt"
    occurrences: list[EventOccurrence] = field(default_factory=list)
    scheduling: Scheduling = field(default_factory=Scheduling)
    traces: dict[str, TraceReplay] = field(default_factory=dict)  # "node:interface" -> its replay
    counters: dict[str, dict[str, int | str]] | None = field(default=None, metadata=OMIT_WHEN_NONE)  # node -> run's MPTcpExt deltas


@dataclass
class UdpOutcome(Record):
    """A UDP flow at the receiver (iperf3 -u)."""

    jitter_ms: float | None = None
    lost_packets: int | None = None
    packets: int | None = None
    loss_percent: float | None = None


@dataclass
class Fairness(Record):
    """How the flows that ran side by side shared the network (role "flow", status ok)."""

    flows: list[str] = field(default_factory=list)
    shares: dict[str, float] = field(default_factory=dict)  # flow -> its part of their summed goodput
    jain_index: float | None = None  # (sum x)^2 / (n * sum x^2): 1 = equal goodputs


@dataclass
class FlowSummary(Record):
    """One flow of the run: what was asked (the first fields, as run.json has them) and what
    happened."""

    name: str = ""
    src: str = ""
    dst: str = ""
    protocol: str = ""
    src_address: str | None = None
    dst_address: str | None = None
    port: int | None = None
    start: float | None = None  # seconds after t0
    duration: float | None = None  # seconds
    streams: int | None = None
    congestion: str | None = None
    reverse: bool | None = None
    role: str | None = None  # "flow" or "baseline"
    baseline_of: str | None = None
    status: str = ""  # ok | failed | interrupted | not started
    error: str | None = None
    client_rc: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    goodput_bps: float | None = None
    sent_bps: float | None = None
    bytes_received: int | None = None
    retransmits: int | None = None
    iperf3_mean_rtt_ms: float | None = None
    congestion_used: str | None = None
    client_ports: list[int] = field(default_factory=list)
    sender: str = ""
    receiver: str = ""
    intervals: list[tuple[float, float]] = field(default_factory=list)  # (seconds since t0, receiver bit/s)
    subflows: SubflowOutcome = field(default_factory=SubflowOutcome)
    paths: list[PathStats] = field(default_factory=list)  # most bytes first
    receiver_interfaces: NodeCounters | None = field(default=None, metadata=EMPTY_WHEN_NONE)
    baseline: Baseline | None = field(default=None, metadata=OMIT_WHEN_NONE)
    events: list[FlowEvent] | None = field(default=None, metadata=OMIT_WHEN_NONE)  # runs with events
    tool: str | None = field(default=None, metadata=OMIT_WHEN_NONE)  # "command" (iperf3: left out)
    bitrate_bps: int | None = field(default=None, metadata=OMIT_WHEN_NONE)  # the asked rate (iperf3 -b)
    bytes_requested: int | None = field(default=None, metadata=OMIT_WHEN_NONE)  # a sized flow (iperf3 -n)
    completion_s: float | None = field(default=None, metadata=OMIT_WHEN_NONE)  # sized/command: start to done
    udp: UdpOutcome | None = field(default=None, metadata=OMIT_WHEN_NONE)  # protocol: udp
    share: float | None = field(default=None, metadata=OMIT_WHEN_NONE)  # of the goodput of the flows beside it
    trace_tracking: TraceTracking | None = field(default=None, metadata=OMIT_WHEN_NONE)  # a path replays a trace
    #: mptcp flows: each data connection's ss -M byte counters at both ends (None: not measured)
    connection_bytes: list[ConnectionBytes] | None = field(default=None, metadata=OMIT_WHEN_NONE)
    #: why connection_bytes is missing (e.g. the image's iproute2 predates them)
    connection_bytes_note: str | None = field(default=None, metadata=OMIT_WHEN_NONE)


# -- the run ---------------------------------------------------------------------------------------------

@dataclass
class MonitorSummary(Record):
    requested: bool = False  # asked for by the topology (else added for the after-run check)
    log: str = ""  # relative to the results directory
    events: int | None = None  # None: no log was found


@dataclass
class Summary(Record):
    """summary.json: the whole run."""

    schema: int = SCHEMA
    lab: str | None = None
    results_dir: str | None = None
    t0: float | None = None  # when the first flow could start
    incomplete: bool = False
    reasons: list[str] = field(default_factory=list)  # why it is incomplete
    kernel: str | None = None  # the Docker host's
    iproute2: str | None = None
    iperf3: str | None = None
    netem: bool | None = None
    impairments_dropped: bool | None = None
    dropped_links: list[str] | None = None
    mptcp_tool: str | None = None  # mptcpize | native
    sample_period: float | None = None
    monitors: dict[str, MonitorSummary] = field(default_factory=dict)
    flows: list[FlowSummary] = field(default_factory=list)
    events: EventsSummary | None = field(default=None, metadata=OMIT_WHEN_NONE)  # runs with events or traces
    fairness: Fairness | None = field(default=None, metadata=OMIT_WHEN_NONE)  # two or more flows ran
    captures: list[str] | None = field(default=None, metadata=OMIT_WHEN_NONE)  # pcap files, under captures/
    #: node -> the deltas of every MPTcpExt counter over the run (nstat; "unsupported": the
    #: kernel has no such counter)
    counters: dict[str, dict[str, int | str]] | None = field(default=None, metadata=OMIT_WHEN_NONE)
    plots: list[str] | None = field(default=None, metadata=OMIT_WHEN_NONE)  # file names under plots/

    def flow(self, name: str) -> FlowSummary:
        for item in self.flows:
            if item.name == name:
                return item
        raise KeyError(f"no flow {name!r} in the summary (flows: {', '.join(f.name for f in self.flows)})")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Summary":
        return cls.from_dict(json.loads(text))
