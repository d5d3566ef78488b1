"""Apply a plan to Docker: bring a lab up, take it down, run commands in its nodes.

``up`` overlaps its stages: it probes the kernel while it creates one network per link (in
parallel), then creates and starts each node's container as soon as that node's networks
exist. Each container's first command configures its node (so configuring costs no exec):
it renames Docker's interfaces (found by address) to the planned names, removes Docker's
carrier addresses and default route, feeds the plan's lines to ``ip -batch`` and
``tc -batch``, reports and sleeps. Any failure removes everything the lab created.

A lab on several engines (docs/multi-host.md) does the same on each at once: per engine its
own pools, bridges and containers (each call under ``docker_api.using(engine)``), the overlays
on the swarm manager, a kernel probe on every engine; a failure anywhere removes the lab from
every engine, and ``down`` does so from every engine the lab's state (or, after a crash, the
record ``up`` wrote first) names."""

from __future__ import annotations

import hashlib
import ipaddress
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar

from docker.errors import APIError, DockerException
from requests.exceptions import RequestException

from .. import NODE_IMAGE
from ..errors import MptcpdockError, RuntimeFailure, TopologyError
from ..plan.commands import LinkPlan, NodePlan, Plan, apply_kernel_sysctls, make_plan
from ..plan.events import plan_events
from . import docker_api
from .docker_api import LABEL_LAB, LABEL_LINK, LABEL_NODE, LABEL_ROLE
from .probe import KernelProbe, mptcp_needs, probe_kernel, require, require_for_events, require_for_mptcp
from .progress import Progress, Step
from .engine import Engine
from .state import LabEngines, LabState, NodeState, delete_state, new_state, save_engines_record, save_state
from .trace import Trace

T = TypeVar("T")
R = TypeVar("R")
WORKERS = 16  # threads for per-node work (create, start, configure, remove)
NETWORK_WORKERS = 4  # dockerd serialises network create/remove; more threads only queue
DOWN_ATTEMPTS = 3
CARRIER_ATTEMPTS = 5  # carrier blocks to try when other processes take them first

# Runs inside each node as its first command (under the container's init), so configuring a
# node costs no exec. Arguments: IP_BATCH TC_BATCH TC_BATCH_WITHOUT_NETEM then pairs
# CARRIER_ADDRESS NEW_NAME. The second tc batch (the plan without delay, jitter and loss) is
# used when this kernel has no netem; the kernel probe, run at the same time, decides whether
# that is allowed (and up fails, removing everything, when it is not).
# Fixed text: user input only ever arrives as positional arguments, never as shell code.
# It finds each interface by the carrier address Docker gave it, renames it to the planned
# name, drops the carrier address and Docker's default route, applies the plan's lines, says
# CONFIGURED_LINE and becomes `sleep infinity`; on any failure it exits (the container stops).
CONFIGURED_LINE = "mptcpdock: configured"
CONFIGURE_SCRIPT = r"""
set -eu
ip_batch=$1; tc_batch=$2; tc_reduced=$3; daemon=$4; shift 4
if [ "$tc_batch" != "$tc_reduced" ]; then
  if tc qdisc add dev lo root handle 1: netem delay 1ms 2>/dev/null; then tc qdisc del dev lo root;
  else tc_batch=$tc_reduced; echo "netem missing: tc batch without impairments"; fi
fi
if [ -n "$(ip -4 route show default)" ]; then ip route del default; fi
i=0; renames=""
while [ $# -gt 0 ]; do
  carrier=$1; name=$2; shift 2
  tries=0
  while :; do
    dev=$(ip -o -4 addr show to "$carrier/32" | { read -r _ d _ || true; echo "${d%%@*}"; })
    if [ -n "$dev" ] || [ "$tries" -ge 50 ]; then break; fi
    tries=$((tries+1)); sleep 0.1
  done
  if [ -z "$dev" ]; then echo "mptcpdock: no interface has carrier address $carrier" >&2; exit 3; fi
  ip link set dev "$dev" down
  ip addr flush dev "$dev"
  ip link set dev "$dev" name "mpdtmp$i"
  echo "rename $dev $name"
  renames="$renames mpdtmp$i:$name"; i=$((i+1))
done
for pair in $renames; do ip link set dev "${pair%%:*}" name "${pair#*:}"; done
if [ -n "$(ip -4 route show default)" ]; then ip route del default; fi
# ip lines in order, each run of IPv6 ones ('-6 ...') through 'ip -6 -batch' (ip rule takes
# IPv4 otherwise); a failure names the run's first line (offset) for the controller.
chunk=""; fam=""; n=0; start=0
flush() {
  [ -n "$chunk" ] || return 0
  if [ "$fam" = 6 ]; then printf '%s\n' "$chunk" | ip -6 -batch - || { echo "phase=ip offset=$start" >&2; exit 4; }
  else printf '%s\n' "$chunk" | ip -batch - || { echo "phase=ip offset=$start" >&2; exit 4; }; fi
}
if [ -n "$ip_batch" ]; then
  while IFS= read -r line; do
    case "$line" in "-6 "*) f=6; body=${line#-6 } ;; *) f=4; body=$line ;; esac
    if [ -n "$chunk" ] && [ "$f" != "$fam" ]; then flush; chunk=""; start=$n; fi
    fam=$f; n=$((n+1))
    if [ -n "$chunk" ]; then chunk="$chunk
$body"; else chunk=$body; fi
  done <<IPLINES
$ip_batch
IPLINES
  flush
fi
if [ -n "$tc_batch" ]; then printf '%s\n' "$tc_batch" | tc -batch - || { echo "phase=tc" >&2; exit 5; }; fi
for knob in path_manager pm_type scheduler; do
  if [ -r "/proc/sys/net/mptcp/$knob" ]; then echo "sysctl net.mptcp.$knob=$(cat "/proc/sys/net/mptcp/$knob")"; fi
done
if [ -n "$daemon" ]; then  # the userspace path manager's daemon (mptcpd): one argument a line
  set -f; saved=$IFS; IFS='
'
  # shellcheck disable=SC2086
  $daemon > /var/log/mptcpd.log 2>&1 &
  pid=$!; IFS=$saved; set +f
  sleep 0.2  # a daemon that cannot start (no genl family, bad plugin) exits at once
  kill -0 "$pid" 2>/dev/null || { echo "mptcpd exited: $(tail -n 3 /var/log/mptcpd.log | tr '\n' ' ')" >&2; exit 6; }
  echo "daemon $pid"
fi
echo "mptcpdock: configured"
exec sleep infinity
"""


