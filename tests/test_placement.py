"""Engines and placement (issue 14), pure: the YAML keys, validation's one-line errors,
automatic placement (balanced, few crossing links), the plan's overlay links and MTU lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mptcpdock.errors import TopologyError
from mptcpdock.plan.commands import make_plan
from mptcpdock.topology.loader import load_topology, load_topology_text, topology_to_yaml
from mptcpdock.topology.model import OVERLAY_MTU, EngineSpec, Link, LinkEnd, Node, Topology
from mptcpdock.topology.placement import crossing_links, place
from mptcpdock.topology.validate import validate

EX1 = Path(__file__).resolve().parent.parent / "topologies" / "mptcp-default-configuration.yaml"
TWO = "engines:\n  local: {}\n  vm: {host: tcp://127.0.0.1:2375}\n"


def ex1(extra_top: str = "", **node_engines: str) -> Topology:
    text = EX1.read_text().replace("name: ex1\n", "name: ex1\n" + extra_top)
    for node, engine in node_engines.items():
        kind = "router" if node.startswith("r") else "host"
        text = text.replace(f"  {node}:\n    kind: {kind}\n", f"  {node}:\n    kind: {kind}\n    engine: {engine}\n")
    return load_topology_text(text, source="ex1.yaml")


def test_default_is_one_engine_of_bridges_without_mtu() -> None:
    plan = make_plan(validate(load_topology(EX1)))
    assert all(link.driver == "bridge" and not link.crosses for link in plan.links)
    assert plan.engines == [None] and plan.placement_lines() == []
    assert not any("mtu" in line for node in plan.nodes.values() for line in node.ip_lines())


def test_overlays_all_pins_the_overlay_mtu_on_every_interface() -> None:
    topo = validate(ex1("overlays: all\n"))
    assert topo.mtu == OVERLAY_MTU
    plan = make_plan(topo)
    assert [link.driver for link in plan.links] == ["overlay"] * 4
    for node in plan.nodes.values():
        for intf in node.interfaces:
            assert f"link set dev {intf.name} mtu 1450" in node.ip_lines()
    assert "4 overlay networks, 0 bridges" in "\n".join(plan.placement_lines())


def test_manual_split_crosses_one_link_and_round_trips() -> None:
    topo = validate(ex1(TWO, h2="vm", r2="vm"))
    assert {name: node.engine for name, node in topo.nodes.items()} == {"h1": "local", "h2": "vm", "r1": "local",
                                                                         "r2": "vm"}
    plan = make_plan(topo)
    assert [(link.name, link.driver) for link in plan.links if link.crosses] == [("r1-r2", "overlay")]
    assert [link.driver for link in plan.links].count("bridge") == 3
    text = "\n".join(plan.placement_lines())
    assert "engine vm [tcp://127.0.0.1:2375]: 2 nodes: h2 r2" in text and "overlay r1-r2: r1@local <-> r2@vm" in text
    again = validate(load_topology_text(topology_to_yaml(topo)))
    assert again.engines == topo.engines and again.mtu == 1450
    assert {n: node.engine for n, node in again.nodes.items()} == {n: node.engine for n, node in topo.nodes.items()}


def test_auto_placement_balances_and_cuts_one_link_of_ex1() -> None:
    topo = validate(ex1("placement: auto\n" + TWO))
    engines = [node.engine for node in topo.nodes.values()]
    assert sorted(engines) == ["local", "local", "vm", "vm"]
    assert sum(topo.crosses(link) for link in topo.links) == 1  # r1-r2, the only one-link cut


def test_auto_placement_keeps_pinned_nodes() -> None:
    topo = validate(ex1("placement: auto\n" + TWO, h1="vm"))
    assert topo.nodes["h1"].engine == "vm" and topo.nodes["r1"].engine == "vm"


def chain(n: int, engines: int) -> Topology:
    topo = Topology(name="chain", placement="auto",
                    engines={f"e{i}": EngineSpec(f"e{i}", host=f"tcp://10.0.0.{i}:2375") for i in range(engines)})
    for i in range(n):
        topo.nodes[f"n{i}"] = Node(f"n{i}", kind="router")
    # a chain with a few chords: the best cut of k balanced parts is k-1 chain links
    for i in range(n - 1):
        topo.links.append(Link(LinkEnd(f"n{i}"), LinkEnd(f"n{i + 1}")))
    return topo


@pytest.mark.parametrize("n,k", [(100, 2), (30, 3), (7, 2)])
def test_auto_placement_of_a_chain_is_balanced_with_k_minus_one_cut(n: int, k: int) -> None:
    topo = validate(chain(n, k))
    placement = {name: node.engine for name, node in topo.nodes.items()}
    loads = [list(placement.values()).count(engine) for engine in topo.engines]
    assert max(loads) - min(loads) <= 1
    assert crossing_links(topo, placement) == k - 1
    assert place(chain(n, k)) == place(chain(n, k))  # deterministic


@pytest.mark.parametrize("change,field,words", [
    ("placement: best\n", "placement", "write 'manual' or 'auto'"),
    ("overlays: some\n", "overlays", "write 'crossing'"),
    ("engines:\n  a: {host: 127.0.0.1:2375}\n", "engines.a.host", "tcp://127.0.0.1:2375"),
    ("engines:\n  a: {host: tcp://x:1, context: c}\n", "engines.a", "give one of them"),
    ("engines:\n  a: {}\n  b: {}\n", "engines.b", "give one of them a host: or context:"),
    ("mtu: 9500\n", "mtu", "576..9000"),
    ("overlays: all\nmtu: 1500\n", "mtu", "at most 1450"),
    ("engines:\n  a: {wat: 1}\n", "engines.a.wat", "use one of: context, host"),
])
def test_bad_engine_settings_name_field_line_and_fix(change: str, field: str, words: str) -> None:
    with pytest.raises(TopologyError) as info:
        validate(ex1(change))
    message = str(info.value)
    assert info.value.field == field and words in message and "ex1.yaml:" in message


def test_unknown_or_undeclared_engine_of_a_node() -> None:
    with pytest.raises(TopologyError, match=r"ex1.yaml:\d+.*nodes.h2.engine.*unknown engine 'mars'.*local, vm"):
        validate(ex1(TWO, h2="mars"))
    with pytest.raises(TopologyError, match=r"nodes.h2.engine.*declares no engines.*engines: \{vm: "):
        validate(ex1("", h2="vm"))


def test_a_smaller_mtu_is_kept() -> None:
    topo = validate(ex1("overlays: all\nmtu: 1400\n"))
    assert topo.mtu == 1400
    assert "link set dev eth1a mtu 1400" in make_plan(topo).nodes["h1"].ip_lines()


def test_one_declared_engine_takes_every_node() -> None:
    text = textwrap.dedent("""\
        name: t
        engines: {one: {context: vmctx}}
        nodes: {na: {engine: one}, nb: {}}
        links: [{endpoints: [na, nb]}]
    """)
    topo = validate(load_topology_text(text))
    assert topo.nodes["nb"].engine == "one" and topo.mtu is None  # one engine: no crossing, no overlay


def test_a_lab_on_two_engines_splits_per_engine_without_docker() -> None:
    from mptcpdock.runtime import apply
    plan = make_plan(validate(ex1(TWO, h2="vm", r2="vm")))
    where = apply.lab_engines(plan)
    assert where.multi and list(where.engines) == ["local", "vm"]
    assert where.engines["local"] is None  # {}: the engine the environment reaches
    assert where.engines["vm"].host == "tcp://127.0.0.1:2375" and where.engines["vm"].chosen_by == "engines.vm.host"
    manager = apply.LabEngines(where.engines, where.specs, "local")
    nodes, links = apply.split(plan, manager)
    assert nodes == {"h1": "local", "r1": "local", "r2": "vm", "h2": "vm"}
    # bridges on their ends' engine; the crossing link an overlay, created on the manager
    assert links == {"h1-r1": "local", "r1-r2": "local", "r2-h2": "vm", "r2-h2-2": "vm"}
    assert [link.driver for link in plan.links] == ["bridge", "overlay", "bridge", "bridge"]
    # the vm is the manager: the overlay is created there
    assert apply.split(plan, apply.LabEngines(where.engines, where.specs, "vm"))[1]["r1-r2"] == "vm"
    # one engine: everything on the environment's, as before
    single = make_plan(validate(load_topology(EX1)))
    assert apply.lab_engines(single).multi is False
    assert set(apply.split(single, apply.lab_engines(single))[1].values()) == {None}
    with pytest.raises(Exception, match="no engine of the lab is its swarm manager"):
        apply.split(plan, where)
    # a lab across engines pins the overlay MTU on every interface, bridges included
    assert all(f"link set dev {intf.name} mtu 1450" in node.ip_lines()
               for node in plan.nodes.values() for intf in node.interfaces)


class FakeEngines:
    """docker_api's engine-facing calls, answered per engine (the one ``using`` selects)."""

    def __init__(self, swarm: dict[str, tuple[str, str]], members: set[str]) -> None:
        self.swarm, self.members, self.calls = swarm, members, []

    def name(self) -> str:
        from mptcpdock.runtime import docker_api
        current = docker_api.current()
        return "local" if current is None else current.host

    def patch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from mptcpdock.runtime import docker_api
        from mptcpdock.runtime.engine import EngineIdentity
        fake = self

        class Api:
            def nodes(self) -> list[dict]:
                return [{"ID": member} for member in fake.members]

        class Client:
            api = Api()

        monkeypatch.setattr(docker_api, "engine_identity",
                            lambda: EngineIdentity(id=(fake.swarm[fake.name()] + ("ID-" + fake.name(),))[2], name="default",
                                                   host=fake.name(), api_version="1.41"))
        monkeypatch.setattr(docker_api, "engine_info", lambda: {"Swarm": {"NodeID": fake.swarm[fake.name()][1]}})
        monkeypatch.setattr(docker_api, "swarm_role", lambda: fake.swarm[fake.name()][0])
        monkeypatch.setattr(docker_api, "client", lambda on=None: Client())
        monkeypatch.setattr(docker_api, "lab_containers", lambda lab=None: fake.calls.append(("containers", fake.name())) or [])
        monkeypatch.setattr(docker_api, "lab_networks", lambda lab=None: fake.calls.append(("networks", fake.name())) or [])
        monkeypatch.setattr(docker_api, "image_exists", lambda image: True)


