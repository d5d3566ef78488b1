"""Turn one link end's :class:`~mptcpdock.topology.model.Shaping` into ``tc`` commands (pure).

Layout on the egress of each link end, as in Mininet's ``TCIntf``:

* rate given: ``htb`` root with one class at the rate (burst sized for the rate);
  beneath it ``netem`` when delay/jitter/loss are asked for, else ``pfifo``;
* no rate: ``netem`` as root for delay/jitter/loss, or ``pfifo`` for a bare queue limit.

The queue limit (packets) defaults to one bandwidth-delay product at the end's rate over
the longest round trip of the routed paths that leave through it (see
:mod:`mptcpdock.plan.queues`; without one, twice the link's own delay), with a floor of
20 ms and never fewer than :data:`MIN_QUEUE` packets, plus what netem's delay line holds
at the rate (netem's ``limit`` counts those packets too): enough for TCP to fill the link
without building seconds of delay. Write ``queue:`` on a link to choose it yourself.
Every choice carries its reason (:class:`QueueChoice`), shown by ``plan`` and ``up``.
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


NETEM_DEFAULT_LIMIT = 1000  # packets: netem's own default, used when there is no rate


@dataclass(frozen=True)
class QueueChoice:
    """A queue limit in packets and why it is that long (for ``plan`` and the interface table)."""

    packets: int
    reason: str


@dataclass(frozen=True)
class ShapingPlan:
    """The tc commands (arguments for ``tc -batch``) for one interface."""

    interface: str
    commands: tuple[str, ...]
    queue: QueueChoice | None


def own_round_trip(shaping: Shaping) -> int:
    """Microseconds: the round trip over this link alone (its delay and jitter, both ways)."""
    return 2 * (shaping.delay or 0) + 2 * (shaping.jitter or 0)


def default_queue(shaping: Shaping, rtt_us: int | None = None) -> int:
    """One bandwidth-delay product in full-size frames over ``rtt_us`` (default: the
    link's own round trip), with the round-trip floor, and at least MIN_QUEUE."""
    return choose_queue(shaping, rtt_us).packets


def choose_queue(shaping: Shaping, rtt_us: int | None = None, path: str | None = None) -> QueueChoice:
    """The queue for one link end: explicit ``queue:``, else one BDP over the longest of
    ``rtt_us`` (the routed paths' round trip through this end, described by ``path``) and
    the link's own round trip, floored at RTT_FLOOR_US and MIN_QUEUE packets."""
    if shaping.queue is not None:
        return QueueChoice(shaping.queue, "set by queue:")
    if shaping.rate is None:
        return QueueChoice(NETEM_DEFAULT_LIMIT, "no rate: netem's default limit")
    own = own_round_trip(shaping)
    if rtt_us is not None and rtt_us > own:
        rtt, basis = rtt_us, f"round trip of {path}" if path else "routed round trip"
    else:
        rtt, basis = own, "this link's round trip"
    if rtt < RTT_FLOOR_US:
        rtt, basis = RTT_FLOOR_US, f"{RTT_FLOOR_US // 1000} ms floor"
    packets = math.ceil(shaping.rate / 8 * rtt / 1_000_000 / MTU_FRAME)
    held, held_note = _held_by_netem(shaping)
    if packets < MIN_QUEUE:
        return QueueChoice(MIN_QUEUE + held, f"{MIN_QUEUE}-packet floor{held_note}")
    return QueueChoice(packets + held, f"1 BDP: {shaping.rate / 1e6:g} Mbit/s x {rtt / 1000:g} ms, {basis}{held_note}")


def _held_by_netem(shaping: Shaping) -> tuple[int, str]:
    """Packets netem holds while they wait out the link's delay (and jitter), at the rate.

    netem's ``limit`` counts them too: under htb, a packet sits in netem from its arrival
    until htb takes it, so the queue in front of the link is the limit minus what the delay
    line holds (8.3 frames at 10 Mbit/s and 10 ms). Those are added to the BDP."""
    wait_us = (shaping.delay or 0) + (shaping.jitter or 0)
    if not wait_us or shaping.rate is None:
        return 0, ""
    held = math.ceil(shaping.rate / 8 * wait_us / 1_000_000 / MTU_FRAME)
    return held, f", + {held} in netem's {wait_us / 1000:g} ms delay line"


def htb_burst(rate: int) -> int:
    """Bytes the class may send at once: 5 ms at the rate, at least two frames.

    The class sends only when its timer fires; a timer that fires late can send no more
    than the burst, so whatever the link could have carried beyond it is lost for good.
    htb's default (about one MTU on a high-resolution-timer kernel) starves fast links
    inside containers, and 1 ms still capped 10 Mbit links at 0.94 of their rate on a
    software-emulated Docker host whose timers fire milliseconds late. 5 ms absorbs that
    lateness and lets 1 Gbit reach its rate; after an idle spell a 10 Mbit class lets 4
    frames through back to back, which the queues downstream never notice.
    """
    return max(2 * MTU_FRAME, math.ceil(rate / 8 / 200))


def htb_class_args(rate: int) -> str:
    """The htb class parameters for ``rate``, all of them (``class add`` and ``class change``)."""
    burst = htb_burst(rate)
    quantum = min(200_000, max(MTU_FRAME, rate // 8 // 10))
    return f"htb rate {rate}bit ceil {rate}bit burst {burst} cburst {burst} quantum {quantum}"


def leaf_args(shaping: Shaping, queue: int, netem: bool) -> str:
    """The leaf qdisc's full parameter set: netem (every parameter: a ``qdisc change ...
    netem`` resets those it does not name) or pfifo."""
    if netem:
        return _netem_args(shaping, queue)
    return _aqm_args(shaping, queue) if shaping.qdisc else f"pfifo limit {queue}"


def _aqm_args(shaping: Shaping, queue: int) -> str:
    """An AQM leaf: its own default limit unless ``queue`` was written (red needs byte thresholds)."""
    kind = str(shaping.qdisc)
    if kind == "cake":
        return "cake unlimited" + (f" memlimit {queue * 1514}" if shaping.queue else "")  # htb above shapes
    if kind == "red":
        low = max(queue * 1514 // 8, 3028)
        high = 3 * low
        return (f"red limit {max(4 * high, queue * 1514)} min {low} max {high} avpkt 1000 "
                f"burst {(2 * low + high) // 3000 + 1} bandwidth {shaping.rate or 10_000_000}bit probability 0.02")
    return kind + (f" limit {shaping.queue}" if shaping.queue else "")


def _netem_args(shaping: Shaping, queue: int) -> str:
    args = ["netem"]
    if shaping.delay:
        args += ["delay", f"{shaping.delay}us"]
        if shaping.jitter:
            args += [f"{shaping.jitter}us", "distribution", shaping.distribution or "normal"]
    if shaping.loss:
        args += ["loss", f"{shaping.loss:g}%"]
    elif shaping.loss_model is not None:
        args += shaping.loss_model.netem_args()
    if shaping.corrupt:
        args += ["corrupt", f"{shaping.corrupt:g}%"]
    if shaping.duplicate:
        args += ["duplicate", f"{shaping.duplicate:g}%"]
    if shaping.reorder:
        args += ["reorder", f"{shaping.reorder:g}%"] + \
            ([f"{shaping.reorder_correlation:g}%"] if shaping.reorder_correlation else [])
    args += ["limit", str(queue)]
    return " ".join(args)


def plan_shaping(interface: str, shaping: Shaping, queue_choice: QueueChoice | None = None,
                 netem_leaf: bool = False) -> ShapingPlan:
    """The tc commands for ``interface``'s egress; empty when nothing is asked.
    ``queue_choice`` defaults to :func:`choose_queue` over the link's own round trip;
    ``netem_leaf``: a netem leaf even without delay/jitter/loss (events will change them)."""
    if shaping.is_empty and not netem_leaf:
        return ShapingPlan(interface, (), None)
    choice = queue_choice or choose_queue(shaping)
    queue = choice.packets
    dev = f"dev {interface}"
    leaf = leaf_args(shaping, queue, shaping.needs_netem or netem_leaf)
    if shaping.rate is None:
        return ShapingPlan(interface, (f"qdisc add {dev} root handle {LEAF_HANDLE} {leaf}",), choice)
    return ShapingPlan(
        interface,
        (
            f"qdisc add {dev} root handle {ROOT_HANDLE} htb default 1",
            f"class add {dev} parent {ROOT_HANDLE} classid {CLASS_ID} {htb_class_args(shaping.rate)}",
            f"qdisc add {dev} parent {CLASS_ID} handle {LEAF_HANDLE} {leaf}",
        ),
        choice,
    )


def has_netem_leaf(plan: ShapingPlan) -> bool:
    return any(" netem" in line for line in plan.commands)


def without_impairments(shaping: Shaping) -> Shaping:
    """The same shaping with delay, jitter and loss removed (kernel without netem)."""
    return Shaping(rate=shaping.rate, queue=shaping.queue, trace=shaping.trace, qdisc=shaping.qdisc)