def parallel(function: Callable[[T], R], items: Iterable[T], workers: int = WORKERS,
             done: Callable[[int, int], None] | None = None) -> list[R]:
    """Map in threads; re-raise the first failure after every task has finished.
    ``done(finished, total)`` is called as tasks finish (for progress)."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(function, item) for item in items]
        if done is not None:
            for finished, _ in enumerate(as_completed(futures), 1):
                done(finished, len(futures))
        errors = [future.exception() for future in futures]
    for error in errors:
        if error is not None:
            raise error
    return [future.result() for future in futures]


def container_name(lab: str, node: str) -> str:
    return f"{lab}-{node}"


def network_name(lab: str, link: str) -> str:
    return f"{lab}-{link}"


def bridge_name(lab: str, link: str) -> str:
    """Linux limits interface names to 15 characters: 'mpd' + 12 hex digits."""
    return "mpd" + hashlib.sha1(f"{lab}/{link}".encode()).hexdigest()[:12]


@dataclass
class UpResult:
    state: LabState
    trace: Trace
    probe: KernelProbe
    plan: Plan
    timings: dict[str, float] = field(default_factory=dict)


class LabExists(MptcpdockError):
    pass


def _labels(lab: str, role: str, **extra: str) -> dict[str, str]:
    labels = {LABEL_LAB: lab, LABEL_ROLE: role}
    labels.update(extra)
    return labels


def on(target: Engine | None, function: Callable[..., R]) -> Callable[..., R]:
    """``function`` with its Docker calls sent to ``target`` (for work handed to a thread)."""
    def bound(*args: Any, **kwargs: Any) -> R:
        with docker_api.using(target):
            return function(*args, **kwargs)
    return bound


def lab_engines(plan: Plan) -> LabEngines:
    """Where the plan's objects go (pure but for reading Docker contexts): a lab on one engine
    stays on the environment's (``_check_engines`` makes sure that is the one it names)."""
    if len(plan.engines) <= 1:
        return LabEngines.single()
    topology = plan.topology
    return LabEngines.from_specs({name: {"host": topology.engines[name].host, "context": topology.engines[name].context}
                                  for name in plan.engines if name is not None})


def split(plan: Plan, where: LabEngines) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Which engine creates what (pure): node -> its engine, link -> the engine that creates its
    network (a bridge: its ends' engine; an overlay: the swarm manager's). On one engine: None."""
    if not where.multi:
        return {name: None for name in plan.nodes}, {link.name: None for link in plan.links}
    nodes = {name: node.engine for name, node in plan.nodes.items()}
    links: dict[str, str | None] = {}
    for link in plan.links:
        if link.driver == "overlay":
            if where.manager is None:
                raise RuntimeFailure(f"link {link.name!r} of lab {plan.lab!r} is an overlay, but no engine of the lab "
                                     "is its swarm manager")
            links[link.name] = where.manager
        else:
            links[link.name] = link.a_engine
    return nodes, links


def locate(plan: Plan) -> LabEngines:
    """Where the plan's objects go, checked (each engine answers, the swarm): ``preflight``
    without the checks of the lab's own objects and images."""
    return _check_engines(plan)


def preflight(plan: Plan) -> LabEngines:
    """Checks that need Docker but create nothing; on every engine of the lab. Returns where
    the lab goes (with the swarm manager for its overlays)."""
    where = _check_engines(plan)
    for name, target in where.engines.items():
        with docker_api.using(target):
            if docker_api.lab_containers(plan.lab) or docker_api.lab_networks(plan.lab):
                on_engine = f" on engine {where.describe(name)}" if where.multi else ""
                raise LabExists(f"lab {plan.lab!r} is already up (or left over){on_engine}; run 'mptcpdock down "
                                f"{plan.lab}' first, or give this one another name (--name)")
            used = {node.image for node in plan.nodes.values() if not where.multi or node.engine == name}
            for image in sorted(used):
                if not docker_api.image_exists(image):
                    error = _image_missing(plan, image)
                    if where.multi:
                        error = RuntimeFailure(f"{error} (on engine {where.describe(name)}: 'mptcpdock image save "
                                               f"FILE', then '{_selector(where, name)} mptcpdock image load FILE')")
                    raise error
    return where


def _selector(where: LabEngines, name: str | None) -> str:
    target = where.engines.get(name)
    if target is None:
        return ""
    return f"DOCKER_HOST={target.host}" if target.name == "default" else f"DOCKER_CONTEXT={target.name}"


