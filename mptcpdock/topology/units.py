"""Parse and format the units people write in topologies: rates, durations, percentages.

Values are held in integral base units (bit/s, microseconds) so that two topologies
that say the same thing in different words compare equal.
"""

from __future__ import annotations

import re

_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)?\s*$", re.IGNORECASE)
_RATE_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_TIME_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s)?\s*$", re.IGNORECASE)
_TIME_SCALE = {"us": 1, "ms": 1_000, "s": 1_000_000}
_PERCENT_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%?\s*$")
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_BYTES_SCALE = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class UnitError(ValueError):
    """A value that is not in the expected unit; ``fix`` says what to write instead."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.fix = fix


def parse_rate(value: object) -> int:
    """'10mbit' -> 10_000_000 (bit/s). Plain numbers are bit/s."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a rate", "write a rate such as 10mbit, 1.5gbit or 500kbit")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise UnitError(f"rate {value!r} must be positive", "write a rate such as 10mbit")
        return int(value)
    match = _RATE_RE.match(str(value))
    if not match:
        raise UnitError(f"{value!r} is not a rate", "write a rate such as 10mbit, 1.5gbit or 500kbit")
    number, prefix, unit = match.groups()
    if unit and unit.lower() == "bps":
        raise UnitError(
            f"{value!r} is ambiguous: tc reads 'bps' as bytes per second",
            f"write {number}{prefix.lower()}bit for bits per second",
        )
    bits = float(number) * _RATE_SCALE[prefix.lower()]
    if bits < 8:
        raise UnitError(f"rate {value!r} is too small", "write at least 8bit; a link rate is usually kbit..gbit")
    return int(round(bits))


def parse_bytes(value: object) -> int:
    """'10M' -> 10485760 bytes (K/M/G as iperf3 -n reads them: powers of 1024). Plain numbers are bytes."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a size", "write a size such as 10M, 500K or 1G (bytes)")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise UnitError(f"size {value!r} must be positive", "write a size such as 10M")
        return int(value)
    match = _BYTES_RE.match(str(value))
    if not match:
        raise UnitError(f"{value!r} is not a size", "write a size such as 10M, 500K or 1G (bytes)")
    number, prefix, _ = match.groups()
    size = int(round(float(number) * _BYTES_SCALE[prefix.lower()]))
    if size < 1:
        raise UnitError(f"size {value!r} is too small", "write at least 1 byte, e.g. 100K")
    return size


def parse_time_us(value: object, *, what: str = "delay") -> int:
    """'10ms' -> 10_000 (microseconds). Plain numbers are milliseconds, as in NeST."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a {what}", "write a duration such as 10ms, 250us or 1s")
    if isinstance(value, (int, float)):
        if value < 0:
            raise UnitError(f"{what} {value!r} is negative", "write a duration such as 10ms")
        return int(round(value * 1000))
    match = _TIME_RE.match(str(value))
    if not match:
        raise UnitError(f"{value!r} is not a {what}", "write a duration such as 10ms, 250us or 1s")
    number, unit = match.groups()
    return int(round(float(number) * _TIME_SCALE[(unit or "ms").lower()]))


def parse_seconds(value: object, *, what: str = "time") -> float:
    """'20s' / '500ms' / 20 -> seconds (plain numbers are seconds)."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a {what}", "write seconds, e.g. 20 or 20s")
    if isinstance(value, (int, float)):
        if value < 0:
            raise UnitError(f"{what} {value!r} is negative", "write a non-negative number of seconds")
        return float(value)
    match = _TIME_RE.match(str(value))
    if not match:
        raise UnitError(f"{value!r} is not a {what}", "write seconds, e.g. 20 or 20s")
    number, unit = match.groups()
    return float(number) * _TIME_SCALE[(unit or "s").lower()] / 1_000_000


def parse_percent(value: object) -> float:
    """'1%' / 1 / '0.5' -> percent in [0, 100]."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a percentage", "write a percentage such as 1% or 0.5%")
    text = str(value)
    match = _PERCENT_RE.match(text)
    if not match:
        raise UnitError(f"{value!r} is not a percentage", "write a percentage such as 1% or 0.5%")
    percent = float(match.group(1))
    if percent > 100:
        raise UnitError(f"{value!r} is over 100%", "write a percentage between 0% and 100%")
    return percent


def format_rate(bits: int) -> str:
    """10_000_000 -> '10mbit' (exact when possible, as tc accepts)."""
    for prefix, scale in (("g", 10**9), ("m", 10**6), ("k", 10**3)):
        if bits >= scale and bits % scale == 0:
            return f"{bits // scale}{prefix}bit"
    for prefix, scale in (("g", 10**9), ("m", 10**6), ("k", 10**3)):
        if bits >= scale and (bits * 1000) % scale == 0:
            return f"{bits / scale:g}{prefix}bit"
    return f"{bits}bit"


def format_time_us(micros: int) -> str:
    """10_000 -> '10ms'; 250 -> '250us'."""
    if micros % 1_000_000 == 0 and micros:
        return f"{micros // 1_000_000}s"
    if micros % 1_000 == 0:
        return f"{micros // 1_000}ms"
    return f"{micros}us"


def format_percent(percent: float) -> str:
    return f"{percent:g}%"
