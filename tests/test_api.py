"""The Python API and the NeST layer, without Docker: the models they build, the YAML they
write, and the NeST semantics they keep (or fix)."""

from __future__ import annotations

import copy
import difflib
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mptcpdock.api import Lab, capturing, env_duration, positional_interfaces, same_network, topology_of_script
from mptcpdock.cli import main
from mptcpdock.compat.nest import config
from mptcpdock.compat.nest.experiment import Experiment, Flow
from mptcpdock.compat.nest.experiment.experiment import sanitize_lab_name
from mptcpdock.compat.nest.topology import Node, Router, connect
from mptcpdock.compat.nest.topology.address_helper import AddressHelper
from mptcpdock.compat.nest.topology.interface import DEFAULT_ENDPOINT_FLAGS
from mptcpdock.compat.nest.topology.network import Network
from mptcpdock.errors import TopologyError
from mptcpdock.topology.loader import load_topology, load_topology_text, topology_to_yaml
from mptcpdock.topology.model import Topology
from mptcpdock.topology.validate import validate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TOPOLOGIES = ROOT / "topologies"
SEED_TWINS = {
    "mptcp-default-configuration": "mptcp-default-configuration.yaml",
    "mptcp-helper": "mptcp-helper.yaml",
    "mptcp-mega-dumbbell": "mptcp-mega-dumbbell.yaml",
}


@pytest.fixture(autouse=True)
def _fresh(fresh_nest_session) -> None:
    """Every test starts from an empty NeST session (conftest)."""


def _diff(a: Topology, b: Topology) -> str:
    return "".join(difflib.unified_diff(topology_to_yaml(a).splitlines(True), topology_to_yaml(b).splitlines(True),
                                        "NeST script", "YAML twin"))


def _comparable(topology: Topology) -> Topology:
    """The model with what only says where it came from blanked."""
    out = copy.deepcopy(topology)
    out.source, out.locations = None, {}
    return out


def _without_measurement_requests(topology: Topology) -> Topology:
    """The model without what a twin may add for the experiments (a flow's ``baseline``:
    single-path TCP runs after the flow, for comparison). NeST scripts have no such thing;
    it changes neither the network nor the traffic the script describes."""
    out = copy.deepcopy(topology)
    for flow in out.flows:
        flow.baseline = False
    return out


# -- the seed scripts and their YAML twins -------------------------------------------------------

@pytest.mark.parametrize("example", sorted(SEED_TWINS))
def test_nest_script_builds_the_model_of_its_yaml_twin(example: str) -> None:
    from_script = topology_of_script(EXAMPLES / f"{example}.py")
    from_yaml = _without_measurement_requests(load_topology(TOPOLOGIES / SEED_TWINS[example]))
    a, b = positional_interfaces(from_script), positional_interfaces(from_yaml)
    assert a == b, _diff(a, b)


@pytest.mark.parametrize("example", sorted(SEED_TWINS))
def test_examples_differ_from_the_seeds_only_in_their_imports(example: str) -> None:
    # CI and developers have the project's shared/ folder beside the repository.
    seed = ROOT.parent / "shared" / "seeds" / f"{example}.py"
    if not seed.exists():
        pytest.skip(f"seed {seed} is not beside this checkout (../shared/seeds)")
    ours = (EXAMPLES / f"{example}.py").read_text().splitlines()
    theirs = seed.read_text().splitlines()
    assert len(ours) == len(theirs)
    changed = [(a, b) for a, b in zip(theirs, ours) if a != b]
    assert changed and all(a.startswith("from nest") and b.startswith("from mptcpdock.compat.nest") for a, b in changed)
    assert all(b == a.replace("from nest", "from mptcpdock.compat.nest", 1) for a, b in changed)


def test_the_comparison_sees_a_changed_route() -> None:
    from_script = topology_of_script(EXAMPLES / "mptcp-default-configuration.py")
    twin = load_topology(TOPOLOGIES / "mptcp-default-configuration.yaml")
    twin.nodes["r1"].routes[1].dev = "etr1a"
    assert not same_network(from_script, twin)
    twin = load_topology(TOPOLOGIES / "mptcp-default-configuration.yaml")
    twin.links[3].shaping.rate = 20_000_000
    assert not same_network(from_script, twin)