def _check_several_engines(plan: Plan, where: LabEngines) -> LabEngines:
    """Every engine answers, each is another engine, and with overlays: one of them is a swarm
    manager and the others are nodes of its swarm. Returns ``where`` with the manager."""
    identities: dict[str, str] = {}
    roles: dict[str, str] = {}
    node_ids: dict[str, str] = {}
    for name, target in where.engines.items():
        with docker_api.using(target):
            identity = docker_api.engine_identity()
            swarm = docker_api.engine_info().get("Swarm") or {}
            roles[str(name)], node_ids[str(name)] = docker_api.swarm_role(), str(swarm.get("NodeID") or "")
        for other, seen in identities.items():
            if identity.id and seen == identity.id:
                raise RuntimeFailure(f"engines {other!r} and {name!r} of lab {plan.lab!r} are the same Docker engine "
                                     f"(ID {identity.id[:14]}...) (fix: give each engine of engines: its own host)")
        identities[str(name)] = identity.id
    overlays = [link.name for link in plan.links if link.driver == "overlay"]
    if not overlays:
        return where
    managers = [name for name in where.engines if roles[str(name)] == "manager"]
    if not managers:
        raise RuntimeFailure(
            f"links {', '.join(overlays)} of lab {plan.lab!r} cross engines, but none of its engines "
            f"({', '.join(f'{name}: swarm {roles[str(name)]}' for name in where.engines)}) is a swarm manager "
            "(fix: docs/multi-host.md: 'scripts/vm-host.sh start --swarm-link', 'mptcpdock swarm init --advertise "
            "ADDR' on one engine and 'mptcpdock swarm join' on the others)")
    manager = managers[0]
    with docker_api.using(where.engines[manager]):
        members = {str(node.get("ID")) for node in docker_api.client().api.nodes()}
    for name in where.engines:
        if name != manager and (roles[str(name)] not in ("worker", "manager") or node_ids[str(name)] not in members):
            raise RuntimeFailure(
                f"engine {where.describe(name)} of lab {plan.lab!r} is not a node of the swarm that engine "
                f"{where.describe(manager)} manages (swarm: {roles[str(name)]}), so it cannot join the overlays "
                f"{', '.join(overlays)} (fix: '{_selector(where, name)} mptcpdock swarm join ADDR:2377 --token "
                f"$(mptcpdock swarm token) --advertise ADDR', see docs/multi-host.md)")
    return LabEngines(where.engines, where.specs, manager)


def _check_engines(plan: Plan) -> LabEngines:
    """One engine (the one the environment reaches), and a swarm manager there when a link is
    an overlay; or several engines (each reached by its engines: entry) in one swarm."""
    topology = plan.topology
    if len(plan.engines) > 1:
        return _check_several_engines(plan, lab_engines(plan))
    engine = plan.engines[0]
    spec = topology.engines.get(engine) if engine else None
    if spec is not None and not spec.is_environment:
        here = docker_api.engine()
        wanted = spec.host or spec.context
        if wanted not in (here.host, here.name):
            selector = f"DOCKER_HOST={spec.host} mptcpdock" if spec.host else f"mptcpdock --context {spec.context}"
            raise RuntimeFailure(f"lab {plan.lab!r} places its nodes on engine {engine!r} ({wanted}), but this "
                                 f"command reaches {here.describe()} (fix: {selector} up ...)")
    overlays = [link.name for link in plan.links if link.driver == "overlay"]
    if overlays:
        role = docker_api.swarm_role()
        if role != "manager":
            raise RuntimeFailure(
                f"links {', '.join(overlays)} of lab {plan.lab!r} are overlay networks, but the engine at "
                f"{docker_api.engine().describe()} is not a swarm manager (swarm: {role}) (fix: 'mptcpdock swarm "
                "init' or 'docker swarm init --advertise-addr 127.0.0.1'; or remove overlays: all)")
    return LabEngines.single()


def _image_missing(plan: Plan, image: str) -> RuntimeFailure:
    """One line naming the file, the node(s) and field that ask for ``image``, and the fix."""
    users = [name for name, node in plan.nodes.items() if node.image == image]
    explicit = [name for name in users if plan.topology.nodes[name].image]
    if image == NODE_IMAGE:
        fix = "build it with 'mptcpdock image build', or load a saved copy with 'mptcpdock image load FILE'"
    else:
        fix = (f"build or pull it ('docker build -t {image} DIR', 'docker pull {image}'), or load a saved "
               "copy with 'docker load -i FILE'; or remove the node's 'image:' to use the node image")
    field = f"nodes.{explicit[0]}.image" if explicit else None
    where = TopologyError(f"image {image!r} (used by {', '.join(users)}) is not on the Docker host", field=field,
                          fix=fix, source=plan.topology.source,
                          line=plan.topology.locations.get(field) if field else None)
    return RuntimeFailure(where.render())


def up(plan: Plan, *, allow_no_impairments: bool = False, progress: Progress = lambda _: None,
       image_info: dict | None = None, fail_after: str | None = None) -> UpResult:
    """Create and configure the lab. ``fail_after`` injects a failure (for rollback tests)."""
    trace = Trace()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    where = preflight(plan)
    timings["preflight"] = time.perf_counter() - start
    created = Created()
    if where.multi:
        save_engines_record(plan.lab, where)  # before anything exists: down finds every engine after a crash
    try:
        return _up(plan, trace, timings, start, allow_no_impairments or plan.topology.allow_no_impairments,
                   progress, image_info or {}, fail_after, created, where)
    except BaseException as exc:
        error = _rolled_back(plan.lab, exc, created, progress, where)
        if error is exc:
            raise
        raise error from exc


def _rolled_back(lab: str, exc: BaseException, created: "Created", progress: Progress,
                 where: LabEngines | None = None) -> BaseException:
    """Remove what a failed ``up`` created; the error to raise (``exc`` itself when it says enough).

    When the engine went away (during ``up`` or during this rollback), the error says what may
    be left and that ``down`` cleans it once the engine answers: the state file was not written,
    but ``down`` finds everything by its labels."""
    progress("failed: removing everything this lab created" + (" on every engine" if where and where.multi else ""))
    try:
        down(lab, where=where) if where is not None and where.multi else down(lab)
    except BaseException as rollback:  # noqa: BLE001 - the rollback's own failure must not hide exc
        if docker_api.engine_gone(rollback) or docker_api.engine_gone(exc):
            return docker_api.gone_error(f"'up' of lab {lab!r}", exc if docker_api.engine_gone(exc) else rollback,
                                         f"it may have left {created.describe()}",
                                         f"run 'mptcpdock down {lab}' once the engine answers again")
        return RuntimeFailure(f"bringing up lab {lab!r} failed ({_reason(exc)}), and removing what it created "
                              f"failed too: {_reason(rollback)}; run 'mptcpdock down {lab}'")
    if docker_api.engine_gone(exc):
        return RuntimeFailure(f"bringing up lab {lab!r} failed: the connection to the Docker engine at "
                              f"{docker_api.engine().describe()} broke ({docker_api.failure_reason(exc)}); "
                              "everything the lab created was removed")
    if isinstance(exc, (DockerException, RequestException)):  # an engine error no step explained: one line
        return RuntimeFailure(f"bringing up lab {lab!r} failed (everything it created was removed): "
                              f"{docker_api.first_line(exc)}")
    return exc


