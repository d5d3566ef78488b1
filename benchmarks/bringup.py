"""Time ``up`` and ``down`` against the raw Docker floor measured in the same run.

For each topology (the seed topologies in ``topologies/`` and generated chains of 16, 50
and 100 nodes) this script

1. brings the lab up with :func:`mptcpdock.runtime.lab.bring_up` (validate, plan, kernel probe,
   networks, containers, one configuration exec per node, state file) and takes it down
   with :func:`mptcpdock.runtime.lab.tear_down`, timing both;
2. measures the *raw floor*: the same networks and the same containers (same image, caps,
   sysctls, attachments, labels) created and started with the same SDK client, the same
   thread counts, the same connection pool and the same overlap of network and container
   creation, with no probe and no configuration at all, then removed the same way.

It prints a table with the ratios ``up / floor-up`` and ``down / floor-down`` and checks
the targets (issue 2): ``up`` of the ex.1 lab <= 3 s; a 100-node lab's ``up`` <= 1.15x
the floor measured in the same run. Exit status 1 when a target is missed.

Usage::

    python benchmarks/bringup.py                 # seeds + chains of 16, 50, 100 nodes
    python benchmarks/bringup.py --sizes 16 --repeat 3 --no-seeds
    python benchmarks/bringup.py --json results/bringup.json
    python benchmarks/bringup.py --overlays --no-seeds --sizes 16 50   # also every link an overlay

``--overlays`` (issue 14) measures every topology twice: as bridges, and with every link an
attachable swarm overlay (``overlays: all``) on a one-node swarm of this engine (made for the
run when the engine is in no swarm, and left again afterwards); the table then has the
per-link cost of an overlay over a bridge, for up and for down.

``--engines NAME[=URL] NAME=URL`` (issue 14) splits every topology across those engines
(``placement: auto``: balanced, one crossing link for a chain; a NAME without URL is the engine
the environment reaches), which must already be one swarm (docs/multi-host.md); the floor is
then the same objects created per engine in parallel, overlays on the manager. With
``--overlays`` the split lab is measured again with every link an overlay.

    python benchmarks/bringup.py --no-seeds --sizes 16 --engines local=unix:///var/run/docker.sock vm

Lab names start with ``bench-``; every object is labelled, so an interrupted run is
cleaned up by ``mptcpdock down bench-...`` (the script also removes its leftovers first).
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mptcpdock.runtime import docker_api, lab as lab_api, apply, swarm  # noqa: E402
from mptcpdock.topology.loader import load_topology  # noqa: E402
from mptcpdock.topology.model import (EngineSpec, Endpoint, Link, LinkEnd, Mptcp, Node, Route, Shaping,  # noqa: E402
                                      Topology)
from mptcpdock.plan.commands import Plan  # noqa: E402

SEEDS = ("mptcp-default-configuration.yaml", "mptcp-helper.yaml", "mptcp-mega-dumbbell.yaml")
EX1 = "mptcp-default-configuration.yaml"
EX1_UP_TARGET_S = 3.0
FLOOR_RATIO_TARGET = 1.15
FLOOR_TARGET_NODES = 100
PREFIX = "bench"


# -- generated topologies ----------------------------------------------------------------

def chain_topology(nodes: int, name: str) -> Topology:
    """h0 - r1 - r2 - ... - h<n-1>: two hosts at the ends, routers between, 100 Mbit links.

    Link k (between node k and k+1) gets 10.<k // 256>.<k % 256>.0/24 from the pool, so node
    i reaches everything to its left with a few summarised prefixes via its left link and
    everything to its right with a default route via its right link. The two hosts send
    with TTL 255: a 100-node chain is 98 routers long, more than the default TTL of 64.
    """
    if nodes < 2:
        raise ValueError("a chain needs at least two nodes")
    names = [f"h{i}" if i in (0, nodes - 1) else f"r{i}" for i in range(nodes)]
    topo = Topology(name=name)
    for i, node_name in enumerate(names):
        host = i in (0, nodes - 1)
        mptcp = Mptcp(subflows=2, add_addr_accepted=2,
                      endpoints=[Endpoint("eth0", ("subflow",))] if host else [])
        topo.nodes[node_name] = Node(name=node_name, kind="host" if host else "router", mptcp=mptcp,
                                     sysctls={"net.ipv4.ip_default_ttl": "255"} if host else {})
    for k in range(nodes - 1):
        topo.links.append(Link(a=LinkEnd(names[k]), b=LinkEnd(names[k + 1]),
                               shaping=Shaping(rate=100_000_000)))
    for i, node_name in enumerate(names):
        routes = topo.nodes[node_name].routes
        right = f"{names[i]}-{names[i + 1]}" if i < nodes - 1 else None
        left = f"{names[i - 1]}-{names[i]}" if i > 0 else None
        if right:
            routes.append(Route(to="default", link=right))
        if left and i >= 2:  # subnets of links 0 .. i-2 lie to the left
            first = ipaddress.IPv4Address("10.0.0.0")
            last = _link_subnet(i - 2).broadcast_address
            for prefix in ipaddress.summarize_address_range(first, last):
                routes.append(Route(to=str(prefix), link=left))
    return topo


def _link_subnet(index: int) -> ipaddress.IPv4Network:
    """The /24 the default pool (10.0.0.0/8, /24 blocks) gives the index-th link."""
    return ipaddress.IPv4Network(f"10.{index // 256}.{index % 256}.0/24")


# -- the raw floor -------------------------------------------------------------------------

def floor_up(plan: Plan, lab: str) -> float:
    """Create and start the plan's networks and containers, configuring nothing.

    Scheduled as ``up`` schedules them (networks in NETWORK_WORKERS threads, each container
    created and started in one of WORKERS threads as soon as its own networks exist; on
    several engines, such pools per engine and the overlays on the swarm manager), so the
    ratio up/floor is the price of everything ``up`` adds: the kernel probe, the
    configuration execs, the checks and the state file.
    """
    start = time.perf_counter()
    where = apply.locate(plan)
    node_engine, link_engine = apply.split(plan, where)
    carriers = {name: apply.on(where.engines[name], docker_api.CarrierAllocator)() for name in set(link_engine.values())}
    links = {link.name: link for link in plan.links}
    labels = lambda role, **extra: {docker_api.LABEL_LAB: lab, docker_api.LABEL_ROLE: role, **extra}  # noqa: E731

    def network(link) -> ipaddress.IPv4Network:
        engine = link_engine[link.name]
        return apply.on(where.engines[engine], apply.create_link_network)(lab, link.name, carriers[engine],
                                                                           link.driver)[1]

    network_pools = {name: ThreadPoolExecutor(apply.NETWORK_WORKERS) for name in where.engines}
    node_pools = {name: ThreadPoolExecutor(apply.WORKERS) for name in where.engines}
    try:
        networks = {link.name: network_pools[link_engine[link.name]].submit(network, link) for link in plan.links}

        def create(node) -> None:
            attachments = [(apply.network_name(lab, i.link),
                            apply.carrier_address(networks[i.link].result(), links[i.link], node.name))
                           for i in node.interfaces]
            cid = docker_api.create_container(
                name=apply.container_name(lab, node.name), hostname=node.name, image=node.image,
                labels=labels("node", **{docker_api.LABEL_NODE: node.name}), cap_add=node.cap_add,
                sysctls=node.sysctls, privileged=node.privileged, networks=attachments)
            docker_api.start_container(cid)

        futures = [node_pools[node_engine[node.name]].submit(apply.on(where.engines[node_engine[node.name]], create),
                                                             node)
                   for node in apply._creation_order(plan)]
        for future in futures + list(networks.values()):
            future.result()
    finally:
        for pool in [*network_pools.values(), *node_pools.values()]:
            pool.shutdown(wait=True)
    return time.perf_counter() - start


def floor_down(lab: str, plan: Plan | None = None) -> float:
    """Remove the floor's objects the way ``down`` does (containers, then networks; on several
    engines both per engine in parallel, the overlays on the manager)."""
    start = time.perf_counter()
    if plan is not None and len(plan.engines) > 1:
        where = apply.locate(plan)
        apply.down(lab, where=where)
        return time.perf_counter() - start
    apply.parallel(lambda c: docker_api.remove_container(c["Id"]), docker_api.lab_containers(lab), apply.WORKERS)
    apply.parallel(lambda n: docker_api.remove_network(n["Id"], n.get("Driver") == "overlay"),
                   docker_api.lab_networks(lab), apply.NETWORK_WORKERS)
    return time.perf_counter() - start


# -- measuring -----------------------------------------------------------------------------

@dataclass
class Row:
    topology: str
    nodes: int
    links: int
    up: list[float] = field(default_factory=list)
    down: list[float] = field(default_factory=list)
    floor_up: list[float] = field(default_factory=list)
    floor_down: list[float] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    broken: str | None = None  # the end-to-end check's failure, if any

    @staticmethod
    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    @property
    def up_ratio(self) -> float:
        return self.median(self.up) / self.median(self.floor_up)

    @property
    def down_ratio(self) -> float:
        return self.median(self.down) / self.median(self.floor_down)


def check_end_to_end(result) -> None:
    """The first host pings the last host's first address (the longest path of a chain)."""
    topology = result.plan.topology
    hosts = [name for name, node in topology.nodes.items() if node.kind == "host"]
    target = topology.links_of(hosts[-1])[0].end(hosts[-1]).address
    done = docker_api.run_exec(result.state.container(hosts[0]), ["ping", "-c", "3", "-i", "0.2", "-W", "3", "-t", "255", target])
    if done.exit_code != 0:
        raise RuntimeError(f"{topology.name}: {hosts[0]} cannot reach {hosts[-1]} ({target}): {done.stdout[-300:]}")


