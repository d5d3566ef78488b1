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


def test_up_refuses_a_lab_on_two_engines_before_touching_docker() -> None:
    from mptcpdock.errors import RuntimeFailure
    from mptcpdock.runtime import apply
    plan = make_plan(validate(ex1(TWO, h2="vm", r2="vm")))
    with pytest.raises(RuntimeFailure, match=r"2 engines \(local, vm; crossing links: r1-r2\).*docs/multi-host.md"):
        apply.preflight(plan)


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