def _reason(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, MptcpdockError) else docker_api.first_line(exc)


@dataclass
class Created:
    """What one ``up`` has created so far, by Docker ID (for the message when the engine goes
    away mid-way: only the engine knows whether a creation under way at that moment landed)."""

    networks: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"{_count(len(self.containers), 'container')} and {_count(len(self.networks), 'network')} "
                "created so far (and any whose creation was under way, and the kernel probe's container)")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


class _Pools:
    """The thread pools of one ``up``. On failure, queued work is cancelled and running work
    is waited for, so that the rollback (``down``) finds everything that was created."""

    def __init__(self) -> None:
        self.pools: list[ThreadPoolExecutor] = []

    def pool(self, workers: int) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(max_workers=workers)
        self.pools.append(pool)
        return pool

    def __enter__(self) -> "_Pools":
        return self

    def __exit__(self, exc_type, *_: object) -> None:
        if exc_type is not None:
            for pool in self.pools:
                pool.shutdown(wait=False, cancel_futures=True)
        for pool in self.pools:
            pool.shutdown(wait=True)


def _creation_order(plan: Plan) -> list[NodePlan]:
    """Nodes in the order their networks become ready (networks are created in link order)."""
    index = {link.name: i for i, link in enumerate(plan.links)}
    return sorted(plan.nodes.values(), key=lambda node: max((index[i.link] for i in node.interfaces), default=-1))


