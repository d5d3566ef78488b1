"""Turn one link end's :class:`~mptcpdock.topology.model.Shaping` into ``tc`` commands (pure).

Layout on the egress of each link end, as in Mininet's ``TCIntf``:

* rate given: ``htb`` root with one class at the rate (burst sized for the rate);
  beneath it ``netem`` when delay/jitter/loss are asked for, else ``pfifo``;
* no rate: ``netem`` as root for delay/jitter/loss, or ``pfifo`` for a bare queue limit.

The queue limit (packets) defaults to about one bandwidth-delay product of the link,
using the round trip over this link (twice its delay) with a floor of 20 ms, and never
fewer than :data:`MIN_QUEUE` packets: enough for TCP to fill the link without building
seconds of delay. Write ``queue:`` on a link to choose it yourself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..topology.model import Shaping

MTU_FRAME = 1514  # bytes on the wire for a full-size Ethernet frame (no FCS)
MIN_QUEUE = 16  # packets
RTT_FLOOR_US = 20_000
ROOT_HANDLE = "1:"
CLASS_ID = "1:1"
LEAF_HANDLE = "10:"


@dataclass(frozen=True)
class ShapingPlan:
    """The tc commands (arguments for ``tc -batch``) for one interface."""

    interface: str
    commands: tuple[str, ...]
    queue: int | None


def default_queue(shaping: Shaping) -> int:
    """About one bandwidth-delay product in full-size frames, at least MIN_QUEUE."""
    if shaping.rate is None:
        return 1000  # netem's own default limit
    rtt_us = max(2 * (shaping.delay or 0) + 2 * (shaping.jitter or 0), RTT_FLOOR_US)
    bdp_bytes = shaping.rate / 8 * rtt_us / 1_000_000
    return max(MIN_QUEUE, math.ceil(bdp_bytes / MTU_FRAME))


def htb_burst(rate: int) -> int:
    """Bytes the class may send at once: 1 ms at the rate, at least two frames.

    htb's default (rate / HZ) starves gigabit links inside containers; ~1 ms keeps
    10 Mbit links smooth and lets 1 Gbit reach the configured rate.
    """
    return max(2 * MTU_FRAME, math.ceil(rate / 8 / 1000))


def _netem_args(shaping: Shaping, queue: int) -> str:
    args = ["netem"]
    if shaping.delay:
        args += ["delay", f"{shaping.delay}us"]
        if shaping.jitter:
            args += [f"{shaping.jitter}us", "distribution", "normal"]
    if shaping.loss:
        args += ["loss", f"{shaping.loss:g}%"]
    args += ["limit", str(queue)]
    return " ".join(args)


def plan_shaping(interface: str, shaping: Shaping) -> ShapingPlan:
    """The tc commands for ``interface``'s egress; empty when nothing is asked."""
    if shaping.is_empty:
        return ShapingPlan(interface, (), None)
    queue = shaping.queue if shaping.queue is not None else default_queue(shaping)
    dev = f"dev {interface}"
    if shaping.rate is None:
        leaf = _netem_args(shaping, queue) if shaping.needs_netem else f"pfifo limit {queue}"
        return ShapingPlan(interface, (f"qdisc add {dev} root handle {LEAF_HANDLE} {leaf}",), queue)
    burst = htb_burst(shaping.rate)
    quantum = min(200_000, max(MTU_FRAME, shaping.rate // 8 // 10))
    leaf = _netem_args(shaping, queue) if shaping.needs_netem else f"pfifo limit {queue}"
    return ShapingPlan(
        interface,
        (
            f"qdisc add {dev} root handle {ROOT_HANDLE} htb default 1",
            f"class add {dev} parent {ROOT_HANDLE} classid {CLASS_ID} htb rate {shaping.rate}bit "
            f"ceil {shaping.rate}bit burst {burst} cburst {burst} quantum {quantum}",
            f"qdisc add {dev} parent {CLASS_ID} handle {LEAF_HANDLE} {leaf}",
        ),
        queue,
    )


def without_impairments(shaping: Shaping) -> Shaping:
    """The same shaping with delay, jitter and loss removed (kernel without netem)."""
    return Shaping(rate=shaping.rate, queue=shaping.queue)