VM = "tcp://127.0.0.1:2375"


def test_preflight_on_two_engines_finds_the_manager_and_checks_every_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from mptcpdock.runtime import apply
    fake = FakeEngines({"local": ("manager", "N1"), VM: ("worker", "N2")}, {"N1", "N2"})
    fake.patch(monkeypatch)
    where = apply.preflight(make_plan(validate(ex1(TWO, h2="vm", r2="vm"))))
    assert where.manager == "local"
    assert {engine for _, engine in fake.calls} == {"local", VM}  # the lab looked for on both


@pytest.mark.parametrize("swarm, members, message", [
    ({"local": ("inactive", ""), VM: ("inactive", "")}, set(),
     r"links r1-r2 of lab 'ex1' cross engines, but none of its engines \(local: swarm inactive, vm: swarm inactive\) "
     r"is a swarm manager \(fix: .*--swarm-link"),
    ({"local": ("manager", "N1"), VM: ("inactive", "")}, {"N1"},
     r"engine vm \(tcp://127.0.0.1:2375\) of lab 'ex1' is not a node of the swarm that engine local manages "
     r"\(swarm: inactive\).*fix: 'DOCKER_HOST=tcp://127.0.0.1:2375 mptcpdock swarm join"),
    ({"local": ("manager", "N1"), VM: ("worker", "N9")}, {"N1"}, r"is not a node of the swarm"),
    ({"local": ("manager", "N1", "ID-1"), VM: ("manager", "N1", "ID-1")}, {"N1"},
     r"engines 'local' and 'vm' of lab 'ex1' are the same Docker engine"),
])
def test_preflight_on_two_engines_refuses_before_creating_anything(
        monkeypatch: pytest.MonkeyPatch, swarm: dict, members: set, message: str) -> None:
    from mptcpdock.errors import RuntimeFailure
    from mptcpdock.runtime import apply
    FakeEngines(swarm, members).patch(monkeypatch)
    with pytest.raises(RuntimeFailure, match=message):
        apply.preflight(make_plan(validate(ex1(TWO, h2="vm", r2="vm"))))