def test_nest_interface_names_follow_nest() -> None:
    model = topology_of_script(EXAMPLES / "mptcp-default-configuration.py")
    names = [(link.a.interface, link.b.interface) for link in model.links]
    assert names == [("h1-r1-0", "r1-h1-0"), ("r1-r2-0", "r2-r1-0"), ("r2-h2-0", "h2-r2-0"), ("r2-h2-1", "h2-r2-1")]
    assert model.name == "example-mptcp"


def test_mptcp_helper_configures_what_nest_documents() -> None:
    model = topology_of_script(EXAMPLES / "mptcp-helper.py")
    h1, h2 = model.nodes["h1"].mptcp, model.nodes["h2"].mptcp
    # h1 has 1 interface and h2 has 2: subflows = min(5, 1*2 - 1), add_addr = min(5, max(1, 2))
    assert (h1.subflows, h1.add_addr_accepted) == (h2.subflows, h2.add_addr_accepted) == (1, 2)
    assert [(e.interface, e.flags) for e in h1.endpoints] == [("h1-r1-0", ("subflow", "fullmesh"))]
    assert [(e.interface, e.flags) for e in h2.endpoints] == [("h2-r2-0", ("signal",)), ("h2-r2-1", ("signal",))]
    assert h2.monitor and not h1.monitor
    flow = model.flows[0]
    assert (flow.src_address, flow.dst_address, flow.duration, flow.protocol, flow.congestion, flow.tool) == (
        "10.0.0.1", "192.168.10.2", 60.0, "mptcp", "cubic", "iperf3")


# -- YAML round trips ----------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(TOPOLOGIES.glob("*.yaml")), ids=lambda p: p.name)
def test_yaml_model_yaml_round_trips(path: Path) -> None:
    model = load_topology(path)
    text = topology_to_yaml(model)
    again = load_topology_text(text, source=str(path))
    assert _comparable(again) == _comparable(model)
    assert topology_to_yaml(again) == text  # a fixed point after one normalisation


@pytest.mark.parametrize("path", sorted(TOPOLOGIES.glob("*.yaml")), ids=lambda p: p.name)
def test_resolved_yaml_round_trips(path: Path) -> None:
    resolved = validate(load_topology(path))
    again = validate(load_topology_text(topology_to_yaml(resolved)))
    assert _comparable(again) == _comparable(resolved)


@pytest.mark.parametrize("example", sorted(SEED_TWINS))
def test_exported_nest_script_round_trips(example: str) -> None:
    model = topology_of_script(EXAMPLES / f"{example}.py")
    again = load_topology_text(topology_to_yaml(model))
    assert _comparable(again) == _comparable(model)


# -- the native API ------------------------------------------------------------------------------

def build_ex1(name: str = "ex1", baseline: bool = False) -> Lab:
    lab = Lab(name)
    h1, h2 = lab.host("h1"), lab.host("h2")
    r1, r2 = lab.router("r1"), lab.router("r2")
    lab.link(h1, r1, subnet="10.0.0.0/24", rate="100mbit", delay="10ms", interfaces=("eth1a", "etr1a"))
    lab.link(r1, r2, subnet="12.0.0.0/24", rate="100mbit", delay="10ms", interfaces=("etr1b", "etr2a"))
    lab.link(r2, h2, subnet="192.168.10.0/24", rate="10mbit", delay="10ms", interfaces=("etr2b", "eth2a"))
    lab.link(r2, "h2:eth2b", subnet="192.168.11.0/24", rate="10mbit", delay="10ms", interfaces=("etr2c", None))
    h1.route("default", dev="eth1a")
    r1.route("192.168.10.0/24", dev="etr1b").route("192.168.11.0/24", dev="etr1b")
    r2.route("10.0.0.0/24", dev="etr2a")
    h2.route("10.0.0.0/24", dev="eth2a").route("10.0.0.0/24", dev="eth2b")
    h1.mptcp(subflows=1, add_addr_accepted=1, endpoints={"eth1a": ["subflow"]})
    h2.mptcp(subflows=1, add_addr_accepted=1, endpoints={"eth2b": "signal"}, monitor=True)
    lab.flow(h1, h2, dst_address="192.168.10.2", src_address="10.0.0.1", start=0, stop=60, congestion="cubic",
             baseline=baseline)
    return lab