def _up(plan: Plan, trace: Trace, timings: dict[str, float], start: float, allow_no_impairments: bool,
        progress: Progress, image_info: dict, fail_after: str | None, created: Created,
        where: LabEngines | None = None) -> UpResult:
    """Everything overlaps: the kernel probe, network creation, and each node's container,
    created as soon as its own networks exist and configured by its own first command. On
    several engines, each engine has its own pools (and probe), overlays go to the manager."""
    where = where or LabEngines.single()
    lab = plan.lab
    default_image = next(iter(plan.nodes.values())).image
    node_engine, link_engine = split(plan, where)
    carriers = {name: on(where.engines[name], docker_api.CarrierAllocator)() for name in set(link_engine.values())}
    link_plans = {link.name: link for link in plan.links}
    attachments: dict[str, list[tuple[str, str, str]]] = {}  # node -> [(network, carrier address, interface)]
    elapsed = lambda: time.perf_counter() - start  # noqa: E731

    kernel_needs = plan_events(plan.topology, plan).kernel_needs
    early: dict[str | None, KernelProbe] = {}
    if mptcp_needs(plan.topology):  # settings only the probe can allow: check them before creating anything
        progress("probing the kernel for the lab's MPTCP settings")
        for name, target in where.engines.items():
            found = on(target, probe_kernel)(default_image, lab)
            try:
                require_for_mptcp(found, plan.topology)
                require_for_events(found, kernel_needs, plan.topology.source)
            except MptcpdockError as exc:
                if not where.multi:
                    raise
                raise RuntimeFailure(f"engine {where.describe(name)}: {exc}") from exc
            early[name] = found
    engines_note = f" on {len(where.engines)} engines" if where.multi else ""
    progress(f"probing the kernel, creating {len(plan.links)} networks and {len(plan.nodes)} containers{engines_note}")
    with _Pools() as pools:
        probe_futures = {name: (pools.pool(1).submit(lambda found=early[name]: found) if name in early
                                else pools.pool(1).submit(on(target, probe_kernel), default_image, lab))
                         for name, target in where.engines.items()}
        network_pools = {name: pools.pool(NETWORK_WORKERS) for name in where.engines}
        network_futures = {link.name: network_pools[link_engine[link.name]].submit(
                               on(where.engines[link_engine[link.name]], _create_network), lab, link.name,
                               carriers[link_engine[link.name]], trace, created, link.driver)
                           for link in plan.links}
        networks_done = iter(range(1, len(network_futures) + 1))  # next() is atomic under the GIL

        def network_done(future: Future) -> None:
            if not future.cancelled() and future.exception() is None:
                progress(Step("networks", next(networks_done), len(network_futures), "created"))

        for future in network_futures.values():
            future.add_done_callback(network_done)
        if fail_after == "networks":
            for future in network_futures.values():
                future.result()
            raise RuntimeFailure("injected failure after creating networks")

        # Both variants of the qdisc lines go to every node (see CONFIGURE_SCRIPT), so the
        # containers need not wait for the probe.
        reduced = make_plan(plan.topology, drop_impairments=True) if plan.netem_links else plan

        common: dict[str, bool] = {}  # "reduced": every node applies the plan without impairments

        def kernel_checked() -> KernelProbe:
            """The probes, checked against what the events need; the kernel-dependent sysctls
            (net.mptcp.blackhole_timeout) go into every node's plan before any is created. On
            several engines, every kernel must have what the lab needs, and when one has no netem
            (and that is allowed) every node gets the plan without impairments, so that the
            engines' paths stay comparable."""
            probes = {name: future.result() for name, future in probe_futures.items()}
            for name, probe in probes.items():
                try:
                    require_for_events(probe, kernel_needs, plan.topology.source)
                    require_for_mptcp(probe, plan.topology)
                    if where.multi:
                        require(probe, netem_links=plan.netem_links, rate_links=True,
                                allow_no_impairments=allow_no_impairments, leaf_qdiscs=plan.leaf_qdiscs)
                except MptcpdockError as exc:
                    if not where.multi:
                        raise
                    raise RuntimeFailure(f"engine {where.describe(name)}: {exc}") from exc
            every = list(probes.values())
            for variant in {id(plan): plan, id(reduced): reduced}.values():
                # the path manager's sysctls by the first engine's kernel (the lab's engines should agree)
                apply_kernel_sysctls(variant, has_blackhole_timeout=all(p.blackhole_timeout is not None for p in every),
                                     path_manager_sysctls=every[0].path_manager_sysctls)
            common["reduced"] = where.multi and bool(plan.netem_links) and not all(p.netem for p in every)
            probe_of.update(probes)
            return probes[next(iter(where.engines))]

        probe_of: dict[str | None, KernelProbe] = {}
        checked_future = pools.pool(1).submit(kernel_checked)

        def create_node(node: NodePlan) -> str:
            checked_future.result()  # raises when the kernel lacks what an event needs
            attachments[node.name] = [
                (network, carrier_address(subnet, link_plans[interface.link], node.name), interface.name)
                for interface in node.interfaces
                for network, subnet in [network_futures[interface.link].result()]
            ]
            full = reduced.nodes[node.name] if common.get("reduced") else node
            return _create_node(lab, full, attachments[node.name], reduced.nodes[node.name], trace, created)

        # Nodes configure themselves while later containers are created; their reports are
        # collected (in the same pool, behind the creations) once each container has started.
        node_pools = {name: pools.pool(WORKERS) for name in where.engines}
        node_futures = {node_pools[node_engine[node.name]].submit(on(where.engines[node_engine[node.name]],
                                                                     create_node), node): node.name
                        for node in _creation_order(plan)}
        probe = checked_future.result()
        timings["probe"] = elapsed()
        drop = any(require(each, netem_links=plan.netem_links, rate_links=True,
                           allow_no_impairments=allow_no_impairments, leaf_qdiscs=plan.leaf_qdiscs)
                   for each in probe_of.values())
        if drop and not plan.impairments_dropped:
            progress(f"no netem in this kernel: applying rates only on {', '.join(plan.netem_links)}")
            plan = reduced
        container_ids: dict[str, str] = {}
        configured: dict[str, Future[dict[str, str]]] = {}
        for done, future in enumerate(as_completed(node_futures), 1):
            name = node_futures[future]
            container_ids[name] = future.result()
            if fail_after != "containers":
                target = where.engines[node_engine[name]]
                configured[name] = node_pools[node_engine[name]].submit(
                    on(target, wait_configured), lab, plan.nodes[name], container_ids[name], attachments[name],
                    reduced.nodes[name], trace)
            progress(Step("containers", done, len(node_futures), "started"))
        timings["containers"] = elapsed()
        networks = {link.name: network_futures[link.name].result()[0] for link in plan.links}  # all done by now
        if fail_after == "containers":
            raise RuntimeFailure("injected failure after creating containers")
        by_future = {future: name for name, future in configured.items()}
        renames = {}
        for done, future in enumerate(as_completed(by_future), 1):
            renames[by_future[future]] = future.result()
            progress(Step("nodes", done, len(by_future), "configured"))
        timings["configure"] = elapsed()
        for target in where.engines.values():
            on(target, _check_still_running)(lab)
        crossing = [link for link in plan.links if link.driver == "overlay" and where.multi and link.crosses]
        if crossing:
            _pin_overlay_neighbours(lab, crossing, networks, {name: (where.engines[node_engine[name]], cid)
                                                             for name, cid in container_ids.items()}, trace)
        if any(link.driver == "overlay" for link in plan.links):
            for engine_name, target in where.engines.items():
                on(target, _check_no_way_out)(lab, {name: cid for name, cid in container_ids.items()
                                                    if node_engine[name] == engine_name})
        if fail_after == "configure":
            raise RuntimeFailure("injected failure after configuring nodes")

    engines_record: dict[str, dict[str, Any]] = {}
    home: Any = docker_api.engine_identity()
    if where.multi:
        home = None  # the engine the environment reaches, when it is one of the lab's
        for name, entry in where.record().items():
            with docker_api.using(where.engines[name]):
                identity = docker_api.engine_identity()
            found = probe_of[name]
            engines_record[name] = {**entry, "identity": identity.to_dict(),
                                    "probe": {"kernel": found.kernel, "netem": found.netem}}
            if where.engines[name] is None:
                home = identity

    state = new_state(
        plan.topology,
        image=image_info,
        probe=probe.to_dict(),
        impairments_dropped=plan.impairments_dropped,
        dropped_links=plan.netem_links if plan.impairments_dropped else [],
        nodes={
            name: NodeState(
                container=container_name(lab, name),
                container_id=container_ids[name],
                interfaces={intf.name: f"{intf.address}/{intf.prefixlen}" for intf in node.interfaces},
                original_names=renames[name],
                engine=node_engine[name],
            )
            for name, node in plan.nodes.items()
        },
        networks={link.name: networks[link.name] for link in plan.links},
        engine=home,
        sysctls={name: dict(node.sysctls) for name, node in plan.nodes.items()},
        engines=engines_record,
    )
    timings["total"] = elapsed()
    state.timings = timings
    save_state(state)
    return UpResult(state=state, trace=trace, probe=probe, plan=plan, timings=timings)