def clean(lab: str, plan: Plan | None = None) -> None:
    if plan is not None and len(plan.engines) > 1:
        apply.down(lab, where=apply.locate(plan))
    elif docker_api.lab_containers(lab) or docker_api.lab_networks(lab):
        apply.down(lab)


def measure(label: str, topology: Topology, repeat: int, log) -> Row:
    lab = f"{PREFIX}-{label.replace('+', '-')}"[:24]
    floor_lab = f"{PREFIX}-f-{label.replace('+', '-')}"[:24]
    topology.name = lab
    plan = lab_api.prepare(topology)
    row = Row(label, len(plan.nodes), len(plan.links))
    clean(lab, plan)
    clean(floor_lab, plan)
    for attempt in range(repeat):
        # Alternate the order so that neither side always runs on a warmer engine.
        order = ("lab", "floor") if attempt % 2 == 0 else ("floor", "lab")
        for which in order:
            if which == "lab":
                start = time.perf_counter()
                result = lab_api.bring_up(topology, allow_no_impairments=True)
                row.up.append(time.perf_counter() - start)
                row.phases = dict(result.timings)
                if attempt == 0:
                    try:  # untimed: a lab that does not work proves nothing
                        check_end_to_end(result)
                    except RuntimeError as exc:
                        row.broken = str(exc).splitlines()[0]
                        log(f"  {label}: BROKEN: {row.broken}")
                start = time.perf_counter()
                lab_api.tear_down(lab)
                row.down.append(time.perf_counter() - start)
            else:
                try:
                    row.floor_up.append(floor_up(plan, floor_lab))
                finally:
                    row.floor_down.append(floor_down(floor_lab, plan))
        log(f"  {label}: up {row.up[-1]:.2f} s (floor {row.floor_up[-1]:.2f} s), "
            f"down {row.down[-1]:.2f} s (floor {row.floor_down[-1]:.2f} s); up phases (cumulative): "
            + ", ".join(f"{key} {value:.2f}" for key, value in row.phases.items()))
    return row


