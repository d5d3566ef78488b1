"""Labs on real Docker: ex.1 in detail, every seed topology's connectivity, a shaped link's
throughput, rollback after failures, and two labs side by side.

Expected connectivity is not written down by hand: :class:`RouteSim` derives it from the
resolved topology (hand-written routes, forwarding and reverse-path-filter sysctls) and the
test compares it with what ``ping`` finds in the running lab, pair by pair.
"""

from __future__ import annotations

import ipaddress
import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from click.testing import CliRunner
from docker.errors import NotFound

from conftest import TOPOLOGIES, running_lab
from mptcpdock.runtime import docker_api, lab as lab_api, apply
from mptcpdock.runtime.docker_api import CARRIER_POOL, run_exec
from mptcpdock.errors import RuntimeFailure
from mptcpdock.topology.loader import load_topology
from mptcpdock.topology.model import Link, LinkEnd, Node, Route, Shaping, Topology
from mptcpdock.plan.commands import Plan
from mptcpdock.runtime.apply import UpResult
from mptcpdock.plan.shaping import without_impairments
from mptcpdock.runtime.state import state_path

pytestmark = pytest.mark.docker

EX1 = TOPOLOGIES / "mptcp-default-configuration.yaml"
SEEDS = ["mptcp-default-configuration.yaml", "mptcp-helper.yaml", "mptcp-mega-dumbbell.yaml"]
IPv4 = ipaddress.IPv4Address
Net = ipaddress.IPv4Network

# Fixed text; the targets arrive as positional arguments. Three probes per target, all
# targets in parallel: a reachable address answers in well under a second, an unreachable
# one costs at most ~2.4 s (or nothing when there is no route at all).
PING_SCRIPT = r"""
for a in "$@"; do
  ( if ping -n -q -c 3 -i 0.2 -W 2 "$a" >/dev/null 2>&1; then echo "ok $a"; else echo "no $a"; fi ) &
done
wait
"""


# -- helpers ---------------------------------------------------------------------------------

def sh(up: UpResult, node: str, *argv: str) -> str:
    """Run argv in a node of the lab; fail the test on a non-zero exit."""
    result = run_exec(up.state.container(node), list(argv))
    assert result.exit_code == 0, f"{node}: {argv} -> {result.exit_code}: {result.stderr}"
    return result.stdout


def ping_many(up: UpResult, targets: dict[str, list[str]]) -> set[tuple[str, str]]:
    """(node, address) pairs that answered; one exec per source node, nodes in parallel."""
    def run(node: str) -> set[tuple[str, str]]:
        if not targets[node]:
            return set()
        out = sh(up, node, "sh", "-c", PING_SCRIPT, "ping-many", *targets[node])
        verdicts = {address: verdict for verdict, address in (line.split() for line in out.splitlines() if line)}
        assert set(verdicts) == set(targets[node]), out
        return {(node, address) for address, verdict in verdicts.items() if verdict == "ok"}

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return set().union(*pool.map(run, targets))


def lab_objects(lab: str) -> tuple[list[str], list[str]]:
    return ([c["Id"] for c in docker_api.lab_containers(lab)], [n["Id"] for n in docker_api.lab_networks(lab)])