def test_native_api_builds_exactly_the_yaml_model() -> None:
    twin = load_topology(TOPOLOGIES / "mptcp-default-configuration.yaml")
    lab = build_ex1(baseline=twin.flows[0].baseline)
    assert _comparable(lab.topology) == _comparable(twin)


def test_native_api_to_yaml_round_trips_and_resolves() -> None:
    lab = build_ex1()
    assert _comparable(load_topology_text(lab.to_yaml())) == _comparable(lab.topology)
    resolved = load_topology_text(lab.to_yaml(resolved=True))
    assert resolved.links[3].b.address == "192.168.11.2" and resolved.flows[0].port == 5201


def test_native_api_handles_resolve_names_and_addresses() -> None:
    lab = Lab("api-handles")
    a, b, r = lab.host("a1"), lab.host("b1"), lab.router("r1")
    left = lab.link(a, r, rate="10mbit")
    right = lab.link(r, b, subnet="10.9.0.0/24", egress={"r1": {"rate": "5mbit"}})
    assert (left.a.name, left.b.name, left.subnet, left.a.address) == ("eth0", "eth0", "10.0.0.0/24", "10.0.0.1")
    assert right.interface("b1").address == "10.9.0.2" and right.name == "r1-b1"
    a.route(right.b, dev=left.a)  # to b1's subnet, out of a1's interface on the left link
    assert a.model.routes[-1].to == "10.9.0.0/24" and a.model.routes[-1].dev == "eth0"
    assert lab.resolved().links[1].shaping_from("r1").rate == 5_000_000
    with pytest.raises(TopologyError, match="needs that link's subnet"):
        b.route(left)


def test_native_api_errors_name_the_script_line() -> None:
    lab = Lab("api-errors")
    lab.host("h1")
    lab.link("h1", "nobody")  # the line validation will name
    line = test_native_api_errors_name_the_script_line.__code__.co_firstlineno + 3
    with pytest.raises(TopologyError) as caught:
        lab.resolved()
    assert caught.value.line == line and caught.value.source == __file__
    with pytest.raises(TopologyError, match="not a rate"):
        lab.link("h1", "h1", rate="fast")


def test_up_and_run_stop_before_docker_while_capturing() -> None:
    lab = build_ex1("api-capture")
    with capturing() as captured:
        with pytest.raises(BaseException) as stopped:
            lab.up()
    assert type(stopped.value).__name__ == "ExportStop"
    assert captured and captured[0] == lab.topology


# -- NeST semantics, minus NeST's bugs -----------------------------------------------------------

def _two_routers() -> tuple[Node, Node, Router, Router]:
    h1, h2, r1, r2 = Node("h1"), Node("h2"), Router("r1"), Router("r2")
    return h1, h2, r1, r2


def test_default_endpoint_flags_are_accepted_by_the_kernel() -> None:
    assert "signal" in DEFAULT_ENDPOINT_FLAGS and "fullmesh" not in DEFAULT_ENDPOINT_FLAGS
    h1, _, r1, _ = _two_routers()
    eth, _ = connect(h1, r1, network=Network("10.1.0.0/24"))
    with pytest.raises(TopologyError, match="signal and fullmesh"):
        eth.enable_mptcp_endpoint(["signal", "fullmesh"])
    eth.enable_mptcp_endpoint()
    assert h1.ref.model.mptcp.endpoints[0].flags == DEFAULT_ENDPOINT_FLAGS
    with pytest.raises(TopologyError, match="already is an MPTCP endpoint"):
        eth.enable_mptcp_endpoint(["subflow"])


def test_enable_mptcp_flushes_endpoints_like_nest() -> None:
    h1, _, r1, _ = _two_routers()
    eth, _ = connect(h1, r1, network=Network("10.1.0.0/24"))
    AddressHelper.assign_addresses()
    eth.enable_mptcp_endpoint(["subflow"])
    h1.enable_mptcp()
    assert h1.ref.model.mptcp.endpoints == [] and h1.ref.model.mptcp.enabled
    h1.disable_mptcp()
    assert not h1.is_mptcp