def overlay_costs(rows: list[Row]) -> str:
    """Per topology measured both ways: (overlay - bridge) / links, for up and down, in ms."""
    bridges = {row.topology: row for row in rows if not row.topology.endswith("+ovl")}
    out = []
    for row in rows:
        base = bridges.get(row.topology.removesuffix("+ovl"))
        if row.topology.endswith("+ovl") and base is not None and row.links:
            out.append([base.topology, row.links, row.median(base.up), row.median(row.up),
                        1000 * (row.median(row.up) - row.median(base.up)) / row.links,
                        row.median(base.down), row.median(row.down),
                        1000 * (row.median(row.down) - row.median(base.down)) / row.links])
    if not out:
        return ""
    return tabulate(out, headers=["topology", "links", "up bridges s", "up overlays s", "per link ms",
                                  "down bridges s", "down overlays s", "per link ms"], floatfmt=".2f")


def report(rows: list[Row]) -> tuple[str, list[str]]:
    table = tabulate(
        [[r.topology, r.nodes, r.links, r.median(r.up), r.median(r.floor_up), r.up_ratio,
          r.median(r.down), r.median(r.floor_down), r.down_ratio] for r in rows],
        headers=["topology", "nodes", "links", "up s", "floor up s", "up/floor",
                 "down s", "floor down s", "down/floor"],
        floatfmt=".2f",
    )
    verdicts = []
    for row in rows:
        if row.topology == "ex1":
            ok = row.median(row.up) <= EX1_UP_TARGET_S
            verdicts.append(f"target: up of the ex.1 lab <= {EX1_UP_TARGET_S:.1f} s: "
                            f"{row.median(row.up):.2f} s -> {'MET' if ok else 'MISSED'}")
        if row.nodes == FLOOR_TARGET_NODES:
            ok = row.up_ratio <= FLOOR_RATIO_TARGET
            verdicts.append(f"target: up of a {row.nodes}-node lab <= {FLOOR_RATIO_TARGET}x the raw floor: "
                            f"{row.up_ratio:.3f}x ({row.median(row.up):.2f} s vs {row.median(row.floor_up):.2f} s)"
                            f" -> {'MET' if ok else 'MISSED'}")
    verdicts += [f"BROKEN: {row.topology}: {row.broken}" for row in rows if row.broken]
    return table, verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[16, 50, 100], help="generated chain sizes")
    parser.add_argument("--no-seeds", action="store_true", help="skip the seed topologies")
    parser.add_argument("--repeat", type=int, default=1, help="runs per topology (medians are reported)")
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    parser.add_argument("--overlays", action="store_true",
                        help="also measure every topology with every link a swarm overlay (one-node swarm)")
    parser.add_argument("--engines", nargs="+", metavar="NAME[=URL]",
                        help="split every topology across these engines (one swarm; NAME alone: the environment's)")
    args = parser.parse_args(argv)
    if args.engines:
        args.engine_specs = {}
        for item in args.engines:
            name, _, url = item.partition("=")
            args.engine_specs[name] = EngineSpec(name, host=url or None)
        if len(args.engine_specs) < 2:
            parser.error("--engines needs two engines or more")
        return _main(args)

    docker_api.client()
    started_swarm = swarm.init() if args.overlays and docker_api.swarm_role() == "inactive" else False
    try:
        return _main(args)
    finally:
        if started_swarm:
            swarm.leave()