def tc_rate_bits(text: str) -> int:
    """tc's '100Mbit' / '9600bit' / '1500Kbit' in bit/s."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)bit", text)
    assert match, text
    return int(float(match.group(1)) * {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[match.group(2)])


def node_addresses(topology: Topology, node: str) -> list[str]:
    return [link.end(node).address for link in topology.links_of(node)]


# -- an independent model of what the hand-written routes connect -----------------------------

@dataclass(frozen=True)
class Entry:
    network: Net
    metric: int
    dev: str
    via: IPv4 | None
    order: int


class RouteSim:
    """Walks a packet through the routing tables the topology's routes describe: longest
    prefix, then lowest metric, then first written; only nodes with ip_forward=1 forward;
    the receiving node's reverse-path filter (0 off, 1 strict, 2 loose) applies at each hop."""

    def __init__(self, plan: Plan) -> None:
        self.topology = plan.topology
        self.sysctls = {name: node.sysctls for name, node in plan.nodes.items()}
        self.owner = {IPv4(end.address): end.node for link in self.topology.links for end in (link.a, link.b)}
        self.tables = {name: self._table(name) for name in self.topology.nodes}

    def _interfaces(self, node: str) -> dict[str, tuple[IPv4, Net, IPv4]]:
        return {link.end(node).interface: (IPv4(link.end(node).address), Net(link.subnet), IPv4(link.peer(node).address))
                for link in self.topology.links_of(node)}

    def _table(self, node: str) -> list[Entry]:
        interfaces = self._interfaces(node)
        table = [Entry(subnet, 0, dev, None, i) for i, (dev, (_, subnet, _)) in enumerate(interfaces.items())]
        for route in self.topology.nodes[node].routes:
            network = Net("0.0.0.0/0") if route.to == "default" else Net(route.to, strict=False)
            if route.link:
                link = self.topology.link(route.link)
                dev, via = link.end(node).interface, IPv4(link.peer(node).address)
            elif route.via:
                via = IPv4(route.via)
                dev = route.dev or next(d for d, (_, subnet, _) in interfaces.items() if via in subnet)
            else:
                dev, via = route.dev, interfaces[route.dev][2]
            table.append(Entry(network, route.metric or 0, dev, via, len(table)))
        return table

    def lookup(self, node: str, address: IPv4) -> Entry | None:
        matches = [entry for entry in self.tables[node] if address in entry.network]
        return min(matches, key=lambda e: (-e.network.prefixlen, e.metric, e.order), default=None)

    def local(self, node: str, address: IPv4) -> bool:
        return self.owner.get(address) == node

    def _accepts(self, node: str, source: IPv4, dev: str) -> bool:
        mode = int(self.sysctls[node].get("net.ipv4.conf.all.rp_filter", "0"))
        if mode == 0:
            return True
        back = self.lookup(node, source)
        return back is not None and (mode == 2 or back.dev == dev)

    def delivers(self, start: str, source: IPv4, destination: IPv4) -> bool:
        node = start
        for _ in range(64):
            if self.local(node, destination):
                return True
            if node != start and self.sysctls[node].get("net.ipv4.ip_forward") != "1":
                return False
            entry = self.lookup(node, destination)
            if entry is None:
                return False
            link = next(l for l in self.topology.links_of(node) if l.end(node).interface == entry.dev)
            peer = link.peer(node)
            if IPv4(peer.address) != (entry.via or destination):
                return False  # nobody on that link answers ARP for the next hop
            if not self._accepts(peer.node, source, peer.interface):
                return False
            node = peer.node
        return False

    def pings(self, node: str, address: str) -> bool:
        """An echo request from ``node`` to ``address`` and its reply both arrive."""
        destination = IPv4(address)
        first = self.lookup(node, destination)
        if first is None:
            return False
        source = self._interfaces(node)[first.dev][0]
        return self.delivers(node, source, destination) and self.delivers(self.owner[destination], destination, source)


def ping_targets(topology: Topology) -> dict[str, list[str]]:
    """Every node: its neighbours' addresses; every host: also every other host's addresses."""
    hosts = [name for name, node in topology.nodes.items() if node.kind == "host"]
    targets: dict[str, list[str]] = {}
    for name in topology.nodes:
        addresses = [link.peer(name).address for link in topology.links_of(name)]
        if name in hosts:
            addresses += [a for other in hosts if other != name for a in node_addresses(topology, other)]
        targets[name] = list(dict.fromkeys(addresses))
    return targets


# -- ex.1 in detail -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ex1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpResult]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path_factory.getbasetemp() / "state"))
        with running_lab(EX1, "t2-ex1") as up:
            yield up


def test_ex1_h1_pings_both_h2_addresses_through_r1_and_r2(ex1: UpResult):
    topology = ex1.plan.topology
    h2_addresses = node_addresses(topology, "h2")
    assert len(h2_addresses) == 2
    counters = {("r1", "etr1a"): "rx", ("r2", "etr2a"): "rx"}

    def read() -> dict[tuple[str, str], int]:
        return {(node, dev): int(sh(ex1, node, "cat", f"/sys/class/net/{dev}/statistics/{kind}_packets"))
                for (node, dev), kind in counters.items()}

    before = read()
    for address in h2_addresses:
        out = sh(ex1, "h1", "ping", "-n", "-c", "5", "-i", "0.2", "-W", "2", address)
        assert " 0% packet loss" in out, out
        assert "ttl=62" in out, "the replies must cross exactly two routers (r2, r1)"
    after = read()
    for key in counters:
        assert after[key] - before[key] >= 2 * 5, f"{key}: the pings must pass through it"
    sent = re.search(r"Sent (\d+) bytes", sh(ex1, "h1", "tc", "-s", "class", "show", "dev", "eth1a"))
    assert sent and int(sent.group(1)) > 0, "h1's traffic must pass through its htb class"


