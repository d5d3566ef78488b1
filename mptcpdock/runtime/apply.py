"""Apply a plan to Docker: bring a lab up, take it down, run commands in its nodes.

``up`` overlaps its stages: it probes the kernel while it creates one network per link (in
parallel), then creates and starts each node's container as soon as that node's networks
exist. Each container's first command configures its node (so configuring costs no exec):
it renames Docker's interfaces (found by address) to the planned names, removes Docker's
carrier addresses and default route, feeds the plan's lines to ``ip -batch`` and
``tc -batch``, reports and sleeps. Any failure removes everything the lab created."""

from __future__ import annotations

import hashlib
import ipaddress
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Callable, Iterable, TypeVar

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
from .state import LabState, NodeState, delete_state, new_state, save_state
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


def preflight(plan: Plan) -> None:
    """Checks that need Docker but create nothing."""
    _check_engines(plan)
    if docker_api.lab_containers(plan.lab) or docker_api.lab_networks(plan.lab):
        raise LabExists(f"lab {plan.lab!r} is already up (or left over); run 'mptcpdock down {plan.lab}' first, "
                        "or give this one another name (--name)")
    for image in sorted({node.image for node in plan.nodes.values()}):
        if not docker_api.image_exists(image):
            raise _image_missing(plan, image)


def _check_engines(plan: Plan) -> None:
    """One engine only (this runtime), and a swarm manager there when a link is an overlay."""
    topology = plan.topology
    if len(plan.engines) > 1:
        crossing = [link.name for link in plan.links if link.crosses]
        raise RuntimeFailure(
            f"lab {plan.lab!r} places nodes on {len(plan.engines)} engines ({', '.join(map(str, plan.engines))}; "
            f"crossing links: {', '.join(crossing)}); 'up' brings labs up on one engine so far (fix: put every "
            "node on one engine, e.g. one entry under engines:, or overlays: all on a one-node swarm; "
            "docs/multi-host.md has the multi-engine design)")
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
    preflight(plan)
    timings["preflight"] = time.perf_counter() - start
    created = Created()
    try:
        return _up(plan, trace, timings, start, allow_no_impairments or plan.topology.allow_no_impairments,
                   progress, image_info or {}, fail_after, created)
    except BaseException as exc:
        error = _rolled_back(plan.lab, exc, created, progress)
        if error is exc:
            raise
        raise error from exc