def _measure_both(label: str, topology: Topology, args, log) -> list[Row]:
    if getattr(args, "engine_specs", None):
        topology = copy.deepcopy(topology)
        topology.engines = dict(args.engine_specs)
        topology.placement = "auto"
        for node in topology.nodes.values():
            node.engine = None
        label += "-split"
    rows = [measure(label, topology, args.repeat, log)]
    if args.overlays:
        overlaid = copy.deepcopy(topology)
        overlaid.overlays = "all"
        rows.append(measure(label + "+ovl", overlaid, args.repeat, log))
    return rows


def _main(args) -> int:
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    rows: list[Row] = []
    if not args.no_seeds:
        for seed in SEEDS:
            path = ROOT / "topologies" / seed
            if not path.exists():
                log(f"  {seed}: not found, skipped")
                continue
            label = "ex1" if seed == EX1 else seed.removeprefix("mptcp-").removesuffix(".yaml")
            rows += _measure_both(label, load_topology(path), args, log)
    for size in args.sizes:
        rows += _measure_both(f"chain{size}", chain_topology(size, "chain"), args, log)

    table, verdicts = report(rows)
    print(table)
    print()
    costs = overlay_costs(rows)
    if costs:
        print("overlay vs bridge, per link (one-node swarm):")
        print(costs)
        print()
    print(f"runtime: {apply.WORKERS} node workers, {apply.NETWORK_WORKERS} network workers, "
          f"SDK pool {docker_api.POOL_SIZE}; medians of {args.repeat} run(s)")
    for verdict in verdicts:
        print(verdict)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return 1 if any(v.endswith("MISSED") or v.startswith("BROKEN") for v in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