def _check_still_running(lab: str) -> None:
    """Every node configured itself, but one may have stopped since (killed, out of memory,
    its engine restarting it): a lab with a dead node is not up, so stop (and roll back)."""
    stopped = docker_api.stopped_containers(lab)
    if stopped:
        listed = ", ".join(f"{name} ({status})" for name, status in sorted(stopped.items()))
        raise RuntimeFailure(f"containers of lab {lab!r} stopped while it came up: {listed} (fix: run up "
                             "again; if it recurs, the engine's log and its free memory say why)")


def _pin_overlay_neighbours(lab: str, links: list[LinkPlan], networks: dict[str, str],
                            containers: dict[str, tuple[Engine | None, str]], trace: Trace) -> None:
    """Each end of an overlay between engines gets its peer's link address as a permanent
    neighbour (the peer's MAC on the overlay). Docker's VXLAN device answers ARP only for the
    addresses its IPAM gave (the carrier ones) and floods nothing, so ARP for the lab's own
    addresses never crosses to the other engine (one engine is one bridge, where ARP works)."""
    def mac(node: str, network: str) -> str:
        target, cid = containers[node]
        with docker_api.using(target):
            return docker_api.container_mac(cid, network)

    def pin(item: tuple[LinkPlan, str]) -> None:
        link, end = item
        peer = link.b_node if end == link.a_node else link.a_node
        interface, peer_address = ((link.a_interface, link.b_address) if end == link.a_node
                                   else (link.b_interface, link.a_address))
        argv = ["ip", "neigh", "replace", peer_address, "lladdr", mac(peer, networks[link.name]), "dev", interface,
                "nud", "permanent"]
        target, cid = containers[end]
        with docker_api.using(target):
            result = docker_api.run_exec(cid, argv)
        trace.node(end, container_name(lab, end), argv, comment=f"{link.name} crosses engines: its peer's MAC, pinned")
        if result.exit_code != 0:
            raise RuntimeFailure(f"pinning {peer}'s address on {end}:{interface} (link {link.name!r}) failed: "
                                 f"{(result.stderr or result.stdout).strip()}")

    parallel(pin, [(link, end) for link in links for end in (link.a_node, link.b_node)], NETWORK_WORKERS)


def _check_no_way_out(lab: str, container_ids: dict[str, str]) -> None:
    """Overlays are internal, so Docker attaches no docker_gwbridge; should an engine do it
    anyway, the lab would have a route out of the host: detach those nodes from it, and stop
    (rolling back) if any is still attached."""
    outside = docker_api.gwbridge_containers()
    for cid in (cid for cid in container_ids.values() if cid in outside):
        docker_api.disconnect_gwbridge(cid)
    outside = docker_api.gwbridge_containers()
    attached = sorted(name for name, cid in container_ids.items() if cid in outside)
    if attached:
        raise RuntimeFailure(f"nodes {', '.join(attached)} of lab {lab!r} were attached to {docker_api.GWBRIDGE}, "
                             "a way out of the lab (fix: report this engine's version; mptcpdock creates its overlays "
                             "--internal so that this does not happen)")


def carrier_address(subnet: ipaddress.IPv4Network, link: LinkPlan, node: str) -> str:
    """The address Docker gives ``node``'s end of ``link`` (.1 is Docker's reserved gateway).

    On an overlay the ends take the block's top two addresses (.5 and .6 of a /29): swarm gives
    every engine that joins an overlay a load-balancer endpoint, allocated from the bottom, and
    an end asking for an address such an endpoint holds waits until its attachment times out."""
    if link.driver == "overlay":
        return str(subnet.broadcast_address - (2 if node == link.a_node else 1))
    return str(subnet.network_address + (2 if node == link.a_node else 3))


def create_link_network(lab: str, link: str, carriers: docker_api.CarrierAllocator,
                        driver: str = "bridge") -> tuple[str, ipaddress.IPv4Network]:
    """Create the link's network on a free carrier block; another block when a concurrent
    ``up`` (another process) took this one first. Returns (network name, carrier block)."""
    name = network_name(lab, link)
    for attempt in range(CARRIER_ATTEMPTS):
        subnet = carriers.claim(driver)
        try:
            docker_api.create_network(name, bridge_name(lab, link), subnet, _labels(lab, "link", **{LABEL_LINK: link}),
                                      driver)
            return name, subnet
        except DockerException as exc:
            if "overlaps" in str(exc) and attempt + 1 < CARRIER_ATTEMPTS:
                carriers.refresh()
                continue
            raise RuntimeFailure(f"creating the network of link {link!r} ({name}) failed: "
                                 f"{docker_api.first_line(exc)}") from exc
        finally:
            carriers.settle(subnet)
    raise AssertionError("unreachable")


def _create_network(lab: str, link: str, carriers: docker_api.CarrierAllocator,
                    trace: Trace, created: Created, driver: str = "bridge") -> tuple[str, ipaddress.IPv4Network]:
    name, subnet = create_link_network(lab, link, carriers, driver)
    created.networks.append(name)
    if driver == "overlay":
        options = ["--attachable", "--internal"]
    else:
        options = ["-o", f"com.docker.network.bridge.name={bridge_name(lab, link)}",
                   "-o", "com.docker.network.bridge.inhibit_ipv4=true",
                   "-o", "com.docker.network.bridge.enable_ip_masquerade=false"]
    trace.docker("network", "create", "--driver", driver, "--subnet", str(subnet), *options,
                 "--label", f"{LABEL_LAB}={lab}", "--label", f"{LABEL_LINK}={link}", name)
    return name, subnet


