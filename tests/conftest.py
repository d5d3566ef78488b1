"""Shared fixtures. Tests that need Docker use the real engine and the real node image;
they fail (not skip) when Docker is unreachable, because CI provides it."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import pytest

from mptcpdock import NODE_IMAGE
from mptcpdock.runtime import lab as lab_api
from mptcpdock.topology.loader import load_topology
from mptcpdock.topology.model import Topology

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"


@pytest.fixture(autouse=True)
def _private_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session keeps lab state away from the user's own labs."""
    monkeypatch.setenv("MPTCPDOCK_STATE_DIR", str(tmp_path_factory.getbasetemp() / "state"))


@pytest.fixture()
def fresh_nest_session(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The NeST layer's process-global session (nodes, links, config) empty before and after a
    test, and its environment variables unset."""
    from mptcpdock.compat.nest import _session

    monkeypatch.delenv("MPTCPDOCK_LAB", raising=False)
    monkeypatch.delenv("MPTCPDOCK_FLOW_DURATION", raising=False)
    _session.reset()
    yield
    _session.reset()


@pytest.fixture(scope="session")
def kernel_probe():
    """What the Docker host's kernel has (runs the probe container once per session)."""
    from mptcpdock.runtime.image import ensure_node_image
    from mptcpdock.runtime.probe import probe_kernel

    ensure_node_image(None, NODE_IMAGE)
    return probe_kernel(NODE_IMAGE, "pytest-probe")


@pytest.fixture()
def mptcp_kernel(kernel_probe):
    """The kernel probe, for tests that need MPTCP: they skip with the probe's reason without it."""
    if not kernel_probe.mptcp:
        pytest.skip(f"kernel {kernel_probe.kernel} has no MPTCP (probe: mptcp=no)")
    return kernel_probe


@pytest.fixture()
def needs_netem(kernel_probe) -> None:
    if not kernel_probe.netem:
        pytest.skip(f"kernel {kernel_probe.kernel} has no netem qdisc (probe: netem=no)")


@contextlib.contextmanager
def running_lab(topology: Topology | str | Path, name: str) -> Iterator:
    """Bring a lab up under ``name`` (rates only where the kernel has no netem); always down."""
    model = topology if isinstance(topology, Topology) else load_topology(TOPOLOGIES / topology
                                                                            if not Path(topology).exists() else topology)
    model.name = name
    lab_api.tear_down(name)
    try:
        yield lab_api.bring_up(model, allow_no_impairments=True)
    finally:
        lab_api.tear_down(name)
