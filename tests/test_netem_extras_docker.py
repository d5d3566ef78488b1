"""AQM leaves and netem extras against this Docker host's kernel: what it lacks is one line
naming the kernel and the qdisc, and nothing is left behind (the VM tier checks the working side:
tests/test_netem_extras_vmhost.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mptcpdock.cli import main
from mptcpdock.runtime import docker_api

pytestmark = [pytest.mark.docker]

TOPOLOGY = """name: {name}
nodes: {{h1: {{}}, h2: {{}}}}
links:
  - endpoints: [h1, h2]
    rate: 10mbit
{extra}
"""


def _up(tmp_path: Path, name: str, extra: str):
    path = tmp_path / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(name=name, extra=extra))
    result = CliRunner().invoke(main, ["up", str(path)])
    CliRunner().invoke(main, ["down", name])
    return result


@pytest.mark.parametrize("kind", ["fq_codel", "cake"])
def test_an_aqm_qdisc_this_kernel_lacks_is_one_line_and_leaves_nothing(kernel_probe, tmp_path: Path, kind: str):
    if kernel_probe.aqm.get(kind):
        pytest.skip(f"kernel {kernel_probe.kernel} has {kind}")
    name = f"t10aqm{kind.replace('_', '')}"
    result = _up(tmp_path, name, f"    qdisc: {kind}")
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    print(lines)
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert f"qdisc {kind} on h1-h2 (h1's egress)" in lines[0] and f"({kernel_probe.kernel}) has no {kind} qdisc" in lines[0]
    assert docker_api.lab_containers(name) == [] and docker_api.lab_networks(name) == []


def test_netem_extras_on_a_kernel_without_netem_are_the_netem_error(kernel_probe, tmp_path: Path):
    if kernel_probe.netem:
        pytest.skip(f"kernel {kernel_probe.kernel} has netem")
    result = _up(tmp_path, "t10corrupt", "    corrupt: 1%\n    duplicate: 1%")
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "links h1-h2 ask for delay, jitter or loss" in lines[0] and kernel_probe.kernel in lines[0], lines
    assert docker_api.lab_containers("t10corrupt") == []
