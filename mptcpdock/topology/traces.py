"""Read bandwidth traces (``trace: FILE`` on a link direction) into :class:`RateTrace` step functions.

Two formats:

* **Mahimahi** (any name not ending in ``.csv``): one integer per line, a millisecond
  timestamp at which one 1500-byte packet may be delivered; a timestamp repeated N times is
  N packets in that millisecond. The trace lasts until its last timestamp and then wraps (as
  Mahimahi's link shells do). Read into windows of :data:`TRACE_BIN` seconds:
  rate = packets x 1500 x 8 / window.
* **CSV** (``.csv``, MP-Traces style): ``time,rate`` rows (a header line is allowed), time in
  seconds from the trace's start, rate in bit/s or with a unit (``12.5mbit``). Each rate holds
  from its time to the next row's; the last row holds for as long as the gap before it, then
  the trace wraps.

Rates below :data:`MIN_TRACE_RATE` (an outage in the trace) are raised to it: htb cannot
run a class at 0 bit/s. Errors are :class:`TraceError` with the line and a fix.
"""

from __future__ import annotations

from pathlib import Path

from .model import TRACE_BIN, RateTrace
from .units import UnitError, parse_rate

MAHIMAHI_PACKET = 1500  # bytes per delivery opportunity
MIN_TRACE_RATE = 10_000  # bit/s: an outage in a trace is replayed as 10 kbit/s
MAX_TRACE_SECONDS = 24 * 3600


class TraceError(ValueError):
    def __init__(self, message: str, fix: str, line: int | None = None) -> None:
        super().__init__(message)
        self.fix = fix
        self.line = line


def trace_format(path: str | Path) -> str:
    return "csv" if str(path).lower().endswith(".csv") else "mahimahi"


def parse_mahimahi(text: str, bin_seconds: float = TRACE_BIN) -> tuple[tuple[tuple[float, int], ...], float]:
    stamps: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not line.isdigit():
            raise TraceError(f"line {number}: {line[:40]!r} is not a millisecond timestamp",
                             "write one whole number of milliseconds per line (Mahimahi format), "
                             "or name the file .csv for time,rate rows", number)
        value = int(line)
        if stamps and value < stamps[-1]:
            raise TraceError(f"line {number}: timestamp {value} is before the previous one ({stamps[-1]})",
                             "sort the timestamps", number)
        stamps.append(value)
    if not stamps or stamps[-1] <= 0:
        raise TraceError("the trace has no timestamps after 0 ms", "give at least one delivery opportunity after 0 ms")
    period = stamps[-1] / 1000
    if period > MAX_TRACE_SECONDS:
        raise TraceError(f"the trace lasts {period:g} s", "keep traces under a day")
    bin_ms = bin_seconds * 1000
    bins = [0] * max(1, int(-(-stamps[-1] // bin_ms)))
    for stamp in stamps:
        # Mahimahi's timestamp t delivers in the millisecond ending at t; t == period is the wrap point
        index = min(len(bins) - 1, int((stamp - 1) // bin_ms)) if stamp > 0 else 0
        bins[index] += 1
    segments: list[tuple[float, int]] = []
    for index, count in enumerate(bins):
        width = min(bin_seconds, period - index * bin_seconds)
        rate = max(MIN_TRACE_RATE, int(round(count * MAHIMAHI_PACKET * 8 / width))) if width > 0 else MIN_TRACE_RATE
        if not segments or segments[-1][1] != rate:
            segments.append((round(index * bin_seconds, 6), rate))
    return tuple(segments), period


def parse_csv(text: str) -> tuple[tuple[tuple[float, int], ...], float]:
    rows: list[tuple[float, int]] = []
    first = True
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        header, first = first, False
        parts = [part.strip() for part in line.split(",")]
        if len(parts) != 2:
            raise TraceError(f"line {number}: expected 'time,rate', got {line[:40]!r}", "write rows like 0.5,12mbit",
                             number)
        try:
            when = float(parts[0])
        except ValueError:
            if header:  # a header line such as 'time,rate'
                continue
            raise TraceError(f"line {number}: {parts[0]!r} is not a time in seconds", "write seconds, e.g. 0.5",
                             number) from None
        try:
            rate = parse_rate(float(parts[1]) if _is_number(parts[1]) else parts[1])
        except UnitError as exc:
            raise TraceError(f"line {number}: {exc}", exc.fix, number) from None
        if rows and when <= rows[-1][0]:
            raise TraceError(f"line {number}: time {when:g} s is not after the previous row's {rows[-1][0]:g} s",
                             "sort the rows by time, one row per time", number)
        if not rows and when != 0:
            raise TraceError(f"line {number}: the first row is at {when:g} s", "start the trace at time 0", number)
        rows.append((when, rate))
    if not rows:
        raise TraceError("the trace has no rows", "write 'time,rate' rows, e.g. 0,10mbit")
    last_gap = rows[-1][0] - rows[-2][0] if len(rows) > 1 else 1.0
    period = rows[-1][0] + last_gap
    if period > MAX_TRACE_SECONDS:
        raise TraceError(f"the trace lasts {period:g} s", "keep traces under a day")
    segments: list[tuple[float, int]] = []
    for when, rate in rows:
        rate = max(MIN_TRACE_RATE, rate)
        if not segments or segments[-1][1] != rate:
            segments.append((when, rate))
    return tuple(segments), period


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def load_trace(path: Path) -> RateTrace:
    """Read and parse a trace file (raises OSError or :class:`TraceError`)."""
    text = path.read_text(errors="replace")
    fmt = trace_format(path)
    segments, period = parse_csv(text) if fmt == "csv" else parse_mahimahi(text)
    return RateTrace(path=str(path), format=fmt, segments=segments, period=period)
