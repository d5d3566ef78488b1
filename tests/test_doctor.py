"""``mptcpdock doctor``: the rules from facts (no Docker: exit 0 / 2 / 1, the kernels known to
lack MPTCP, what each kernel era offers for path managers), and the real command on this
machine, whose kernel has MPTCP and htb but no netem: exit 2, netem missing with the fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from mptcpdock.runtime.doctor import (EXIT_NO_IMPAIRMENTS, EXIT_NOT_AT_ALL, EXIT_OK, MISSING, EngineFacts, ImageFacts,
                                      assemble, known_kernel)
from mptcpdock.runtime.probe import KernelProbe, PrivilegedCheck, parse_probe

ENGINE = EngineFacts(name="default", host="unix:///var/run/docker.sock", chosen_by="default socket", reachable=True,
                     id="X", api_version="1.47", server_version="27.5.1", operating_system="Debian GNU/Linux 13 (trixie)",
                     os_type="linux", arch="x86_64", kernel="6.12.57+deb13-cloud-amd64")
IMAGE = ImageFacts("mptcpdock/node:0.1.0", True, "sha256:0123456789abcdef")
NETEM_KERNEL = parse_probe("\n".join([
    "kernel=6.12.57+deb13-cloud-amd64", "arch=x86_64", "iproute2=ip utility, iproute2-6.1.0, libbpf 1.1.2",
    "iperf3=iperf 3.12 (cJSON 1.7.15)", "mptcpize=mptcpize 0.12", "mptcp=yes", "mptcp_enabled=1",
    "available_schedulers=default", "scheduler=default", "pm_type=0", "ip_mptcp=yes", "netem=yes", "htb=yes",
    "tbf=yes", "pfifo=yes", "clsact=yes", "ifb=yes"]))
PRIVILEGED = PrivilegedCheck(True, "started and exited 0")


def report(probe: KernelProbe | None = NETEM_KERNEL, engine: EngineFacts = ENGINE, image: ImageFacts | None = IMAGE):
    return assemble(engine, image, probe, PRIVILEGED if probe else None)


def check(result, name: str):
    return next(item for item in result.checks if item.name == name)


def test_a_netem_kernel_runs_labs_with_impairments():
    result = report()
    assert result.exit_code == EXIT_OK and not [c for c in result.checks if c.status == MISSING]
    assert "pm_type = 0 (in-kernel)" in check(result, "path managers").detail
    document = result.to_dict()
    assert document["schema"] == 1 and document["exit"] == 0 and document["kernel"]["netem"] is True


def test_no_netem_means_labs_only_without_impairments():
    result = report(dataclasses.replace(NETEM_KERNEL, netem=False))
    assert result.exit_code == EXIT_NO_IMPAIRMENTS
    netem = check(result, "netem")
    assert netem.status == MISSING and "modprobe sch_netem" in netem.fix and "--allow-no-impairments" in netem.fix


@pytest.mark.parametrize("broken, name", [
    ({"mptcp": False}, "MPTCP"), ({"htb": False}, "htb"), ({"ip_mptcp": False}, "ip mptcp")])
def test_no_mptcp_no_htb_or_no_ip_mptcp_means_no_labs(broken: dict, name: str):
    result = report(dataclasses.replace(NETEM_KERNEL, netem=False, **broken))
    assert result.exit_code == EXIT_NOT_AT_ALL and check(result, name).status == MISSING


def test_no_engine_means_no_labs():
    engine = EngineFacts("default", "tcp://127.0.0.1:9", "DOCKER_HOST", reachable=False,
                         error="cannot reach the Docker engine at tcp://127.0.0.1:9 (DOCKER_HOST): Connection refused")
    result = report(None, engine, None)
    assert result.exit_code == EXIT_NOT_AT_ALL and [c.name for c in result.checks] == ["engine"]
    assert result.to_dict()["engine"]["reachable"] is False


def test_a_missing_node_image_on_a_remote_engine_says_save_and_load():
    remote = dataclasses.replace(ENGINE, name="default", host="tcp://127.0.0.1:2375", chosen_by="DOCKER_HOST")
    result = report(None, remote, ImageFacts("mptcpdock/node:0.1.0", False))
    image = check(result, "node image")
    assert result.exit_code == EXIT_NOT_AT_ALL and image.status == MISSING
    assert "'mptcpdock image save node.tar'" in image.fix
    assert "DOCKER_HOST=tcp://127.0.0.1:2375 mptcpdock image load node.tar" in image.fix
    local = report(None, ENGINE, ImageFacts("mptcpdock/node:0.1.0", False))
    assert check(local, "node image").fix.startswith("'mptcpdock image build'")


@pytest.mark.parametrize("kernel, operating_system, platform", [
    ("6.10.14-linuxkit", "Docker Desktop", "Docker Desktop (linuxkit)"),
    ("5.15.167.4-microsoft-standard-WSL2", "Ubuntu 22.04.5 LTS", "WSL2 (microsoft-standard)"),
    ("6.12.7-orbstack-00291-g35ba4a5c36e5", "OrbStack", "OrbStack"),
])
def test_kernels_known_to_lack_mptcp_get_the_vm_fix(kernel: str, operating_system: str, platform: str):
    known = known_kernel(kernel, operating_system)
    assert known is not None and known.platform == platform
    engine = dataclasses.replace(ENGINE, kernel=kernel, operating_system=operating_system)
    probe = dataclasses.replace(NETEM_KERNEL, kernel=kernel, mptcp=False, mptcp_knobs={})
    result = report(probe, engine)
    assert result.exit_code == EXIT_NOT_AT_ALL
    mptcp = check(result, "MPTCP")
    assert mptcp.status == MISSING and "colima start --vm-type vz" in mptcp.fix and "docker context" in mptcp.fix
    assert "Hyper-V" in mptcp.fix
    assert platform in check(result, "kernel").detail
    assert result.to_dict()["known_kernel_without_mptcp"] == platform


def test_debian_and_ubuntu_kernels_are_not_flagged():
    for kernel in ("6.12.57+deb13-cloud-amd64", "6.8.0-51-generic", "6.18.44-fc-v1045"):
        assert known_kernel(kernel, "Debian GNU/Linux") is None


def test_path_managers_and_schedulers_by_kernel_era():
    recent = dataclasses.replace(NETEM_KERNEL, mptcp_knobs={
        "available_path_managers": "kernel userspace", "path_manager": "kernel",
        "available_schedulers": "default", "scheduler": "default"})
    assert check(report(recent), "path managers").detail == "kernel userspace (net.mptcp.path_manager = kernel)"
    old = dataclasses.replace(NETEM_KERNEL, mptcp_knobs={})
    assert "before 5.19" in check(report(old), "path managers").detail
    assert "default one only" in check(report(old), "schedulers").detail


def test_old_probe_records_still_load():
    """States saved before the probe grew (no arch, knobs, ifb, clsact) read back with defaults."""
    old = {key: value for key, value in NETEM_KERNEL.to_dict().items()
           if key in ("kernel", "iproute2", "iperf3", "mptcp", "ip_mptcp", "netem", "htb", "tbf", "pfifo")}
    assert KernelProbe.from_dict(old).mptcp_knobs == {}


@pytest.mark.docker
def test_doctor_on_this_machine_reports_netem_absent_with_the_fix_and_exits_2(tmp_path):
    env = {key: value for key, value in os.environ.items() if key not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env["MPTCPDOCK_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run([sys.executable, "-m", "mptcpdock.cli", "doctor", "--json"], env=env, capture_output=True,
                          text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    document = json.loads(done.stdout)  # stdout holds the document alone; progress went to stderr
    assert document["schema"] == 1 and document["exit"] == 2
    assert document["engine"]["reachable"] is True and document["engine"]["chosen_by"] == "default socket"
    assert document["kernel"]["mptcp"] is True and document["kernel"]["htb"] is True
    assert document["kernel"]["netem"] is False
    netem = next(item for item in document["checks"] if item["name"] == "netem")
    assert netem["status"] == "missing" and netem["stops"] == "impairments" and "modprobe sch_netem" in netem["fix"]
    assert document["image"]["present"] is True
    table = subprocess.run([sys.executable, "-m", "mptcpdock.cli", "doctor"], env=env, capture_output=True, text=True,
                           timeout=180, cwd=ROOT)
    assert table.returncode == 2 and "MISSING  netem" in table.stdout and "(exit 2)" in table.stdout