def test_routes_addresses_and_shaping_map_onto_the_model() -> None:
    h1, h2, r1, _ = _two_routers()
    (eth1a, etr1a) = connect(h1, r1, network=Network("10.0.0.0/24"))
    (etr1b, eth2a) = connect(r1, h2, network=Network("10.0.1.0/24"))
    AddressHelper.assign_addresses()
    assert (str(eth1a.get_address()), str(etr1a.get_address()), str(eth2a.get_address())) == (
        "10.0.0.1/24", "10.0.0.2/24", "10.0.1.2/24")
    h1.add_route("DEFAULT", eth1a)
    h2.add_route(eth1a.get_address(), eth2a)
    h2.add_route("10.5.0.0/16", eth2a, next_hop_addr="10.0.1.1")
    with pytest.raises(TopologyError, match="not an interface of node"):
        h1.add_route("DEFAULT", eth2a)
    eth1a.set_attributes("10mbit", "5ms")
    etr1a.set_attributes("10mbit", "5ms")
    etr1b.set_attributes("20mbit", "1ms")
    with pytest.raises(TopologyError, match="qdisc"):
        eth2a.set_attributes("20mbit", "1ms", "pie")
    exp = Experiment("My NeST Experiment!")
    flow = Flow(h1, h2, eth2a.get_address(), 0, 30, 2)
    exp.add_tcp_flow(flow, tool="iperf3")
    model = exp.topology()
    assert model.name == "my-nest-experiment"
    assert [(r.to, r.dev, r.via) for r in model.nodes["h2"].routes] == [
        ("10.0.0.0/24", "h2-r1-0", None), ("10.5.0.0/16", "h2-r1-0", "10.0.1.1")]
    assert model.nodes["h1"].routes[0].to == "default"
    assert model.links[0].shaping.rate == 10_000_000 and model.links[0].egress == {}  # both ends: one value
    assert model.links[1].egress["r1"].rate == 20_000_000 and "h2" not in model.links[1].egress
    assert (model.flows[0].src_address, model.flows[0].streams, model.flows[0].protocol) == ("10.0.0.1", 2, "tcp")
    validate(model)


def test_helper_refuses_hosts_without_a_second_path() -> None:
    h1, h2, r1, _ = _two_routers()
    (eth1a, _) = connect(h1, r1, network=Network("10.0.0.0/24"))
    (_, eth2a) = connect(r1, h2, network=Network("10.0.1.0/24"))
    AddressHelper.assign_addresses()
    with pytest.raises(TopologyError, match="multihomed and multiaddressed"):
        Flow.setup_mptcp_connection(eth1a, eth2a, 0, 10)


def test_unsupported_nest_calls_raise_instead_of_being_ignored() -> None:
    h1, h2, r1, _ = _two_routers()
    (eth1a, _) = connect(h1, r1, network=Network("10.0.0.0/24"))
    (_, eth2a) = connect(r1, h2, network=Network("10.0.1.0/24"))
    with pytest.raises(TopologyError, match="no address yet"):
        eth1a.get_address()
    AddressHelper.assign_addresses()
    exp = Experiment("x")
    flow = Flow(h1, h2, eth2a.get_address(), 0, 10, 1)
    with pytest.raises(TopologyError, match="tool 'ping'"):
        exp.add_mptcp_flow(flow, tool="ping")
    with pytest.raises(TopologyError, match="not supported"):
        exp.add_mptcp_flow(flow, tool="iperf3", client_options={"port_nos": [1234]})
    with pytest.raises(TopologyError, match="already holds a link"):
        net = Network("10.7.0.0/24")
        connect(h1, r1, network=net)
        connect(h2, r1, network=net)


def test_config_accepts_nest_keys_and_trace_in_any_case() -> None:
    config.set_value("log_level", "trace")
    assert config.trace_enabled() and config.get_value("log_level") == "TRACE"
    config.set_value("assign_random_names", False)
    with pytest.raises(ValueError, match="does not exist"):
        config.set_value("show_mptcp_checklists", True)
    with pytest.raises(ValueError, match="should be of type"):
        config.set_value("show_mptcp_checklist", "yes")
    with pytest.raises(ValueError):
        config.set_value("log_level", "chatty")