def _create_node(lab: str, node: NodePlan, attachments: list[tuple[str, str, str]], reduced: NodePlan,
                 trace: Trace, created: Created) -> str:
    name = container_name(lab, node.name)
    try:
        cid = docker_api.create_container(
            name=name, hostname=node.name, image=node.image,
            labels=_labels(lab, "node", **{LABEL_NODE: node.name}),
            cap_add=node.cap_add, sysctls=node.sysctls, privileged=node.privileged,
            networks=[(network, address) for network, address, _ in attachments],
            command=node_command(node, attachments, reduced),
        )
    except DockerException as exc:
        raise _node_failure(node, "creating", exc) from exc
    created.containers.append(cid)
    argv = ["create", "--name", name, "--hostname", node.name, "--init"]
    argv += [arg for cap in node.cap_add for arg in ("--cap-add", cap)]
    argv += [arg for key, value in node.sysctls.items() for arg in ("--sysctl", f"{key}={value}")]
    if node.privileged:
        argv.append("--privileged")
    if attachments:
        argv += ["--network", attachments[0][0], "--ip", attachments[0][1]]
    else:
        argv += ["--network", "none"]
    argv += ["--label", f"{LABEL_LAB}={lab}", "--label", f"{LABEL_NODE}={node.name}", node.image, "sleep", "infinity"]
    trace.docker(*argv, comment=f"node {node.name} ({node.kind})")
    for network, address, _ in attachments[1:]:
        trace.docker("network", "connect", "--ip", address, network, name)
    try:
        docker_api.start_container(cid)
    except DockerException as exc:
        raise _node_failure(node, "starting", exc) from exc
    trace.docker("start", name)
    return cid


def _node_failure(node: NodePlan, doing: str, exc: DockerException) -> RuntimeFailure:
    """The engine's reason, with the fix when it points at the node's own settings."""
    reason = docker_api.first_line(exc)
    text = f"{doing} the container of node {node.name!r} failed: {reason}"
    if "/proc/sys/" in reason:
        text += (f" (fix: the kernel refused a sysctl of nodes.{node.name}.sysctls or a default one; "
                 "check its name and value, e.g. that a congestion control module exists on the Docker host)")
    elif node.privileged and "operation not permitted" in reason:
        text += f" (fix: this Docker host does not allow privileged containers: remove nodes.{node.name}.privileged)"
    return RuntimeFailure(text)


def node_command(node: NodePlan, attachments: list[tuple[str, str, str]], reduced: NodePlan | None = None) -> list[str]:
    """The container's first command: configure the node (CONFIGURE_SCRIPT), then sleep.
    ``reduced``: the node's plan without delay/jitter/loss, for a kernel without netem."""
    argv = ["sh", "-c", CONFIGURE_SCRIPT, "mptcpdock-configure", "\n".join(node.ip_lines()),
            "\n".join(node.tc_lines()), "\n".join((reduced or node).tc_lines()), "\n".join(node.daemon)]
    for _, carrier, interface in attachments:
        argv += [carrier, interface]
    return argv


def wait_configured(lab: str, node: NodePlan, cid: str, attachments: list[tuple[str, str, str]],
                    reduced: NodePlan, trace: Trace) -> dict[str, str]:
    """Wait until the node's first command has configured it; interface -> Docker's old name.

    Raises with the failing ``ip``/``tc`` line when the kernel refused one (the script stops,
    and with it the container)."""
    container = container_name(lab, node.name)
    configured, stdout = docker_api.wait_for_line(cid, CONFIGURED_LINE)
    ip_lines = node.ip_lines()
    tc_lines = (reduced if "netem missing" in stdout else node).tc_lines()
    renames = {}
    read_back: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith("rename "):
            _, old, new = line.split()
            renames[new] = old
        elif line.startswith("sysctl ") and "=" in line:
            key, _, value = line[len("sysctl "):].partition("=")
            read_back[key] = value.strip()
    comment = (f"configure {node.name} (mptcpdock runs this as the container's first command): Docker's "
               "default route goes; interfaces are found by their carrier address and renamed")
    trace.node(node.name, container, ["ip", "route", "del", "default"], comment=comment)
    for _, carrier, interface in attachments:
        trace.node(node.name, container, ["sh", "-c", f'd=$(ip -o -4 addr show to {carrier}/32 | cut -d" " -f2) && '
                                          f'ip link set dev "${{d%%@*}}" down && ip addr flush dev "${{d%%@*}}" && '
                                          f'ip link set dev "${{d%%@*}}" name {interface}'])
    for line in ip_lines:
        trace.node(node.name, container, ["ip", *line.split()])
    for line in tc_lines:
        trace.node(node.name, container, ["tc", *line.split()])
    if node.daemon:
        trace.node(node.name, container, ["sh", "-c", " ".join(node.daemon) + " > /var/log/mptcpd.log 2>&1 &"],
                   comment="the userspace path manager's daemon")
    if not configured:
        code, stderr = docker_api.exit_status(cid)
        raise RuntimeFailure(f"configuring node {node.name!r} failed (exit {code}): "
                             f"{_explain(stderr, ip_lines, tc_lines)}")
    for key, value in read_back.items():
        wanted = node.sysctls.get(key)
        if wanted is not None and wanted != value:
            raise RuntimeFailure(f"node {node.name!r}: {key} reads back {value!r}, not the {wanted!r} set at create "
                                 "(fix: check the Docker host's kernel accepts it)")
    return renames


def _explain(stderr: str, ip_lines: list[str], tc_lines: list[str]) -> str:
    """Point at the failing batch line ('Command failed -:N')."""
    lines = tc_lines if "phase=tc" in stderr else ip_lines
    tool = "tc" if "phase=tc" in stderr else "ip"
    message = " ".join(line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("phase="))
    offset = next((int(part[len("offset="):]) for part in stderr.split()
                   if part.startswith("offset=") and part[len("offset="):].isdigit()), 0)
    for part in stderr.split():
        if part.startswith("-:") and part[2:].isdigit():
            index = int(part[2:]) - 1 + offset
            if 0 <= index < len(lines):
                return f"'{tool} {lines[index]}' -> {message}"
    return message or "no error text"