def test_down_on_two_engines_removes_containers_everywhere_then_networks(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """Containers on both engines before any network; bridges on each; overlays only on the
    manager (a worker lists the overlays its containers use, but cannot remove them)."""
    import threading
    from mptcpdock.runtime import apply, docker_api
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path))
    lock, log = threading.Lock(), []
    objects = {"local": {"containers": ["c1", "c2"], "networks": [("b1", "local"), ("o1", "swarm")]},
               VM: {"containers": ["c3", "c4"], "networks": [("b2", "local"), ("o1", "swarm")]}}

    def here() -> str:
        current = docker_api.current()
        return "local" if current is None else current.host

    def remove_container(cid: str) -> None:
        with lock:
            log.append(("container", here(), cid))
            objects[here()]["containers"].remove(cid)

    def remove_network(nid: str, overlay: bool = False) -> None:
        with lock:
            log.append(("network", here(), nid))
            for engine in objects:  # the manager's removal of an overlay removes it everywhere
                if overlay or engine == here():
                    objects[engine]["networks"] = [n for n in objects[engine]["networks"] if n[0] != nid]

    monkeypatch.setattr(docker_api, "lab_containers", lambda lab=None: [{"Id": c} for c in objects[here()]["containers"]])
    monkeypatch.setattr(docker_api, "lab_networks", lambda lab=None: [
        {"Id": n, "Scope": scope, "Driver": "overlay" if scope == "swarm" else "bridge"}
        for n, scope in objects[here()]["networks"]])
    monkeypatch.setattr(docker_api, "remove_container", remove_container)
    monkeypatch.setattr(docker_api, "remove_network", remove_network)
    where = apply.lab_engines(make_plan(validate(ex1(TWO, h2="vm", r2="vm"))))
    where = apply.LabEngines(where.engines, where.specs, "local")
    assert apply.down("ex1", where=where) == (4, 3)
    kinds = [kind for kind, _, _ in log]
    assert kinds == ["container"] * 4 + ["network"] * 3, log
    assert ("network", VM, "o1") not in log and ("network", "local", "o1") in log and ("network", VM, "b2") in log
    assert objects == {"local": {"containers": [], "networks": []}, VM: {"containers": [], "networks": []}}