def test_ex1_qdiscs_show_the_planned_rates(ex1: UpResult):
    topology = ex1.plan.topology
    assert ex1.state.impairments_dropped == (not ex1.probe.netem)
    checked = 0
    for name in topology.nodes:
        for link in topology.links_of(name):
            dev = link.end(name).interface
            asked = link.shaping_from(name)
            applied = without_impairments(asked) if ex1.state.impairments_dropped else asked
            qdiscs = sh(ex1, name, "tc", "-s", "qdisc", "show", "dev", dev)
            classes = sh(ex1, name, "tc", "-s", "class", "show", "dev", dev)
            assert re.search(r"qdisc htb 1: root .*default 0x1", qdiscs), qdiscs
            rate = re.search(r"class htb 1:1 root leaf 10: prio \d+ rate (\S+) ceil (\S+)", classes)
            assert rate, classes
            assert tc_rate_bits(rate.group(1)) == tc_rate_bits(rate.group(2)) == applied.rate
            queue = ex1.plan.nodes[name].shaping[dev].queue.packets
            leaf = "netem" if applied.needs_netem else "pfifo"
            assert re.search(rf"qdisc {leaf} 10: parent 1:1 limit {queue}p", qdiscs), qdiscs
            checked += 1
    assert checked == 2 * len(topology.links)


def parse_endpoints(text: str) -> set[tuple[str, str, frozenset[str]]]:
    """'10.0.0.1 id 1 subflow dev eth1a' -> (address, dev, {flags})."""
    out = set()
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        dev = words[words.index("dev") + 1]
        flags = frozenset(w for w in words if w in ("signal", "subflow", "backup", "fullmesh"))
        out.add((words[0], dev, flags))
    return out


def test_ex1_mptcp_endpoints_and_limits_match_the_yaml(ex1: UpResult):
    yaml_topology = load_topology(EX1)  # as written, before validation
    resolved = ex1.plan.topology
    for name, node in yaml_topology.nodes.items():
        addresses = {link.end(name).interface: link.end(name).address for link in resolved.links_of(name)}
        expected = {(addresses[ep.interface], ep.interface, frozenset(ep.flags)) for ep in node.mptcp.endpoints}
        assert parse_endpoints(sh(ex1, name, "ip", "mptcp", "endpoint", "show")) == expected, name
        limits = sh(ex1, name, "ip", "mptcp", "limits", "show").split()
        shown = dict(zip(limits[::2], map(int, limits[1::2])))
        for key in ("subflows", "add_addr_accepted"):
            if getattr(node.mptcp, key) is not None:
                assert shown[key] == getattr(node.mptcp, key), (name, key, shown)
        assert sh(ex1, name, "sysctl", "-n", "net.mptcp.enabled").strip() == "1"
    assert any(node.mptcp.endpoints for node in yaml_topology.nodes.values())


def test_ex1_routes_addresses_and_interface_names_are_the_planned_ones(ex1: UpResult):
    for name, node in ex1.plan.nodes.items():
        links = sh(ex1, name, "ip", "-o", "link", "show").splitlines()
        names = {line.split(":")[1].strip().split("@")[0] for line in links} - {"lo"}
        assert names == {intf.name for intf in node.interfaces}, name
        addresses = {line.split()[3] for line in sh(ex1, name, "ip", "-o", "-4", "addr", "show").splitlines()}
        assert addresses == {f"{i.address}/{i.prefixlen}" for i in node.interfaces} | {"127.0.0.1/8"}, name
        assert not any(ipaddress.IPv4Interface(a).ip in CARRIER_POOL for a in addresses)
        routes = sh(ex1, name, "ip", "-4", "route", "show")
        assert "100.64." not in routes and not re.search(r"\b100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.", routes)
        defaults = [line.split() for line in routes.splitlines() if line.startswith("default")]
        planned = [r for r in node.routing.routes if r.to == "default"]
        assert [(d[2], d[4]) for d in defaults] == [(r.via, r.dev) for r in planned], (name, routes)
        for entry in node.routing.routes:
            assert f"{entry.to} via {entry.via} dev {entry.dev}" in routes, (name, entry)
        expected_forward = "1" if node.kind == "router" else "0"
        assert sh(ex1, name, "sysctl", "-n", "net.ipv4.ip_forward").strip() == expected_forward