def test_lab_names_from_experiments(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sanitize_lab_name("example-mptcp") == "example-mptcp"
    assert sanitize_lab_name("__Weird  Name: with a very long tail!!") == "weird-name-with-a-very-l"
    monkeypatch.setenv("MPTCPDOCK_LAB", "nest-ex1")
    assert topology_of_script(EXAMPLES / "mptcp-default-configuration.py").name == "nest-ex1"


def test_flow_duration_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_duration() is None
    monkeypatch.setenv("MPTCPDOCK_FLOW_DURATION", "10")
    assert env_duration() == 10.0
    monkeypatch.setenv("MPTCPDOCK_FLOW_DURATION", "1500ms")
    assert env_duration() == 1.5
    monkeypatch.setenv("MPTCPDOCK_FLOW_DURATION", "soon")
    with pytest.raises(TopologyError, match="MPTCPDOCK_FLOW_DURATION"):
        env_duration()


def test_script_errors_point_at_the_script_line(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text(textwrap.dedent("""\
        from mptcpdock.compat.nest.topology import *
        from mptcpdock.compat.nest.experiment import *
        from mptcpdock.compat.nest.topology.network import Network
        from mptcpdock.compat.nest.topology.address_helper import AddressHelper
        h1 = Node("h1")
        r1 = Router("r1")
        (eth1a, etr1a) = connect(h1, r1, network=Network("10.0.0.0/24"))
        AddressHelper.assign_addresses()
        h1.set_mptcp_parameters(max_subflows=9, max_add_addr_accepted=1)
        exp = Experiment("broken")
        try:
            exp.run()
        except Exception:
            pass  # a script's own except clause does not swallow the export stop
        """))
    model = topology_of_script(script)
    with pytest.raises(TopologyError) as caught:
        validate(model)
    assert caught.value.source == str(script) and caught.value.line == 9
    assert "outside the kernel's range" in str(caught.value)


# -- mptcpdock export ----------------------------------------------------------------------------

def test_export_command_normalises_yaml_and_exports_scripts(tmp_path: Path) -> None:
    runner = CliRunner()
    source = TOPOLOGIES / "mptcp-helper.yaml"
    result = runner.invoke(main, ["export", str(source)])
    assert result.exit_code == 0, result.output
    assert _comparable(load_topology_text(result.output)) == _comparable(load_topology(source))
    out = tmp_path / "ex3.yaml"
    result = runner.invoke(main, ["export", str(EXAMPLES / "mptcp-mega-dumbbell.py"), "-o", str(out), "--resolved",
                                  "--name", "nest-ex3"])
    assert result.exit_code == 0, result.output
    exported = load_topology(out)
    assert exported.name == "nest-ex3" and exported.flows[1].port == 5202
    assert same_network(exported, load_topology(TOPOLOGIES / "mptcp-mega-dumbbell.yaml"))
    bad = tmp_path / "nothing.py"
    bad.write_text("x = 1\n")
    result = runner.invoke(main, ["export", str(bad)])
    assert result.exit_code == 1 and "no lab" in result.output


def test_export_of_native_api_scripts(tmp_path: Path) -> None:
    body = textwrap.dedent("""\
        from mptcpdock.api import Lab
        lab = Lab("api-script")
        a, b = lab.host("a1"), lab.host("b1")
        lab.link(a, b, rate="10mbit")
        lab.flow(a, b, duration=5)
        """)
    defines = tmp_path / "defines.py"
    defines.write_text(body)
    runs = tmp_path / "runs.py"
    runs.write_text(body + "print('chatter')\nresult = lab.run()\nraise SystemExit('not reached')\n")
    for script in (defines, runs):
        model = topology_of_script(script)
        assert model.name == "api-script" and [f.dst for f in model.flows] == ["b1"]
    result = CliRunner().invoke(main, ["export", str(runs)])
    assert result.exit_code == 0 and load_topology_text(result.stdout).links[0].shaping.rate == 10_000_000
