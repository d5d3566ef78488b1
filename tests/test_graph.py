"""``mptcpdock graph``: the three seed topologies as Mermaid, DOT and PNG, checked for what a
reader needs (every node, interface, address, link label and endpoint flag is there) and for
legibility (Graphviz's own layout: no two boxes overlap, the picture is not absurdly wide)."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import TOPOLOGIES
from mptcpdock.cli import main
from mptcpdock.report import graph
from mptcpdock.topology.loader import load_topology
from mptcpdock.topology.validate import validate

SEEDS = {"ex1": "mptcp-default-configuration.yaml", "ex2": "mptcp-helper.yaml", "ex3": "mptcp-mega-dumbbell.yaml"}


def seed(name: str):
    return validate(load_topology(TOPOLOGIES / SEEDS[name]))


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_mermaid_has_every_node_interface_link_and_flag(name: str) -> None:
    topology = seed(name)
    text = graph.to_mermaid(topology)
    lines = text.splitlines()
    assert lines[0].startswith("%% lab ") and lines[1] == "flowchart LR"
    nodes = [line for line in lines if re.match(r"  n\d+[({]", line)]
    assert len(nodes) == len(topology.nodes)
    routers = [line for line in nodes if line.endswith(":::router")]
    assert len(routers) == sum(node.kind == "router" for node in topology.nodes.values())
    assert all(re.match(r'  n\d+\{\{".*"\}\}:::router$', line) for line in routers)  # hexagons
    edges = [line for line in lines if " ---|" in line]
    assert len(edges) == len(topology.links)
    for link in topology.links:
        assert link.subnet in text and f"{link.a.interface} \u2194 {link.b.interface}" in text
        assert f"{link.a.interface} {link.a.address}/" in text and f"{link.b.interface} {link.b.address}/" in text
    for node in topology.nodes.values():
        for endpoint in node.mptcp.endpoints:
            assert f"{endpoint.interface} " in text and f"[{', '.join(endpoint.flags)}]" in text
    assert '"' not in "".join(re.findall(r'"(.*?)"[)}|]', text))  # quotes inside labels are entities


def test_mermaid_and_dot_say_what_ex1_is() -> None:
    text = graph.to_mermaid(seed("ex1"))
    assert 'n1("<b>h2</b> host<br/>eth2a 192.168.10.2/24<br/>eth2b 192.168.11.2/24 [signal]<br/>' \
           'MPTCP limits: subflows 1, add_addr_accepted 1"):::host' in text
    assert 'n3 ---|"etr2c \u2194 eth2b<br/>192.168.11.0/24<br/>10 Mbit/s, 10 ms"| n1' in text
    dot = graph.to_dot(seed("ex2"))
    assert "[subflow, fullmesh]" in dot and "MPTCP limits: subflows 1, add_addr_accepted 2" in dot


def test_per_direction_shaping_and_dropped_impairments_are_shown() -> None:
    topology = validate(load_topology(TOPOLOGIES / SEEDS["ex1"]))
    link = topology.links[0]
    from mptcpdock.topology.model import Shaping
    link.egress = {link.b.node: Shaping(rate=5_000_000)}
    lines = graph.link_lines(link)
    assert lines[1:] == ["h1 \u2192 r1: 100 Mbit/s, 10 ms", "r1 \u2192 h1: 5 Mbit/s, 10 ms"]
    assert graph.link_lines(topology.links[1], dropped=True)[1] == "100 Mbit/s, 10 ms (not applied)"
    assert "no netem on this host" in graph.to_mermaid(topology, dropped=True).splitlines()[0]


def _layout(topology) -> list[tuple[str, float, float, float, float]]:
    """Graphviz's own layout of the picture (dot -Tplain): name, centre x, y, width, height (inches)."""
    plain = subprocess.run(["dot", "-Tplain"], input=graph.to_dot(topology), capture_output=True, text=True,
                           check=True).stdout
    boxes = []
    for line in plain.splitlines():
        if line.startswith("node "):
            parts = re.findall(r'"[^"]*"|\S+', line)
            boxes.append((parts[1].strip('"'), *map(float, parts[2:6])))
    return boxes


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_png_is_legible(name: str, tmp_path: Path) -> None:
    topology = seed(name)
    boxes = _layout(topology)
    assert len(boxes) == len(topology.nodes) + len(topology.links)  # a box per node, a label per link
    for i, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[i + 1:]:
            overlap = abs(ax - bx) < (aw + bw) / 2 and abs(ay - by) < (ah + bh) / 2
            assert not overlap, f"{a} and {b} overlap in the picture of {name}"
    data = graph.render(topology, "png")
    width, height = png_size(data)
    assert 800 < width < 2400 and 150 < height < 1000, (width, height)
    result = CliRunner().invoke(main, ["graph", name, "-o", str(tmp_path / f"{name}.png")])
    assert result.exit_code == 0, result.output
    assert png_size((tmp_path / f"{name}.png").read_bytes()) == (width, height)
    assert result.stderr.startswith(f"wrote {tmp_path / f'{name}.png'} (png, {len(topology.nodes)} nodes")


def test_svg_and_dot_on_stdout_and_format_from_suffix(tmp_path: Path) -> None:
    svg = CliRunner().invoke(main, ["graph", "ex1", "--format", "svg"])
    assert svg.exit_code == 0 and svg.stdout.lstrip().startswith("<?xml") and "192.168.11.2/24" in svg.stdout
    dot = CliRunner().invoke(main, ["graph", str(TOPOLOGIES / SEEDS["ex3"]), "-f", "dot"])
    assert dot.stdout.startswith("graph ex3 {")
    subprocess.run(["dot", "-Tsvg", "-o", str(tmp_path / "x.svg")], input=dot.stdout, text=True, check=True)
    assert CliRunner().invoke(main, ["graph", "ex1", "-o", str(tmp_path / "g.mmd")]).exit_code == 0
    assert (tmp_path / "g.mmd").read_text().splitlines()[1] == "flowchart LR"


def test_bad_requests_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = CliRunner().invoke(main, ["graph", "ex1", "-o", str(tmp_path / "g.txt")])
    assert unknown.exit_code == 1 and unknown.stderr.count("\n") == 1
    assert "cannot tell the format from .txt (fix: give --format mermaid|dot|svg|png" in unknown.stderr

    def missing(*_a, **_k):
        raise graph.graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(graph.graphviz.Graph, "pipe", missing)
    no_dot = CliRunner().invoke(main, ["graph", "ex1", "-f", "png", "-o", str(tmp_path / "g.png")])
    assert no_dot.exit_code == 1 and no_dot.stderr == (
        "error: drawing PNG needs Graphviz's 'dot' program, which is not installed (fix: 'apt-get install "
        "graphviz', or scripts/bootstrap.sh; --format dot and --format mermaid need nothing)\n")
    assert CliRunner().invoke(main, ["graph", "ex1", "-f", "mermaid"]).exit_code == 0  # text needs no dot