def test_ex1_status_and_exec_through_the_cli(ex1: UpResult):
    from mptcpdock.cli import main
    status = CliRunner().invoke(main, ["status", "t2-ex1"])
    assert status.exit_code == 0, status.output
    assert "192.168.11.2/24" in status.stdout and "eth2b" in status.stdout
    listing = CliRunner().invoke(main, ["status"])
    assert "t2-ex1" in listing.stdout
    executed = CliRunner().invoke(main, ["exec", "--lab", "t2-ex1", "h2", "--", "ip", "-o", "-4", "addr", "show", "dev",
                                         "eth2b"])
    assert executed.exit_code == 0 and "192.168.11.2/24" in executed.stdout


def test_up_and_down_through_the_cli_leave_nothing_behind():
    from mptcpdock.cli import main
    lab = "t2-down"
    apply.down(lab)
    result = CliRunner().invoke(main, ["up", str(EX1), "--name", lab, "--allow-no-impairments", "-q"])
    assert result.exit_code == 0, result.output
    containers, networks = lab_objects(lab)
    assert (len(containers), len(networks)) == (4, 4)
    assert state_path(lab).exists()
    down = CliRunner().invoke(main, ["down", lab])
    assert down.exit_code == 0, down.output
    assert "removed 4 containers and 4 networks" in down.stdout
    assert lab_objects(lab) == ([], [])
    assert not state_path(lab).exists()
    for cid in containers:
        with pytest.raises(NotFound):
            docker_api.client().api.inspect_container(cid)
    again = CliRunner().invoke(main, ["down", lab])  # idempotent
    assert again.exit_code == 0 and "removed 0 containers and 0 networks" in again.stdout


# -- every seed: full connectivity as its routes allow ----------------------------------------

#: A floor under the simulation, so that it cannot pass by predicting nothing: (node, other,
#: other's interface or None for all of them) = node pings those addresses of other. These
#: pairs work whatever the nodes' reverse-path filter; the simulation adds the rest.
MUST_REACH = {
    "mptcp-default-configuration.yaml": [("h1", "h2", None), ("h2", "h1", None)],
    "mptcp-helper.yaml": [("h1", "h2", None), ("h2", "h1", None)],
    "mptcp-mega-dumbbell.yaml": [("h1", "h6", "eth6a"), ("h2", "h6", "eth6a"), ("h2", "h6", "eth6c"),
                                 ("h3", "h6", "eth6a"), ("h4", "h6", "eth6a"), ("h5", "h6", "eth6c")]
                                + [("h6", host, None) for host in ("h1", "h2", "h3", "h4", "h5")],
}


@pytest.mark.parametrize("seed", SEEDS)
def test_seed_topology_comes_up_with_full_connectivity(seed: str):
    path = TOPOLOGIES / seed
    assert path.exists(), f"seed topology {seed} is missing"
    lab = "t2-" + seed.removeprefix("mptcp-").removesuffix(".yaml")[:12]
    with running_lab(path, lab) as up:
        topology = up.plan.topology
        sim = RouteSim(up.plan)
        targets = ping_targets(topology)
        expected = {(node, address) for node, addresses in targets.items() for address in addresses
                    if sim.pings(node, address)}
        for node, other, interface in MUST_REACH[seed]:
            for link in topology.links_of(other):
                if interface in (None, link.end(other).interface):
                    address = link.end(other).address
                    assert (node, address) in expected, f"the routes should let {node} reach {other}'s {address}"
        answered = ping_many(up, targets)
        assert answered == expected, (f"unexpectedly answered: {sorted(answered - expected)}; "
                                      f"unexpectedly silent: {sorted(expected - answered)}")


# -- throughput of one shaped link ---------------------------------------------------------

def two_hosts(name: str, rate: int) -> Topology:
    return Topology(name=name, nodes={"h1": Node("h1"), "h2": Node("h2")},
                    links=[Link(LinkEnd("h1"), LinkEnd("h2"), shaping=Shaping(rate=rate))])