def down(lab: str, progress: Progress = lambda _: None, where: LabEngines | None = None) -> tuple[int, int]:
    """Remove every container and network labelled with ``lab``; idempotent.

    Lists again after removing and repeats (a few times) while anything is left, so that
    objects still being created or removed by someone else (a crashed ``up``'s stragglers,
    an engine-side removal in progress) are not left behind. When the engine goes away
    mid-way, the error says how much was removed; the state file stays until a ``down`` ends.

    ``where`` (a lab on several engines): the containers on every engine first, in parallel,
    then the networks: each engine's bridges, and the overlays on the swarm manager.
    """
    if where is None or not where.multi:
        removed = _down_on(lab, progress)
        delete_state(lab)
        return removed
    targets = list(where.engines.items())

    def on_engine(name: str | None) -> Progress:
        return lambda message: progress(f"engine {name}: {message}")

    containers = parallel(lambda item: on(item[1], _down_on)(lab, on_engine(item[0]), networks=False),
                          targets, workers=len(targets))
    networks = parallel(lambda item: on(item[1], _down_on)(lab, on_engine(item[0]), containers=False,
                                                            swarm_scope=where.manager in (None, item[0])),
                        targets, workers=len(targets))
    delete_state(lab)
    return sum(count for count, _ in containers), sum(count for _, count in networks)


def _down_on(lab: str, progress: Progress = lambda _: None, *, containers: bool = True, networks: bool = True,
             swarm_scope: bool = True) -> tuple[int, int]:
    """``down`` on the engine calls go to (see ``docker_api.using``): its containers and/or its
    networks; ``swarm_scope`` False leaves overlays alone (a swarm worker lists the overlays its
    containers use, but only the manager removes them)."""
    def lab_containers() -> list[dict]:
        return docker_api.lab_containers(lab) if containers else []

    def lab_networks() -> list[dict]:
        found = docker_api.lab_networks(lab) if networks else []
        return found if swarm_scope else [n for n in found if n.get("Scope", "local") != "swarm"]

    removal = Removal()
    try:
        for attempt in range(DOWN_ATTEMPTS):
            containers_left = lab_containers()
            networks_left = lab_networks()
            if not containers_left and not networks_left:
                break
            if attempt:
                time.sleep(0.2 * attempt)
            removal.found(containers_left, networks_left)
            again = " (again)" if attempt else ""
            remove_container = on(docker_api.current(), removal.container)  # in this thread's engine
            remove_network = on(docker_api.current(), removal.network)
            parallel(lambda c: remove_container(c["Id"]), containers_left,
                     done=lambda n, total: progress(Step("containers" + again, n, total, "removed")))
            parallel(lambda n: remove_network(n["Id"], n.get("Driver") == "overlay"), networks_left,
                     NETWORK_WORKERS, done=lambda n, total: progress(Step("networks" + again, n, total, "removed")))
        else:
            left = len(lab_containers()), len(lab_networks())
            if any(left):
                raise RuntimeFailure(f"lab {lab!r}: {left[0]} containers and {left[1]} networks are still there after "
                                     f"{DOWN_ATTEMPTS} attempts; run 'mptcpdock down {lab}' again, or look at "
                                     f"'docker ps -a --filter label={LABEL_LAB}={lab}'")
        if not swarm_scope and networks:
            _wait_overlays_gone(lab)
    except Exception as exc:
        if docker_api.engine_gone(exc):
            raise docker_api.gone_error(f"'down' of lab {lab!r}", exc, removal.describe(),
                                        f"run 'mptcpdock down {lab}' again once the engine answers") from exc
        if isinstance(exc, DockerException):
            raise RuntimeFailure(f"removing lab {lab!r} failed: {docker_api.first_line(exc)}") from exc
        raise
    return len(removal.containers), len(removal.networks)


def _wait_overlays_gone(lab: str) -> None:
    """A swarm worker stops listing an overlay some time after its last container there went
    (and the manager removed it): wait for that, so that ``down`` ends with nothing listed."""
    deadline = time.monotonic() + docker_api.TASK_RELEASE_S
    while time.monotonic() < deadline:
        if not [n for n in docker_api.lab_networks(lab) if n.get("Scope") == "swarm"]:
            return
        time.sleep(0.2)


@dataclass
class Removal:
    """What one ``down`` found and removed so far, by Docker ID."""

    containers: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    seen_containers: set[str] = field(default_factory=set)
    seen_networks: set[str] = field(default_factory=set)

    def found(self, containers: list[dict], networks: list[dict]) -> None:
        self.seen_containers.update(c["Id"] for c in containers)
        self.seen_networks.update(n["Id"] for n in networks)

    def container(self, cid: str) -> None:
        docker_api.remove_container(cid)
        self.containers.add(cid)

    def network(self, nid: str, overlay: bool = False) -> None:
        docker_api.remove_network(nid, overlay)
        self.networks.add(nid)

    def describe(self) -> str:
        if not self.seen_containers and not self.seen_networks:
            return "nothing was removed (the lab's objects were not listed yet)"
        return (f"{len(self.containers)} of {len(self.seen_containers)} containers and {len(self.networks)} of "
                f"{len(self.seen_networks)} networks were removed, the rest is still there")


def running_labs() -> dict[str, int]:
    """lab -> number of node containers, from Docker labels."""
    labs: dict[str, int] = {}
    for container in docker_api.lab_containers():
        lab = container["Labels"].get(LABEL_LAB, "?")
        labs[lab] = labs.get(lab, 0) + 1
    for network in docker_api.lab_networks():
        labs.setdefault((network.get("Labels") or {}).get(LABEL_LAB, "?"), 0)
    return labs


def exec_in(state: LabState, node: str, argv: list[str]) -> docker_api.ExecResult:
    return docker_api.run_exec(state.container(node), argv)


__all__ = ["up", "down", "running_labs", "exec_in", "node_command", "wait_configured", "parallel", "LabExists",
           "APIError", "DockerException"]
