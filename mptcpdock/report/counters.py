"""The kernel's MPTCP counters over a run: ``nstat`` (MPTcpExt) deltas per node, and the
per-connection byte counters ``ss -M`` prints (iproute2 >= 6.5).

One definition for every reader: the run's per-node deltas (``Summary.counters``), the
events' deltas between snapshots (:mod:`mptcpdock.report.events`) and the table's line of
the most telling counters. A counter the kernel does not have is ``"unsupported"``, never 0
(``nstat -asz`` prints every counter the kernel has, zeros included).
"""

from __future__ import annotations

import re
from pathlib import Path

from .parsers import Sample
from .records import ConnectionBytes

PREFIX = "MPTcpExt"
#: The MPTcpExt counters every delta lists (without the prefix), present or not.
COUNTERS = ("MPJoinSynRx", "MPJoinSynAckRx", "MPJoinAckRx", "MPJoinSynTx", "AddAddr", "AddAddrTx", "EchoAdd",
            "RmAddr", "RmAddrTx", "RmSubflow", "MPPrioTx", "MPPrioRx", "SubflowStale", "SubflowRecover",
            "MPTCPRetrans", "MPCapableFallbackACK", "MPCapableFallbackSYNACK", "MPFallbackTokenInit",
            "DssFallback", "MPFailTx", "MPFailRx")
#: Event deltas add any other counter of these families when it moved.
COUNTER_FAMILIES = ("MPJoin", "MPPrio", "Fallback", "Subflow", "AddAddr", "RmAddr", "EchoAdd")
#: The table's columns: label -> the counters summed into it.
HEADLINE = (
    ("joins tx", ("MPJoinSynTx",)),
    ("joins rx", ("MPJoinSynRx",)),
    ("joins ok", ("MPJoinAckRx", "MPJoinSynAckRx")),
    ("ADD_ADDR tx", ("AddAddrTx",)),
    ("ADD_ADDR rx", ("AddAddr",)),
    ("fallbacks", ("MPCapableFallbackACK", "MPCapableFallbackSYNACK", "MPCapableDataFallback", "DssFallback",
                   "MPFallbackTokenInit", "SimultConnectFallback")),
    ("MPTCP retrans", ("MPTCPRetrans",)),
)
#: ss -M's per-connection byte counters (iproute2 >= 6.5 prints them; a zero one is left out).
SS_BYTES = ("bytes_sent", "bytes_received", "bytes_acked", "bytes_retrans")


def parse_nstat(text: str) -> dict[str, int]:
    """Counter -> value, from ``nstat -asz`` lines ('MPTcpExtMPJoinSynRx  2  0.0') or from a
    copy of /proc/net/netstat (a 'MPTcpExt: Name ...' line, then 'MPTcpExt: 2 ...')."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        parts = line.split()
        if not parts:
            continue
        if parts[0].endswith(":"):  # /proc/net/netstat: names, then values under the same prefix
            following = lines[index + 1].split() if index + 1 < len(lines) else []
            if following[:1] == parts[:1] and not all(p.lstrip("-").isdigit() for p in parts[1:]) \
                    and all(p.lstrip("-").isdigit() for p in following[1:]):
                prefix = parts[0][:-1]
                for name, value in zip(parts[1:], following[1:]):
                    out[prefix + name] = int(value)
        elif len(parts) >= 2 and parts[0][:1].isalpha() and parts[1].isdigit():
            out[parts[0]] = int(parts[1])
    return out


def nstat_section(info_text: str) -> dict[str, int]:
    """The '## nstat' section of an info-start/info-end file."""
    _, _, rest = info_text.partition("## nstat")
    return parse_nstat(rest)


def counter_deltas(before: dict[str, int], after: dict[str, int], every: bool = False) -> dict[str, int | str]:
    """MPTcpExt deltas: the :data:`COUNTERS` always (``"unsupported"`` when the kernel has no
    such counter), then every other MPTcpExt counter (``every``) or those of
    :data:`COUNTER_FAMILIES` that moved."""
    out: dict[str, int | str] = {}
    for name in COUNTERS:
        key = PREFIX + name
        out[name] = after[key] - before.get(key, 0) if key in after else "unsupported"
    for key in sorted(after):
        name = key[len(PREFIX):]
        if not key.startswith(PREFIX) or name in out:
            continue
        delta = after[key] - before.get(key, 0)
        if every or (delta and any(family in name for family in COUNTER_FAMILIES)):
            out[name] = delta
    return out


def run_counters(results_dir: Path) -> dict[str, dict[str, int | str]]:
    """node -> the deltas of every MPTcpExt counter between the node's info-start.txt and
    info-end.txt (the run's start and end); nodes without both files are left out."""
    out: dict[str, dict[str, int | str]] = {}
    for node_dir in sorted((results_dir / "nodes").glob("*")):
        start, end = node_dir / "info-start.txt", node_dir / "info-end.txt"
        if start.exists() and end.exists():
            after = nstat_section(end.read_text(errors="replace"))
            if after:
                out[node_dir.name] = counter_deltas(nstat_section(start.read_text(errors="replace")), after, every=True)
    return out


def headline(deltas: dict[str, int | str]) -> list[tuple[str, int | str]]:
    """(label, value) of :data:`HEADLINE` for one node: a sum, or "unsupported" when none of
    its counters exists in this kernel."""
    out = []
    for label, names in HEADLINE:
        values = [deltas.get(name, "unsupported") for name in names]
        known = [value for value in values if isinstance(value, int)]
        out.append((label, sum(known) if known else "unsupported"))
    return out


def ss_bytes_supported(iproute2: str | None) -> bool:
    """Whether this iproute2 ('ip utility, iproute2-6.15.0, ...') prints ss -M byte counters."""
    match = re.search(r"iproute2-(?:ss)?(\d+)\.(\d+)", iproute2 or "")
    return bool(match) and (int(match[1]), int(match[2])) >= (6, 5)


def connection_bytes(samples: list[Sample], node: str, tokens: set[str]) -> list[ConnectionBytes]:
    """The last ``ss -M`` values of each of the flow's MPTCP connections on ``node`` (its
    tokens there); a counter ss left out (zero) is 0."""
    last: dict[str, tuple[float, object]] = {}
    for sample in samples:
        for sock in sample.sockets:
            if sock.netid == "mptcp" and sock.msk_token in tokens:
                last[sock.msk_token or ""] = (sample.time, sock)
    out = []
    for token, (time, sock) in sorted(last.items()):
        info = sock.info  # type: ignore[attr-defined]
        out.append(ConnectionBytes(
            node=node, token=token, local=_endpoint(sock.local, sock.local_port),  # type: ignore[attr-defined]
            peer=_endpoint(sock.peer, sock.peer_port),  # type: ignore[attr-defined]
            at=time, subflows_total=info.get("subflows_total"),
            **{key: int(info.get(key, 0)) for key in SS_BYTES}))
    return out


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
