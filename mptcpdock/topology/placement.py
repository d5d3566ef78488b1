"""Which engine each node runs on: ``placement: auto`` as a small balanced graph partition.

The goal is the one docs/multi-host.md states: nodes spread evenly over the engines (at most
``ceil(n / k)`` per engine) while as few links as possible cross engines, because a crossing
link is a VXLAN overlay (slower to create, wire latency added to netem's) and a local one a
bridge. Pinned nodes (``engine:`` given) stay where they are and count towards their engine.

The algorithm is deterministic (same topology, same placement):

1. *Greedy growth.* Nodes are visited breadth first from the most connected node (ties by
   name); each unpinned node goes to the engine, among those with room left, holding most of
   its already-placed neighbours (links counted with multiplicity), ties to the least loaded
   engine, then to the engine's order in ``engines:``.
2. *Refinement.* Passes of single-node moves and pairwise swaps between engines, each taken
   only when it lowers the number of crossing links and keeps every engine within its
   capacity, until a pass changes nothing (at most 20 passes). This is Kernighan-Lin without
   its tentative negative moves: enough for the chains, dumbbells and small meshes labs are.

Pure: a resolved node list and link list in, ``node -> engine`` out.
"""

from __future__ import annotations

import math
from collections import Counter, deque

from .model import Topology

MAX_PASSES = 20


def crossing_links(topology: Topology, placement: dict[str, str]) -> int:
    return sum(1 for link in topology.links if placement[link.a.node] != placement[link.b.node])


def place(topology: Topology) -> dict[str, str]:
    """node -> engine name for every node of ``topology`` (whose ``engines`` is not empty)."""
    engines = list(topology.engines)
    if len(engines) == 1:
        return {name: node.engine or engines[0] for name, node in topology.nodes.items()}
    capacity = math.ceil(len(topology.nodes) / len(engines))
    pinned = {name: node.engine for name, node in topology.nodes.items() if node.engine}
    neighbours: dict[str, Counter[str]] = {name: Counter() for name in topology.nodes}
    for link in topology.links:
        neighbours[link.a.node][link.b.node] += 1
        neighbours[link.b.node][link.a.node] += 1
    load = Counter(pinned.values())
    placement = dict(pinned)
    for name in _bfs_order(topology, neighbours):
        if name in placement:
            continue
        room = [engine for engine in engines if load[engine] < capacity] or engines
        engine = max(room, key=lambda e: (sum(count for peer, count in neighbours[name].items()
                                                   if placement.get(peer) == e), -load[e], -engines.index(e)))
        placement[name] = engine
        load[engine] += 1
    _refine(placement, neighbours, set(pinned), engines, capacity, load)
    return placement


def _bfs_order(topology: Topology, neighbours: dict[str, Counter[str]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()
    for start in sorted(topology.nodes, key=lambda n: (-sum(neighbours[n].values()), n)):
        if start in seen:
            continue
        queue = deque([start])
        seen.add(start)
        while queue:
            name = queue.popleft()
            order.append(name)
            for peer in sorted(neighbours[name]):
                if peer not in seen:
                    seen.add(peer)
                    queue.append(peer)
    return order


def _gain(name: str, target: str, placement: dict[str, str], neighbours: dict[str, Counter[str]]) -> int:
    """How many crossing links moving ``name`` to ``target`` removes (negative: adds)."""
    here = placement[name]
    return sum(count * ((placement[peer] == target) - (placement[peer] == here))
               for peer, count in neighbours[name].items())


def _refine(placement: dict[str, str], neighbours: dict[str, Counter[str]], pinned: set[str],
            engines: list[str], capacity: int, load: Counter[str]) -> None:
    free = sorted(name for name in placement if name not in pinned)
    for _ in range(MAX_PASSES):
        changed = False
        for name in free:  # single moves into engines with room
            for target in engines:
                if target != placement[name] and load[target] < capacity and \
                        _gain(name, target, placement, neighbours) > 0:
                    load[placement[name]] -= 1
                    load[target] += 1
                    placement[name] = target
                    changed = True
                    break
        for i, a in enumerate(free):  # swaps keep both loads
            for b in free[i + 1:]:
                ea, eb = placement[a], placement[b]
                if ea == eb:
                    continue
                link_ab = neighbours[a][b]
                gain = _gain(a, eb, placement, neighbours) + _gain(b, ea, placement, neighbours) - 2 * link_ab
                if gain > 0:
                    placement[a], placement[b] = eb, ea
                    changed = True
        if not changed:
            return
