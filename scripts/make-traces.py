#!/usr/bin/env python3
"""Write the synthetic bandwidth traces the examples and tests replay (no data from outside).

    python3 scripts/make-traces.py [OUTDIR]      # default: topologies/traces/

* ``wifi.mahimahi`` (Mahimahi: one millisecond timestamp per 1500-byte delivery
  opportunity): a Wi-Fi-like profile of 30 s, plateaus of 2-5 s between 3 and 14 Mbit/s
  (rate adaptation steps), with one 1.5 s dip to 0.5 Mbit/s (interference) and short
  fluctuations of +-3% inside each plateau.
* ``lte.csv`` (``time,rate``, MP-Traces style): an LTE-like profile of 30 s in 0.5 s rows, a
  slow random walk between 2 and 10 Mbit/s (fading), with one 2 s drop to 1 Mbit/s (handover).

Deterministic (a fixed seed): running it again writes the same bytes.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

PACKET_BITS = 1500 * 8
PERIOD_S = 30


def wifi_rates() -> list[tuple[float, float, float]]:
    """(start s, end s, Mbit/s) plateaus."""
    rng = random.Random(9001)
    plateaus, t = [], 0.0
    levels = [14, 10, 6, 12, 3, 8, 14, 5, 11, 7]
    for level in levels:
        length = rng.choice([2.0, 2.5, 3.0, 4.0, 5.0])
        plateaus.append((t, min(PERIOD_S, t + length), float(level)))
        t += length
        if t >= PERIOD_S:
            break
    if t < PERIOD_S:
        plateaus.append((t, PERIOD_S, 9.0))
    # the interference dip, inside the fourth plateau
    start, end, level = plateaus[3]
    dip = start + 0.5
    plateaus[3:4] = [(start, dip, level), (dip, dip + 1.5, 0.5), (dip + 1.5, end, level)]
    return plateaus


def mahimahi(plateaus: list[tuple[float, float, float]]) -> str:
    rng = random.Random(4242)
    stamps: list[int] = []
    credit = 0.0
    for ms in range(1, PERIOD_S * 1000 + 1):
        t = (ms - 1) / 1000
        level = next(mbit for start, end, mbit in plateaus if start <= t < end)
        if ms % 100 == 1:  # a new +-5% wobble every 100 ms
            wobble = 1 + rng.uniform(-0.03, 0.03)
        credit += level * 1e6 * wobble / 1000 / PACKET_BITS
        while credit >= 1:
            stamps.append(ms)
            credit -= 1
    if stamps[-1] != PERIOD_S * 1000:
        stamps.append(PERIOD_S * 1000)  # the last timestamp is the period (Mahimahi wraps there)
    return "\n".join(map(str, stamps)) + "\n"


def lte_csv() -> str:
    rng = random.Random(7)
    rows = ["time,rate"]
    rate = 6.0
    for k in range(PERIOD_S * 2):
        t = k * 0.5
        if 14.0 <= t < 16.0:
            value = 1.0
        else:
            rate = min(10.0, max(2.0, rate + rng.uniform(-0.8, 0.8)))
            value = rate
        rows.append(f"{t:g},{value:.2f}mbit")
    return "\n".join(rows) + "\n"


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "topologies" / "traces"
    out.mkdir(parents=True, exist_ok=True)
    (out / "wifi.mahimahi").write_text(mahimahi(wifi_rates()))
    (out / "lte.csv").write_text(lte_csv())
    print(f"wrote {out / 'wifi.mahimahi'} and {out / 'lte.csv'}")


if __name__ == "__main__":
    main()