def test_the_state_of_a_lab_on_two_engines_sends_each_node_to_its_engine(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    from mptcpdock.runtime import apply, state as state_mod
    from mptcpdock.runtime.engine import OnEngine
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path))
    topology = validate(ex1(TWO, h2="vm", r2="vm"))
    where = apply.lab_engines(make_plan(topology))
    where = apply.LabEngines(where.engines, where.specs, "local")
    state_mod.save_engines_record("ex1", where)  # what up writes first
    assert state_mod.known_labs() == ["ex1"]  # a crashed up is still listed
    found = state_mod.find_engines("ex1")
    assert found is not None and found.manager == "local" and found.engines["vm"].host == VM
    nodes = {name: state_mod.NodeState(container=f"ex1-{name}", container_id=name, interfaces={},
                                       engine=topology.nodes[name].engine) for name in topology.nodes}
    saved = state_mod.new_state(topology, image={}, probe={}, impairments_dropped=False, dropped_links=[],
                                nodes=nodes, networks={}, engines=where.record())
    state_mod.save_state(saved)
    loaded = state_mod.load_state("ex1")
    assert loaded.where().manager == "local"
    h2, h1 = loaded.container("h2"), loaded.container("h1")
    assert isinstance(h2, OnEngine) and h2 == "ex1-h2" and h2.engine.host == VM
    assert not isinstance(h1, OnEngine) and h1 == "ex1-h1"  # the environment's engine: the shared client
    state_mod.delete_state("ex1")
    assert state_mod.known_labs() == [] and state_mod.find_engines("ex1") is None


