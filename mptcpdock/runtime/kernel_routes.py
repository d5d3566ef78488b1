"""What a running node's kernel really routes (``ip rule``, ``ip route show table all``, for
IPv4 and IPv6), and how it differs from the routes and rules the plan computed (:mod:`mptcpdock.plan.routing`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..plan.routing import NodeRouting
from .docker_api import run_exec

#: One exec per node: per family the rules, a separator, then every table ('local' is skipped).
KERNEL_SCRIPT = ("ip -4 rule show; echo '---'; ip -4 route show table all; echo '==='; "
                 "ip -6 rule show 2>/dev/null; echo '---'; ip -6 route show table all 2>/dev/null")


@dataclass(frozen=True)
class KernelRouting:
    rules: set[tuple[int, str, str]]  # (priority, from, table)
    routes: set[tuple[str, str, str, str]]  # (table, destination, via, dev)
    text: str  # what the kernel printed (local table left out)


def parse_kernel(text: str) -> KernelRouting:
    """Parse :data:`KERNEL_SCRIPT`'s output: ``ip -4 rule show`` + ``---`` + ``ip -4 route show
    table all``, then ``===`` and the same for IPv6 (IPv6 destinations keep their family:
    ``default6``)."""
    four, _, six = text.partition("===")
    parts = [_parse_family(four, 4)] + ([_parse_family(six, 6)] if six.strip() else [])
    return KernelRouting(set().union(*(p.rules for p in parts)), set().union(*(p.routes for p in parts)),
                         "\n".join(p.text for p in parts if p.text))


def _parse_family(text: str, family: int) -> KernelRouting:
    rule_text, _, route_text = text.partition("---")
    rules = set()
    for line in rule_text.splitlines():
        head, _, rest = line.partition(":")
        words = rest.split()
        if not head.strip().isdigit() or "from" not in words or "lookup" not in words:
            continue
        source, table = words[words.index("from") + 1], words[words.index("lookup") + 1]
        if source != "all":
            rules.add((int(head), source, table))
    routes = set()
    kept = []
    for line in route_text.splitlines():
        words = line.split()
        if not words or words[0] in ("local", "broadcast", "multicast", "anycast") or "table local" in line:
            continue
        kept.append(line.rstrip())
        if "proto kernel" in line and "table" not in words:
            continue  # the kernel's own connected routes in main (and IPv6's fe80::/64)
        table = words[words.index("table") + 1] if "table" in words else "main"
        via = words[words.index("via") + 1] if "via" in words else "-"
        dev = words[words.index("dev") + 1] if "dev" in words else "-"
        routes.add((table, _prefix(words[0], family), via, dev))
    rule_lines = [line.rstrip() for line in rule_text.splitlines() if line.strip()]
    return KernelRouting(rules, routes, "\n".join(rule_lines + kept))


def _prefix(destination: str, family: int = 4) -> str:
    if destination == "default":
        return destination if family == 4 else "default6"
    return str(ipaddress.ip_network(destination, strict=False))


def expected(routing: NodeRouting) -> KernelRouting:
    rules = {(rule.priority, rule.src, str(rule.table)) for rule in routing.rules}
    routes = {("main" if route.table is None else str(route.table), _prefix(route.to, route.family), route.via or "-",
               route.dev) for route in routing.routes}
    return KernelRouting(rules, routes, "")


def differences(routing: NodeRouting, kernel: KernelRouting) -> list[str]:
    """What the plan has and the kernel lacks (and the reverse); empty when they agree."""
    want = expected(routing)
    out = [f"missing rule: priority {p} from {s} table {t}" for p, s, t in sorted(want.rules - kernel.rules)]
    out += [f"extra rule: priority {p} from {s} table {t}" for p, s, t in sorted(kernel.rules - want.rules)]
    out += [f"missing route: {d} via {v} dev {dev} table {t}" for t, d, v, dev in sorted(want.routes - kernel.routes)]
    out += [f"extra route: {d} via {v} dev {dev} table {t}" for t, d, v, dev in sorted(kernel.routes - want.routes)]
    return out


def kernel_routing(container: str) -> KernelRouting:
    result = run_exec(container, ["sh", "-c", KERNEL_SCRIPT])
    return parse_kernel(result.stdout)
