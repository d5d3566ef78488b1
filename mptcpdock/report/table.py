"""The summary table ``mptcpdock run`` and ``mptcpdock report`` print."""

from __future__ import annotations

from tabulate import tabulate

from .counters import HEADLINE, headline
from .records import FlowSummary, PathStats, Summary


def _size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def _rate(value: float | None) -> str:
    return f"{value / 1e6:.2f} Mbit/s" if value is not None else "-"


def render_table(summary: Summary) -> str:
    rows = [_flow_row(flow) for flow in summary.flows]
    text = tabulate(rows, headers=["flow", "proto", "goodput", "subflows (expected)",
                                   "path (receiver iface): bytes share", "retr", "RTT mean (min), per path"])
    notes = _notes(summary)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def _rtt(path: PathStats) -> str:
    """The sender's mean RTT under load and, in brackets, the least it saw (the path without its queue)."""
    mean = f"{path.rtt_ms_mean:.0f} ms" if path.rtt_ms_mean is not None else "-"
    return mean + (f" ({_short_ms(path.rtt_ms_min)})" if path.rtt_ms_min is not None else "")


def _short_ms(value: float) -> str:
    """Two or three significant figures: 117, 10.4, 0.03."""
    return f"{value:.{0 if value >= 100 else 1 if value >= 1 else 2}f}"


def _flow_row(flow: FlowSummary) -> list[object]:
    sub = flow.subflows
    subflows = f"{_known(sub.established)} ({_known(sub.expected)})"
    if sub.failed_attempts:
        subflows += f"\n+{len(sub.failed_attempts)} failed"
    carrying = [path for path in flow.paths if path.carried]
    paths = [f"{path.receiver_interface or '?'} ({path.sender_address}->{path.receiver_address}): "
             f"{_size(path.carried)} {_percent(path.share)}" for path in carrying]
    rtts = [_rtt(path) for path in carrying]
    name = flow.name + (" (baseline)" if flow.role == "baseline" else "")
    status = "" if flow.status == "ok" else f" [{flow.status}]"
    return [name + status, flow.protocol, _rate(flow.goodput_bps), subflows, "\n".join(paths) or "-",
            flow.retransmits if flow.retransmits is not None else "-", "\n".join(rtts) or "-"]


def _traffic_notes(summary: Summary) -> list[str]:
    """UDP loss and jitter, completion times of sized and command flows, the flows' shares."""
    notes = []
    for flow in summary.flows:
        if flow.udp is not None:
            asked = f" of {_rate(flow.bitrate_bps)} asked" if flow.bitrate_bps else ""
            notes.append(f"{flow.name} (udp): {_rate(flow.goodput_bps)} received{asked}, loss "
                         f"{flow.udp.loss_percent if flow.udp.loss_percent is not None else '-'}% "
                         f"({flow.udp.lost_packets}/{flow.udp.packets} datagrams), jitter "
                         f"{flow.udp.jitter_ms:.2f} ms" if flow.udp.jitter_ms is not None else "")
        if flow.completion_s is not None:
            what = f"{_size(flow.bytes_requested)} " if flow.bytes_requested else "its command "
            notes.append(f"{flow.name}: {what}completed in {flow.completion_s:.2f} s")
    if summary.fairness is not None:
        shares = ", ".join(f"{name} {share * 100:.1f}%" for name, share in summary.fairness.shares.items())
        notes.append(f"shares of the flows' summed goodput: {shares}; Jain's index "
                     f"{summary.fairness.jain_index:.3f}")
    return [note for note in notes if note]



def _counter_table(summary: Summary) -> list[str]:
    """The most telling MPTcpExt deltas over the run, per node that moved any."""
    rows = []
    for node, deltas in (summary.counters or {}).items():
        values = headline(deltas)
        if any(isinstance(value, int) and value for _, value in values):
            rows.append([node] + [value if isinstance(value, int) else "n/a" for _, value in values])
    if not rows:
        return []
    return [tabulate(rows, headers=["MPTcpExt over the run"] + [label for label, _ in HEADLINE])
            + ("\n(n/a: the kernel has no such counter)" if any("n/a" in row for row in rows) else "")]


def _bytes_notes(summary: Summary) -> list[str]:
    notes = []
    for flow in summary.flows:
        if flow.connection_bytes_note:
            notes.append(f"{flow.name}: ss -M byte counters {flow.connection_bytes_note}")
        for item in flow.connection_bytes or []:
            if item.node == flow.sender and item.bytes_sent:
                notes.append(f"{flow.name}: connection {item.token} on {item.node}: {_size(item.bytes_sent)} sent, "
                             f"{_size(item.bytes_acked)} acked, {_size(item.bytes_retrans)} retransmitted "
                             f"(MPTCP level, {item.subflows_total or '?'} subflows)")
    return notes


