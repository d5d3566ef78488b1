"""Real-Docker tests of the node image: it builds, records its pins, runs the tools, round-trips."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from docker import DockerClient
from docker.models.containers import Container
from docker.models.images import Image

from mptcpdock import NODE_IMAGE, __version__
from mptcpdock.runtime import image as im

PINNED = ("iproute2", "iperf3", "mptcpize", "mptcpd", "mptcpd-plugins", "iptables", "ethtool", "procps",
          "iputils-ping", "tcpdump")
ROUNDTRIP_TAG = "mptcpdock/node-roundtrip:test"

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def client() -> Iterator[DockerClient]:
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture(scope="module")
def node_image(client: DockerClient) -> Image:
    return im.ensure_node_image(client, NODE_IMAGE)


@pytest.fixture(scope="module")
def node(client: DockerClient, node_image: Image) -> Iterator[Container]:
    container = client.containers.run(
        NODE_IMAGE,
        detach=True,
        init=True,
        auto_remove=True,
        network_mode="none",
        cap_add=["NET_ADMIN"],
        sysctls={"net.mptcp.enabled": "1"},
        labels={"io.mptcpdock.test": "test_image"},
    )
    yield container
    container.kill()


def run_in(node: Container, *cmd: str) -> str:
    result = node.exec_run(list(cmd))
    assert isinstance(result.output, bytes)
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, f"{cmd} exited {result.exit_code}: {output}"
    return output


def test_node_image_exists_after_ensure(client: DockerClient, node_image: Image) -> None:
    assert client.images.get(NODE_IMAGE).id == node_image.id
    assert im.ensure_node_image(client, NODE_IMAGE).id == node_image.id  # present: no rebuild
    assert node_image.labels[im.NODE_LABEL] == im.NODE_LAYOUT == "2"
    assert node_image.labels[im.SUITE_LABEL] == "trixie"
    assert node_image.labels["org.opencontainers.image.version"] == __version__
    assert node_image.labels["org.opencontainers.image.source"]


def test_labels_record_the_installed_pinned_versions(client: DockerClient, node: Container) -> None:
    info = im.image_info(client, NODE_IMAGE)
    assert info["id"].startswith("sha256:")
    assert info["digest"]
    assert set(info["packages"]) == set(PINNED)
    listing = run_in(node, "dpkg-query", "-W", "-f", "${Package} ${Version}\\n", *PINNED)
    installed = dict(line.split(" ", 1) for line in listing.splitlines())
    assert installed == info["packages"]


TOOL_CHECKS = [
    (("ip", "-V"), "iproute2"),
    (("tc", "-V"), "iproute2"),
    (("iperf3", "--version"), "iperf 3"),
    (("mptcpize", "--help"), "mptcpize"),
    (("sysctl", "-n", "net.mptcp.enabled"), "1"),
    (("ethtool", "--version"), "ethtool"),
    (("tcpdump", "--version"), "tcpdump"),
    (("iptables", "-S"), "-P INPUT"),
    (("/usr/libexec/mptcpd", "--version"), "mptcpd 0.13"),
    (("ls", "/usr/lib/x86_64-linux-gnu/mptcpd"), "sspi.so"),
    (("ls", "/usr/lib/x86_64-linux-gnu/mptcpd"), "mesh.so"),  # mptcpdock's plugin, from the build stage
    (("cat", "/usr/share/mptcpdock/mesh-plugin"), "libmptcpd3-dev 0.13"),
    (("cat", im.INSTALLED_FILE), "iproute2 6.15"),
]


def test_iproute2_is_6_15_or_later(node: Container) -> None:
    """trixie's iproute2: ss -M byte counters (6.5+), the path manager and scheduler knobs."""
    version = run_in(node, "ip", "-V").split("iproute2-")[1].split(",")[0]
    assert tuple(int(part) for part in version.split(".")[:2]) >= (6, 15), version


def test_the_mesh_plugin_came_without_its_build_tools(node_image: Image, node: Container) -> None:
    """The plugin is compiled in the first stage: no compiler or headers reach the node image."""
    assert node_image.labels["io.mptcpdock.mptcpd-plugin.mesh"].startswith("images/node/mesh/mesh.c")
    found = node.exec_run(["sh", "-c", "command -v gcc cc; ls /usr/include/mptcpd /usr/include/ell"])
    output = found.output.decode()
    assert "bin/" not in output and output.count("No such file") == 2 and found.exit_code != 0, output
    assert node_image.attrs["Size"] < 110e6, node_image.attrs["Size"]


def test_an_outdated_layout_is_rebuilt_not_used(client: DockerClient, node_image: Image) -> None:
    assert not im.is_outdated(node_image)
    fake = type("Fake", (), {"labels": {im.NODE_LABEL: "1"}})()
    assert im.is_outdated(fake)  # type: ignore[arg-type]  (a bookworm image of 0.1.0)


@pytest.mark.parametrize(("cmd", "expected"), [pytest.param(c, e, id=" ".join(c)) for c, e in TOOL_CHECKS])
def test_node_tools_run(node: Container, cmd: tuple[str, ...], expected: str) -> None:
    assert expected in run_in(node, *cmd)


def test_save_load_round_trip(client: DockerClient, node_image: Image, tmp_path: Path) -> None:
    node_image.tag(ROUNDTRIP_TAG)
    try:
        tarball = im.save_image(client, ROUNDTRIP_TAG, tmp_path / "node.tar")
        with tarfile.open(tarball) as archive:
            manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == [ROUNDTRIP_TAG]
        client.images.remove(ROUNDTRIP_TAG)
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(ROUNDTRIP_TAG)
        loaded = im.load_image(client, tarball)
        assert [image.id for image in loaded] == [node_image.id]
        assert client.images.get(ROUNDTRIP_TAG).id == node_image.id
    finally:
        try:
            client.images.remove(ROUNDTRIP_TAG)
        except docker.errors.ImageNotFound:
            pass