def _rolled_back(lab: str, exc: BaseException, created: "Created", progress: Progress) -> BaseException:
    """Remove what a failed ``up`` created; the error to raise (``exc`` itself when it says enough).

    When the engine went away (during ``up`` or during this rollback), the error says what may
    be left and that ``down`` cleans it once the engine answers: the state file was not written,
    but ``down`` finds everything by its labels."""
    progress("failed: removing everything this lab created")
    try:
        down(lab)
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
        progress: Progress, image_info: dict, fail_after: str | None, created: Created) -> UpResult:
    """Everything overlaps: the kernel probe, network creation, and each node's container,
    created as soon as its own networks exist and configured by its own first command."""
    lab = plan.lab
    default_image = next(iter(plan.nodes.values())).image
    carriers = docker_api.CarrierAllocator()
    link_plans = {link.name: link for link in plan.links}
    attachments: dict[str, list[tuple[str, str, str]]] = {}  # node -> [(network, carrier address, interface)]
    elapsed = lambda: time.perf_counter() - start  # noqa: E731

    kernel_needs = plan_events(plan.topology, plan).kernel_needs
    early: KernelProbe | None = None
    if mptcp_needs(plan.topology):  # settings only the probe can allow: check them before creating anything
        progress("probing the kernel for the lab's MPTCP settings")
        early = probe_kernel(default_image, lab)
        require_for_mptcp(early, plan.topology)
        require_for_events(early, kernel_needs, plan.topology.source)
    progress(f"probing the kernel, creating {len(plan.links)} networks and {len(plan.nodes)} containers")
    with _Pools() as pools:
        probe_future = pools.pool(1).submit((lambda: early) if early is not None else  # type: ignore[arg-type]
                                            (lambda: probe_kernel(default_image, lab)))
        network_pool = pools.pool(NETWORK_WORKERS)
        network_futures = {link.name: network_pool.submit(_create_network, lab, link.name, carriers, trace, created,
                                                          link.driver)
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

        def kernel_checked() -> KernelProbe:
            """The probe, checked against what the events need; the kernel-dependent sysctls
            (net.mptcp.blackhole_timeout) go into every node's plan before any is created."""
            probe = probe_future.result()
            require_for_events(probe, kernel_needs, plan.topology.source)
            require_for_mptcp(probe, plan.topology)
            for variant in {id(plan): plan, id(reduced): reduced}.values():
                apply_kernel_sysctls(variant, has_blackhole_timeout=probe.blackhole_timeout is not None,
                                     path_manager_sysctls=probe.path_manager_sysctls)
            return probe

        checked_future = pools.pool(1).submit(kernel_checked)

        def create_node(node: NodePlan) -> str:
            checked_future.result()  # raises when the kernel lacks what an event needs
            attachments[node.name] = [
                (network, carrier_address(subnet, link_plans[interface.link], node.name), interface.name)
                for interface in node.interfaces
                for network, subnet in [network_futures[interface.link].result()]
            ]
            return _create_node(lab, node, attachments[node.name], reduced.nodes[node.name], trace, created)

        # Nodes configure themselves while later containers are created; their reports are
        # collected (in the same pool, behind the creations) once each container has started.
        node_pool = pools.pool(WORKERS)
        node_futures = {node_pool.submit(create_node, node): node.name for node in _creation_order(plan)}
        probe = checked_future.result()
        timings["probe"] = elapsed()
        drop = require(probe, netem_links=plan.netem_links, rate_links=True, allow_no_impairments=allow_no_impairments,
                       leaf_qdiscs=plan.leaf_qdiscs)
        if drop and not plan.impairments_dropped:
            progress(f"no netem in this kernel: applying rates only on {', '.join(plan.netem_links)}")
            plan = reduced
        container_ids: dict[str, str] = {}
        configured: dict[str, Future[dict[str, str]]] = {}
        for done, future in enumerate(as_completed(node_futures), 1):
            name = node_futures[future]
            container_ids[name] = future.result()
            if fail_after != "containers":
                configured[name] = node_pool.submit(wait_configured, lab, plan.nodes[name], container_ids[name],
                                                    attachments[name], reduced.nodes[name], trace)
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
        _check_still_running(lab)
        if any(link.driver == "overlay" for link in plan.links):
            _check_no_way_out(lab, container_ids)
        if fail_after == "configure":
            raise RuntimeFailure("injected failure after configuring nodes")

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
            )
            for name, node in plan.nodes.items()
        },
        networks={link.name: networks[link.name] for link in plan.links},
        engine=docker_api.engine_identity(),
        sysctls={name: dict(node.sysctls) for name, node in plan.nodes.items()},
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


def _check_no_way_out(lab: str, container_ids: dict[str, str]) -> None:
    """Overlays are internal, so Docker attaches no docker_gwbridge; should an engine do it
    anyway, the lab would have a route out of the host: stop (and roll back) instead."""
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


def down(lab: str, progress: Progress = lambda _: None) -> tuple[int, int]:
    """Remove every container and network labelled with ``lab``; idempotent.

    Lists again after removing and repeats (a few times) while anything is left, so that
    objects still being created or removed by someone else (a crashed ``up``'s stragglers,
    an engine-side removal in progress) are not left behind. When the engine goes away
    mid-way, the error says how much was removed; the state file stays until a ``down`` ends.
    """
    removal = Removal()
    try:
        for attempt in range(DOWN_ATTEMPTS):
            containers = docker_api.lab_containers(lab)
            networks = docker_api.lab_networks(lab)
            if not containers and not networks:
                break
            if attempt:
                time.sleep(0.2 * attempt)
            removal.found(containers, networks)
            again = " (again)" if attempt else ""
            parallel(lambda c: removal.container(c["Id"]), containers,
                     done=lambda n, total: progress(Step("containers" + again, n, total, "removed")))
            parallel(lambda n: removal.network(n["Id"], n.get("Driver") == "overlay"), networks, NETWORK_WORKERS,
                     done=lambda n, total: progress(Step("networks" + again, n, total, "removed")))
        else:
            left = len(docker_api.lab_containers(lab)), len(docker_api.lab_networks(lab))
            if any(left):
                raise RuntimeFailure(f"lab {lab!r}: {left[0]} containers and {left[1]} networks are still there after "
                                     f"{DOWN_ATTEMPTS} attempts; run 'mptcpdock down {lab}' again, or look at "
                                     f"'docker ps -a --filter label={LABEL_LAB}={lab}'")
    except Exception as exc:
        if docker_api.engine_gone(exc):
            raise docker_api.gone_error(f"'down' of lab {lab!r}", exc, removal.describe(),
                                        f"run 'mptcpdock down {lab}' again once the engine answers") from exc
        if isinstance(exc, DockerException):
            raise RuntimeFailure(f"removing lab {lab!r} failed: {docker_api.first_line(exc)}") from exc
        raise
    delete_state(lab)
    return len(removal.containers), len(removal.networks)


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