#: A path limited by the receiver's window or its own send buffer for at least this share of its
#: busy time gets a note under the table.
LIMITED_NOTE_SHARE = 0.05
_LIMIT_WORDS = {
    "sndbuf": "its send buffer was full (net.ipv4.tcp_wmem on the sender: the kernel grows it from the "
              "middle value to the maximum)",
    "rwnd": "the receiver's window was full (net.ipv4.tcp_rmem on the receiver)",
}


def _limit_notes(summary: Summary) -> list[str]:
    """TCP flows that sat idle for want of buffer: a cap that is the hosts', not the links'.

    Not for MPTCP: its scheduler hands each subflow data until that subflow's send buffer is
    full, so a subflow counts as send-buffer limited in normal work (28% of its busy time at
    0.97 of the framing limit, measured in simult_flows' "unbalanced bwidth"); the figures stay
    in ``paths[]`` for both."""
    notes = []
    for flow in summary.flows:
        if flow.protocol == "mptcp":
            continue
        for path in flow.paths:
            for limit, words in _LIMIT_WORDS.items():
                share = path.limited_share(limit)
                if share is not None and share >= LIMITED_NOTE_SHARE:
                    notes.append(f"{flow.name}: {path.sender_address}->{path.receiver_address} "
                                 f"({path.sender_interface or '?'}) could send no more for {share:.0%} of its "
                                 f"busy time ({path.busy_ms / 1000:.1f} s): {words}")
    return notes


def _notes(summary: Summary) -> list[str]:
    notes = (_event_notes(summary) + _traffic_notes(summary) + _counter_table(summary) + _bytes_notes(summary)
             + _limit_notes(summary))
    for flow in summary.flows:
        base = flow.baseline
        if base and base.ratio is not None:
            parts = " + ".join(_rate(path.goodput_bps) for path in base.paths)
            notes.append(f"{flow.name}: MPTCP {_rate(flow.goodput_bps)} = {base.ratio:.3f} of single-path TCP "
                         f"{_rate(base.sum_bps)} ({parts})")
    if summary.captures:
        notes.append(f"packet captures: {', '.join(summary.captures)} (Wireshark: Statistics > Conversations, "
                     "filter 'mptcp', Analyze > Expert info; see docs/experiments.md#packet-capture)")
    if summary.impairments_dropped:
        notes.append("note: delay/jitter/loss were dropped on " + ", ".join(summary.dropped_links or [])
                     + " (no netem in the kernel): rates only")
    if summary.incomplete:
        notes.append("INCOMPLETE: " + "; ".join(summary.reasons))
    return notes


def _event_notes(summary: Summary) -> list[str]:
    """The events table (per flow and event), trace tracking and the scheduling figures."""
    if summary.events is None:
        return []
    rows = []
    for flow in summary.flows:
        for item in flow.events or []:
            shares = [f"{path.receiver_interface or path.path}{' (backup)' if path.backup else ''}: "
                      f"{_percent(path.share_before)} -> {_percent(path.share_after)}"
                      for path in item.paths if path.share_before is not None or path.share_after is not None]
            moved = []
            for node, counters in item.counters.items():
                changed = [f"{name} +{value}" for name, value in counters.items() if isinstance(value, int) and value]
                if changed:
                    moved.append(f"{node}: " + ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else ""))
            rows.append([flow.name, f"{item.t:g} s {item.label}", _rate(item.before_bps), f"{item.gap_s:.1f} s",
                         _rate(item.allowed_bps),
                         f"{item.recovery_s:.1f} s" if item.recovery_s is not None else "not recovered",
                         "\n".join(shares) or "-", "\n".join(moved) or "-"])
    notes = []
    if rows:
        notes.append(tabulate(rows, headers=["flow", "event", "before", "gap", "allowed after", "recovery (90%)",
                                             "bytes per path: before -> after", "MPTcpExt counters"]))
    for flow in summary.flows:
        tracking = flow.trace_tracking
        if tracking and tracking.median_error is None:
            notes.append(f"{flow.name}: its paths' traces never held steady for a second (per-second goodput against "
                         "what they allowed: trace_tracking in summary.json)")
        elif tracking and tracking.median_error is not None:
            notes.append(f"{flow.name}: follows its trace within {tracking.median_error * 100:.1f}% (median; max "
                         f"{(tracking.max_error or 0) * 100:.1f}%) over {tracking.steady_seconds} steady second(s), "
                         f"{tracking.within_10_percent} within 10%")
    lag, done = summary.events.scheduling.start_lag, summary.events.scheduling.done_lag
    if lag.count and lag.median_ms is not None and done.median_ms is not None:
        notes.append(f"scheduling: {lag.count} steps; planned -> started median {lag.median_ms:.2f} ms, p95 "
                     f"{lag.p95_ms:.2f} ms; planned -> applied (command done) median {done.median_ms:.2f} ms, "
                     f"p95 {done.p95_ms:.2f} ms (events.log, timeline.txt)")
    return notes


def _known(count: int | None) -> str:
    return "?" if count is None else str(count)


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"