def test_iperf3_over_one_10mbit_link_reaches_the_rate():
    rate = 10_000_000
    with running_lab(two_hosts("t2-iperf", rate), "t2-iperf") as up:
        server = node_addresses(up.plan.topology, "h2")[0]
        docker_api.start_exec_detached(up.state.container("h2"), ["iperf3", "-s", "-1", "-p", "5201"])
        sh(up, "h2", "sh", "-c", 'for i in $(seq 100); do ss -ltn | grep -q ":$1 " && exit 0; sleep 0.1; done; exit 1',
           "wait-port", "5201")
        report = json.loads(sh(up, "h1", "iperf3", "-c", server, "-p", "5201", "-t", "10", "-J"))
        received = report["end"]["sum_received"]["bits_per_second"]
        print(f"iperf3 over a {rate / 1e6:g} Mbit/s htb link: receiver goodput {received / 1e6:.3f} Mbit/s")
        assert report["end"]["sum_received"]["seconds"] >= 9.5
        assert 0.94 * rate <= received <= 1.0 * rate, f"receiver goodput {received / 1e6:.2f} Mbit/s"


# -- rollback ----------------------------------------------------------------------------------

@pytest.fixture()
def created(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Records every network and container the runtime creates, and every node it configures."""
    seen: dict[str, list[str]] = {"networks": [], "containers": [], "configured": []}
    create_network, create_container, configure = (docker_api.create_network, docker_api.create_container,
                                                   apply.wait_configured)

    def network(*args, **kwargs):
        seen["networks"].append(create_network(*args, **kwargs))
        return seen["networks"][-1]

    def container(*args, **kwargs):
        seen["containers"].append(create_container(*args, **kwargs))
        return seen["containers"][-1]

    def wait_configured(lab, node, *args, **kwargs):
        renames = configure(lab, node, *args, **kwargs)
        seen["configured"].append(node.name)
        return renames

    monkeypatch.setattr(docker_api, "create_network", network)
    monkeypatch.setattr(docker_api, "create_container", container)
    monkeypatch.setattr(apply, "wait_configured", wait_configured)
    return seen


def assert_gone(lab: str, created: dict[str, list[str]]) -> None:
    assert lab_objects(lab) == ([], [])
    api = docker_api.client().api
    for cid in created["containers"]:
        with pytest.raises(NotFound):
            api.inspect_container(cid)
    for nid in created["networks"]:
        with pytest.raises(NotFound):
            api.inspect_network(nid)
    assert not state_path(lab).exists()
    assert lab not in apply.running_labs()


@pytest.mark.parametrize("stage", ["networks", "containers", "configure"])
def test_rollback_after_an_injected_failure_leaves_nothing(stage: str, created):
    lab = f"t2-rb-{stage}"
    apply.down(lab)
    topology = load_topology(EX1)
    topology.name = lab
    plan = lab_api.prepare(topology)
    with pytest.raises(RuntimeFailure, match=f"injected failure after .*{stage[:5]}"):
        apply.up(plan, allow_no_impairments=True, fail_after=stage)
    assert len(created["networks"]) == len(plan.links), "every network existed before the failure"
    if stage in ("containers", "configure"):
        assert len(created["containers"]) == len(plan.nodes)
    if stage == "configure":
        assert sorted(created["configured"]) == sorted(plan.nodes)
    assert_gone(lab, created)


def test_a_node_killed_after_it_configured_itself_fails_up_and_rolls_back(created, monkeypatch: pytest.MonkeyPatch):
    """The VM tier's kill mid-up, made deterministic: r1's container is killed right after it
    reported itself configured, while up still waits for the others. A lab with a dead node
    is not up: up must fail in one line naming it, and remove everything."""
    lab = "t2-rb-killed"
    apply.down(lab)
    topology = load_topology(EX1)
    topology.name = lab
    configure = apply.wait_configured  # the recording wrapper of the 'created' fixture

    def configured_then_killed(lab_name, node, cid, *args, **kwargs):
        renames = configure(lab_name, node, cid, *args, **kwargs)
        if node.name == "r1":
            docker_api.client().api.kill(cid)
            docker_api.client().api.wait(cid, timeout=30)
        return renames

    monkeypatch.setattr(apply, "wait_configured", configured_then_killed)
    with pytest.raises(RuntimeFailure) as caught:
        lab_api.bring_up(topology, allow_no_impairments=True)
    message = str(caught.value)
    assert f"containers of lab '{lab}' stopped while it came up: {lab}-r1 (" in message, message
    assert "\n" not in message
    assert sorted(created["configured"]) == ["h1", "h2", "r1", "r2"]
    assert_gone(lab, created)


def kernel_refuses_route(name: str) -> Topology:
    """Valid YAML, but the gateway lies on eth1's subnet while the route says dev eth0."""
    topology = Topology(name=name, nodes={"h1": Node("h1", routes=[Route(to="10.5.0.0/24", via="10.0.1.2", dev="eth0")]),
                                          "h2": Node("h2"), "h3": Node("h3")},
                        links=[Link(LinkEnd("h1"), LinkEnd("h2")), Link(LinkEnd("h1"), LinkEnd("h3"))])
    return topology


def test_a_command_the_kernel_refuses_is_reported_and_rolled_back(created):
    lab = "t2-rb-route"
    apply.down(lab)
    with pytest.raises(RuntimeFailure) as caught:
        lab_api.bring_up(kernel_refuses_route(lab), allow_no_impairments=True)
    message = str(caught.value)
    assert re.match(r"configuring node 'h1' failed \(exit \d+\): 'ip route add 10\.5\.0\.0/24 via 10\.0\.1\.2 dev eth0' -> ",
                    message), message
    assert "\n" not in message
    assert len(created["containers"]) == 3
    assert_gone(lab, created)


def test_a_sysctl_the_kernel_refuses_is_reported_and_rolled_back(created):
    lab = "t2-rb-sysctl"
    apply.down(lab)
    topology = two_hosts(lab, 10_000_000)
    topology.nodes["h2"].sysctls = {"net.ipv4.tcp_congestion_control": "nosuchcc"}
    with pytest.raises(RuntimeFailure) as caught:
        lab_api.bring_up(topology, allow_no_impairments=True)
    message = str(caught.value)
    assert message.startswith("starting the container of node 'h2' failed: ")
    assert "tcp_congestion_control" in message and "nodes.h2.sysctls" in message
    assert "\n" not in message
    assert created["containers"], "the containers were created before the failure"
    assert_gone(lab, created)


def test_down_removes_the_orphans_of_a_crashed_up(monkeypatch: pytest.MonkeyPatch):
    """A crash (no rollback, no state file) leaves labelled objects; 'down LAB' finds them."""
    lab = "t2-crash"
    apply.down(lab)
    topology = load_topology(EX1)
    topology.name = lab
    plan = lab_api.prepare(topology)
    monkeypatch.setattr(apply, "down", lambda *args, **kwargs: (0, 0))  # the process 'dies' instead
    with pytest.raises(RuntimeFailure):
        apply.up(plan, allow_no_impairments=True, fail_after="containers")
    monkeypatch.undo()
    containers, networks = lab_objects(lab)
    assert (len(containers), len(networks)) == (4, 4) and not state_path(lab).exists()
    from mptcpdock.cli import main
    result = CliRunner().invoke(main, ["down", lab])
    assert result.exit_code == 0, result.output
    assert lab_objects(lab) == ([], [])


# -- two labs at once ----------------------------------------------------------------------

def test_two_labs_of_the_same_topology_run_side_by_side():
    with running_lab(EX1, "t2-twin-a") as first, running_lab(EX1, "t2-twin-b") as second:
        assert {n["Name"] for n in docker_api.lab_networks("t2-twin-a")}.isdisjoint(
            {n["Name"] for n in docker_api.lab_networks("t2-twin-b")})
        h2 = node_addresses(first.plan.topology, "h2")
        both = {"h1": h2, "h2": [], "r1": [], "r2": []}
        assert ping_many(first, both) == {("h1", a) for a in h2}
        assert ping_many(second, both) == {("h1", a) for a in h2}
        lab_api.tear_down("t2-twin-a")
        assert lab_objects("t2-twin-a") == ([], [])
        assert all(lab_objects("t2-twin-b"))
        assert ping_many(second, both) == {("h1", a) for a in h2}, "the other lab keeps running"


def test_impairments_without_netem_stop_up_unless_allowed(kernel_probe):
    """On a kernel without netem, delay/jitter/loss stop 'up' (naming the links and the fix)
    and nothing is left; with the opt-in the lab comes up and records what was dropped."""
    if kernel_probe.netem:
        pytest.skip(f"kernel {kernel_probe.kernel} has netem (probe: netem=yes): nothing to refuse")
    from mptcpdock.errors import KernelFeatureError
    lab = "t2-nonetem"
    apply.down(lab)
    topology = load_topology(EX1)
    topology.name = lab
    with pytest.raises(KernelFeatureError) as caught:
        lab_api.bring_up(topology)
    message = str(caught.value)
    assert "h1-r1, r1-r2, r2-h2, r2-h2-2" in message and "sch_netem" in message
    assert "--allow-no-impairments" in message
    assert lab_objects(lab) == ([], [])
