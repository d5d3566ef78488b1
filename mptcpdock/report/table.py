"""The summary table ``mptcpdock run`` and ``mptcpdock report`` print."""

from __future__ import annotations

from tabulate import tabulate

from .records import FlowSummary, Summary


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
                                   "path (receiver iface): bytes share", "retr", "RTT (sender, per path)"])
    notes = _notes(summary)
    return text + ("\n\n" + "\n".join(notes) if notes else "")


def _flow_row(flow: FlowSummary) -> list[object]:
    sub = flow.subflows
    subflows = f"{_known(sub.established)} ({_known(sub.expected)})"
    if sub.failed_attempts:
        subflows += f"\n+{len(sub.failed_attempts)} failed"
    carrying = [path for path in flow.paths if path.carried]
    paths = [f"{path.receiver_interface or '?'} ({path.sender_address}->{path.receiver_address}): "
             f"{_size(path.carried)} {_percent(path.share)}" for path in carrying]
    rtts = [f"{path.rtt_ms_mean:.0f} ms" if path.rtt_ms_mean is not None else "-" for path in carrying]
    name = flow.name + (" (baseline)" if flow.role == "baseline" else "")
    status = "" if flow.status == "ok" else f" [{flow.status}]"
    return [name + status, flow.protocol, _rate(flow.goodput_bps), subflows, "\n".join(paths) or "-",
            flow.retransmits if flow.retransmits is not None else "-", "\n".join(rtts) or "-"]


def _notes(summary: Summary) -> list[str]:
    notes = []
    for flow in summary.flows:
        base = flow.baseline
        if base and base.ratio is not None:
            parts = " + ".join(_rate(path.goodput_bps) for path in base.paths)
            notes.append(f"{flow.name}: MPTCP {_rate(flow.goodput_bps)} = {base.ratio:.3f} of single-path TCP "
                         f"{_rate(base.sum_bps)} ({parts})")
    if summary.impairments_dropped:
        notes.append("note: delay/jitter/loss were dropped on " + ", ".join(summary.dropped_links or [])
                     + " (no netem in the kernel): rates only")
    if summary.incomplete:
        notes.append("INCOMPLETE: " + "; ".join(summary.reasons))
    return notes


def _known(count: int | None) -> str:
    return "?" if count is None else str(count)


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"