def test_up_refuses_a_declared_engine_it_does_not_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    from mptcpdock.errors import RuntimeFailure
    from mptcpdock.runtime import apply, docker_api
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    docker_api.select_engine(None)
    try:
        plan = make_plan(validate(ex1("engines:\n  vm: {host: tcp://127.0.0.1:2375}\n")))
        with pytest.raises(RuntimeFailure, match=r"engine 'vm' \(tcp://127.0.0.1:2375\).*fix: DOCKER_HOST=tcp://127"):
            apply.preflight(plan)
    finally:
        monkeypatch.undo()
        docker_api.select_engine(None)


def test_the_python_api_places_nodes_like_the_yaml() -> None:
    from mptcpdock.api import Lab
    lab = Lab("pysplit", placement="auto")
    local, vm = lab.engine("local"), lab.engine("vm", host="tcp://127.0.0.1:2375")
    h1, r1 = lab.host("h1"), lab.router("r1", engine=local)
    r2, h2 = lab.router("r2"), lab.host("h2", engine=vm)
    lab.link(h1, r1)
    lab.link(r1, r2)
    lab.link(r2, h2)
    lab.link(r2, h2)
    topo = validate(lab.topology)
    assert {n: node.engine for n, node in topo.nodes.items()} == {"h1": "local", "r1": "local", "r2": "vm",
                                                                  "h2": "vm"}
    text = lab.to_yaml()
    assert "engines:" in text and "placement: auto" in text and "engine: vm" in text
    assert validate(load_topology_text(text)).nodes["r2"].engine == "vm"


def test_plan_command_prints_the_placement(tmp_path: Path) -> None:
    from click.testing import CliRunner
    from mptcpdock.cli.main import main
    path = tmp_path / "split.yaml"
    path.write_text(topology_to_yaml(ex1(TWO, h2="vm", r2="vm")))
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 of 4 links cross engines; 1 overlay networks, 3 bridges" in result.output
    assert "ip link set dev etr2a mtu 1450" in result.output


def test_status_counts_a_split_labs_nodes_per_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mptcpdock.runtime import apply, docker_api, lab as lab_api, state as state_mod
    from mptcpdock.runtime.engine import EngineIdentity
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path))
    topology = validate(ex1(TWO, h2="vm", r2="vm"))
    where = apply.lab_engines(make_plan(topology))
    nodes = {name: state_mod.NodeState(container=f"ex1-{name}", container_id=name, interfaces={},
                                       engine=topology.nodes[name].engine) for name in topology.nodes}
    state_mod.save_state(state_mod.new_state(topology, image={}, probe={}, impairments_dropped=True,
                                             dropped_links=["h1-r1"], nodes=nodes, networks={},
                                             engines=apply.LabEngines(where.engines, where.specs, "local").record()))
    up, down = {"State": "running", "Labels": {"io.mptcpdock.lab": "ex1"}}, {"State": "exited", "Labels": {}}
    running = {None: [up, up], VM: [up, down]}

    def lab_containers(lab=None):
        current = docker_api.current()
        return running[None if current is None else current.host]

    monkeypatch.setattr(docker_api, "lab_containers", lab_containers)
    monkeypatch.setattr(docker_api, "lab_networks", lambda lab=None: [])
    monkeypatch.setattr(docker_api, "engine_identity", lambda: EngineIdentity("ID-1", "default", "local", "1.41"))
    [row] = lab_api.status_rows()
    assert row[0] == "ex1" and row[4] == 3
    assert row[5] == "impairments dropped; engines local 2/2, vm 1/2"
    assert lab_api.running_containers(state_mod.load_state("ex1")) == 3
