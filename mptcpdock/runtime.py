"""Apply a plan to Docker: bring a lab up, take it down, run commands in its nodes.

``up``: probe the kernel and create one network per link (in parallel), create and start
one container per node (in parallel), then configure every node with ONE exec that
renames Docker's interfaces (found by address) to the planned names, removes Docker's
carrier addresses and default route, and feeds the plan's lines to ``ip -batch`` and
``tc -batch``. Any failure removes everything the lab created.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterable, TypeVar

from docker.errors import APIError, DockerException

from . import docker_api
from .docker_api import LABEL_LAB, LABEL_LINK, LABEL_NODE, LABEL_ROLE
from .errors import MptcpdockError, RuntimeFailure
from .plan import NodePlan, Plan, make_plan
from .probe import KernelProbe, probe_kernel, require
from .state import LabState, NodeState, delete_state, new_state, save_state
from .trace import Trace

Progress = Callable[[str], None]
T = TypeVar("T")
R = TypeVar("R")
WORKERS = 16

# Runs inside each node. Arguments: IP_BATCH TC_BATCH then pairs CARRIER_ADDRESS NEW_NAME.
# Fixed text: user input only ever arrives as positional arguments, never as shell code.
CONFIGURE_SCRIPT = r"""
set -eu
ip_batch=$1; tc_batch=$2; shift 2
if [ -n "$(ip -4 route show default)" ]; then ip route del default; fi
i=0; renames=""
while [ $# -gt 0 ]; do
  carrier=$1; name=$2; shift 2
  dev=$(ip -o -4 addr show to "$carrier/32" | { read -r _ d _ || true; echo "${d%%@*}"; })
  if [ -z "$dev" ]; then echo "mptcpdock: no interface has carrier address $carrier" >&2; exit 3; fi
  ip link set dev "$dev" down
  ip addr flush dev "$dev"
  ip link set dev "$dev" name "mpdtmp$i"
  echo "rename $dev $name"
  renames="$renames mpdtmp$i:$name"; i=$((i+1))
done
for pair in $renames; do ip link set dev "${pair%%:*}" name "${pair#*:}"; done
if [ -n "$ip_batch" ]; then printf '%s\n' "$ip_batch" | ip -batch - || { echo "phase=ip" >&2; exit 4; }; fi
if [ -n "$tc_batch" ]; then printf '%s\n' "$tc_batch" | tc -batch - || { echo "phase=tc" >&2; exit 5; }; fi
echo configured
"""


def parallel(function: Callable[[T], R], items: Iterable[T], workers: int = WORKERS) -> list[R]:
    """Map in threads; re-raise the first failure after every task has finished."""
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = [pool.submit(function, item) for item in items]
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
    if docker_api.lab_containers(plan.lab) or docker_api.lab_networks(plan.lab):
        raise LabExists(f"lab {plan.lab!r} is already up (or left over); run 'mptcpdock down {plan.lab}' first, "
                        "or give this one another name (--name)")
    for image in sorted({node.image for node in plan.nodes.values()}):
        if not docker_api.image_exists(image):
            raise RuntimeFailure(f"image {image!r} is missing on the Docker host; build it with "
                                 "'mptcpdock image build' (node image) or 'docker build', or load it "
                                 "with 'mptcpdock image load FILE'")


def up(plan: Plan, *, allow_no_impairments: bool = False, progress: Progress = lambda _: None,
       image_info: dict | None = None, fail_after: str | None = None) -> UpResult:
    """Create and configure the lab. ``fail_after`` injects a failure (for rollback tests)."""
    trace = Trace()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    preflight(plan)
    timings["preflight"] = time.perf_counter() - start
    try:
        return _up(plan, trace, timings, start, allow_no_impairments or plan.topology.allow_no_impairments,
                   progress, image_info or {}, fail_after)
    except BaseException:
        progress("failed: removing everything this lab created")
        down(plan.lab)
        raise


def _up(plan: Plan, trace: Trace, timings: dict[str, float], start: float, allow_no_impairments: bool,
        progress: Progress, image_info: dict, fail_after: str | None) -> UpResult:
    lab = plan.lab
    default_image = next(iter(plan.nodes.values())).image
    carriers = docker_api.free_carrier_subnets(len(plan.links))
    carrier_of = {link.name: carriers[index] for index, link in enumerate(plan.links)}

    progress(f"probing the kernel and creating {len(plan.links)} networks")
    with ThreadPoolExecutor(max_workers=1) as pool:
        probe_future = pool.submit(probe_kernel, default_image, lab)
        networks = parallel(lambda link: _create_network(lab, link.name, carrier_of[link.name], trace), plan.links, 4)
        probe = probe_future.result()
    timings["networks"] = time.perf_counter() - start
    drop = require(probe, netem_links=plan.netem_links, rate_links=True, allow_no_impairments=allow_no_impairments)
    if drop and not plan.impairments_dropped:
        progress(f"no netem in this kernel: applying rates only on {', '.join(plan.netem_links)}")
        plan = make_plan(plan.topology, drop_impairments=True)
    if fail_after == "networks":
        raise RuntimeFailure("injected failure after creating networks")

    carrier_addresses = _carrier_addresses(plan, carrier_of)
    progress(f"creating {len(plan.nodes)} containers")
    container_ids = dict(parallel(
        lambda node: (node.name, _create_node(lab, node, carrier_addresses[node.name], trace)), plan.nodes.values()))
    timings["containers"] = time.perf_counter() - start
    if fail_after == "containers":
        raise RuntimeFailure("injected failure after creating containers")

    progress(f"configuring {len(plan.nodes)} nodes")
    renames = dict(parallel(
        lambda node: (node.name, configure_node(lab, node, carrier_addresses[node.name], trace)), plan.nodes.values()))
    timings["configure"] = time.perf_counter() - start
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
        networks={link.name: networks[index] for index, link in enumerate(plan.links)},
    )
    timings["total"] = time.perf_counter() - start
    state.timings = timings
    save_state(state)
    return UpResult(state=state, trace=trace, probe=probe, plan=plan, timings=timings)


def _carrier_addresses(plan: Plan, carrier_of: dict) -> dict[str, list[tuple[str, str, str]]]:
    """node -> [(network name, carrier address, interface name)] in link order."""
    out: dict[str, list[tuple[str, str, str]]] = {name: [] for name in plan.nodes}
    for link in plan.links:
        hosts = list(carrier_of[link.name].hosts())  # hosts[0] is Docker's reserved gateway
        out[link.a_node].append((network_name(plan.lab, link.name), str(hosts[1]), link.a_interface))
        out[link.b_node].append((network_name(plan.lab, link.name), str(hosts[2]), link.b_interface))
    return out


def _create_network(lab: str, link: str, subnet, trace: Trace) -> str:
    name = network_name(lab, link)
    bridge = bridge_name(lab, link)
    docker_api.create_network(name, bridge, subnet, _labels(lab, "link", **{LABEL_LINK: link}))
    trace.docker("network", "create", "--driver", "bridge", "--subnet", str(subnet),
                 "-o", f"com.docker.network.bridge.name={bridge}",
                 "-o", "com.docker.network.bridge.inhibit_ipv4=true",
                 "-o", "com.docker.network.bridge.enable_ip_masquerade=false",
                 "--label", f"{LABEL_LAB}={lab}", "--label", f"{LABEL_LINK}={link}", name)
    return name


def _create_node(lab: str, node: NodePlan, attachments: list[tuple[str, str, str]], trace: Trace) -> str:
    name = container_name(lab, node.name)
    cid = docker_api.create_container(
        name=name, hostname=node.name, image=node.image,
        labels=_labels(lab, "node", **{LABEL_NODE: node.name}),
        cap_add=node.cap_add, sysctls=node.sysctls, privileged=node.privileged,
        networks=[(network, address) for network, address, _ in attachments],
    )
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
    docker_api.start_container(cid)
    trace.docker("start", name)
    return cid


def configure_node(lab: str, node: NodePlan, attachments: list[tuple[str, str, str]], trace: Trace) -> dict[str, str]:
    """One exec: rename interfaces, drop carrier addresses and the default route, apply lines."""
    container = container_name(lab, node.name)
    ip_lines, tc_lines = node.ip_lines(), node.tc_lines()
    argv = ["sh", "-c", CONFIGURE_SCRIPT, "mptcpdock-configure", "\n".join(ip_lines), "\n".join(tc_lines)]
    for _, carrier, interface in attachments:
        argv += [carrier, interface]
    result = docker_api.run_exec(container, argv)
    renames = {}
    for line in result.stdout.splitlines():
        if line.startswith("rename "):
            _, old, new = line.split()
            renames[new] = old
    trace.node(node.name, container, ["ip", "route", "del", "default"], comment=f"configure {node.name}: "
               "Docker's default route goes; interfaces are renamed by address")
    for _, carrier, interface in attachments:
        trace.node(node.name, container, ["sh", "-c", f'd=$(ip -o -4 addr show to {carrier}/32 | cut -d" " -f2) && '
                                          f'ip link set dev "$d" down && ip addr flush dev "$d" && '
                                          f'ip link set dev "$d" name {interface}'])
    for line in ip_lines:
        trace.node(node.name, container, ["ip", *line.split()])
    for line in tc_lines:
        trace.node(node.name, container, ["tc", *line.split()])
    if result.exit_code != 0:
        raise RuntimeFailure(f"configuring node {node.name!r} failed: {_explain(result.stderr, ip_lines, tc_lines)}")
    return renames


def _explain(stderr: str, ip_lines: list[str], tc_lines: list[str]) -> str:
    """Point at the failing batch line ('Command failed -:N')."""
    lines = tc_lines if "phase=tc" in stderr else ip_lines
    tool = "tc" if "phase=tc" in stderr else "ip"
    message = " ".join(line.strip() for line in stderr.splitlines() if line.strip() and not line.startswith("phase="))
    for part in stderr.split():
        if part.startswith("-:") and part[2:].isdigit():
            index = int(part[2:]) - 1
            if 0 <= index < len(lines):
                return f"'{tool} {lines[index]}' -> {message}"
    return message or "no error text"


def down(lab: str, progress: Progress = lambda _: None) -> tuple[int, int]:
    """Remove every container and network labelled with ``lab``; idempotent."""
    containers = docker_api.lab_containers(lab)
    progress(f"removing {len(containers)} containers")
    parallel(lambda c: docker_api.remove_container(c["Id"]), containers)
    networks = docker_api.lab_networks(lab)
    progress(f"removing {len(networks)} networks")
    parallel(lambda n: docker_api.remove_network(n["Id"]), networks, 4)
    delete_state(lab)
    return len(containers), len(networks)


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


__all__ = ["up", "down", "running_labs", "exec_in", "configure_node", "parallel", "LabExists",
           "APIError", "DockerException"]
