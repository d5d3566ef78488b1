"""A remote engine for real: the local engine exposed as ``tcp://127.0.0.1:PORT`` by
tests/tcp_forwarder.py, reached with ``DOCKER_HOST``, through the ``mptcpdock`` command (a
subprocess, as a user runs it). Killing the forwarder is the engine going away, the way a VM
or a remote host does: mid-``up`` and mid-``run`` that must be one line and exit 1, and ``down``
must clean up once the engine answers again. The lab's state must name the engine by its ID,
the same whichever URL reached it; a state naming another engine must be refused.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import docker
import pytest

from conftest import ROOT, TOPOLOGIES
from test_engine import write_context
from mptcpdock.runtime.docker_api import LABEL_LAB
from mptcpdock.runtime.engine import EngineIdentity
from mptcpdock.runtime.state import LabState

pytestmark = pytest.mark.docker

EX1 = TOPOLOGIES / "mptcp-default-configuration.yaml"
MEGA = TOPOLOGIES / "mptcp-mega-dumbbell.yaml"
FORWARDER = Path(__file__).resolve().parent / "tcp_forwarder.py"
LOCAL_SOCKET = "/var/run/docker.sock"


class Forwarder:
    """tests/tcp_forwarder.py as a child process; restartable on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, str(FORWARDER), "--port", str(self.port),
                                         "--socket", LOCAL_SOCKET], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        assert line[:1] == ["listening"], line
        self.port = int(line[1])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"


@pytest.fixture()
def forwarder() -> Iterator[Forwarder]:
    forward = Forwarder()
    forward.start()
    try:
        yield forward
    finally:
        forward.kill()


@pytest.fixture()
def local() -> Iterator[docker.DockerClient]:
    """The local engine through its socket, for checks from outside mptcpdock."""
    client = docker.DockerClient(base_url=f"unix://{LOCAL_SOCKET}")
    yield client
    client.close()


def mptcpdock(*args: str, docker_host: str | None, state: Path, timeout: float = 300,
              **extra_env: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("DOCKER_HOST", "DOCKER_CONTEXT")}
    env.update(extra_env, MPTCPDOCK_STATE_DIR=str(state))
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return subprocess.run([sys.executable, "-m", "mptcpdock.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def start_mptcpdock(*args: str, docker_host: str, state: Path) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key != "DOCKER_CONTEXT"}
    env.update(MPTCPDOCK_STATE_DIR=str(state), DOCKER_HOST=docker_host)
    return subprocess.Popen([sys.executable, "-m", "mptcpdock.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)


def lab_objects(client: docker.DockerClient, lab: str) -> tuple[int, int]:
    label = {"label": f"{LABEL_LAB}={lab}"}
    return len(client.api.containers(all=True, filters=label)), len(client.api.networks(filters=label))


def assert_one_line_error(stderr: str, *fragments: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_up_exec_down_through_a_tcp_engine_record_the_same_engine(forwarder: Forwarder, local, tmp_path: Path):
    lab, state_dir = "t8-tcp", tmp_path / "state"
    up = mptcpdock("up", str(EX1), "--name", lab, "--allow-no-impairments", "-q", docker_host=forwarder.url,
                   state=state_dir)
    try:
        assert up.returncode == 0, up.stderr
        recorded = LabState.from_json((state_dir / "labs" / f"{lab}.json").read_text()).engine
        assert isinstance(recorded, EngineIdentity)
        assert (recorded.id, recorded.host, recorded.chosen_by) == (local.info()["ID"], forwarder.url, "DOCKER_HOST")
        assert recorded.api_version == local.version()["ApiVersion"]
        executed = mptcpdock("exec", "--lab", lab, "h2", "--", "ip", "-o", "-4", "addr", "show", "dev", "eth2b",
                             docker_host=forwarder.url, state=state_dir)
        assert executed.returncode == 0 and "192.168.11.2/24" in executed.stdout, executed.stderr
        through_socket = mptcpdock("status", lab, docker_host=None, state=state_dir)  # same engine, other URL
        assert through_socket.returncode == 0 and "eth2b" in through_socket.stdout, through_socket.stderr
    finally:
        down = mptcpdock("down", lab, docker_host=forwarder.url, state=state_dir)
    assert down.returncode == 0, down.stderr
    assert lab_objects(local, lab) == (0, 0)


def test_a_context_reaches_a_tcp_engine_and_doctor_checks_it(forwarder: Forwarder, tmp_path: Path):
    """--context NAME (a context as 'docker context create' writes it) beats DOCKER_HOST, and
    doctor --json works through a tcp:// engine (as the VM tier runs it)."""
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    write_context(config, "fwd", forwarder.url)
    done = mptcpdock("--context", "fwd", "doctor", "--json", docker_host="tcp://127.0.0.1:1", state=tmp_path / "state",
                     DOCKER_CONFIG=str(config))
    assert done.returncode == 2, done.stderr  # this kernel: no netem
    engine = json.loads(done.stdout)["engine"]
    assert (engine["name"], engine["host"], engine["chosen_by"], engine["reachable"]) == (
        "fwd", forwarder.url, "--context fwd", True)


def test_commands_refuse_a_lab_recorded_on_another_engine(tmp_path: Path):
    """A state naming another engine: every command that acts on the lab refuses in one line."""
    state_dir, lab = tmp_path / "state", "t8-elsewhere"
    (state_dir / "labs").mkdir(parents=True)
    elsewhere = EngineIdentity(id="NOT:THIS:ENGINE", name="default", host="tcp://127.0.0.1:9", api_version="1.47",
                               chosen_by="DOCKER_HOST")
    state = LabState(lab=lab, topology_yaml=EX1.read_text().replace("name: ex1", f"name: {lab}"), source=str(EX1),
                     created=0.0, image={}, probe={}, impairments_dropped=False, dropped_links=[], nodes={},
                     networks={}, engine=elsewhere)
    (state_dir / "labs" / f"{lab}.json").write_text(state.to_json())
    for args in (["status", lab], ["exec", "--lab", lab, "h1", "true"], ["routes", "--lab", lab],
                 ["run", "--lab", lab, "--duration", "1"], ["down", lab], ["up", str(EX1), "--name", lab]):
        done = mptcpdock(*args, docker_host=None, state=state_dir, timeout=120)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert_one_line_error(done.stderr, f"lab '{lab}' lives on Docker engine default (tcp://127.0.0.1:9, ID "
                              "NOT:THIS:ENGIN...)", "this command reaches default (unix://",
                              "fix: DOCKER_HOST=tcp://127.0.0.1:9 mptcpdock ...")
    listing = mptcpdock("status", docker_host=None, state=state_dir)
    assert listing.returncode == 0 and "on another engine" in listing.stdout, listing.stderr


def test_the_engine_going_away_mid_up_is_one_line_and_down_cleans_up(forwarder: Forwarder, local, tmp_path: Path):
    lab, state_dir = "t8-gone", tmp_path / "state"
    up = start_mptcpdock("up", str(MEGA), "--name", lab, "--allow-no-impairments", "-q", docker_host=forwarder.url,
                         state=state_dir)
    try:
        wait_for(lambda: lab_objects(local, lab)[0] >= 3 or up.poll() is not None, "the first containers of 'up'")
        assert up.poll() is None, "up ended before the engine could go away: " + up.stderr.read()  # type: ignore[union-attr]
        forwarder.kill()
        _, stderr = up.communicate(timeout=120)
        assert up.returncode == 1, stderr
        assert_one_line_error(stderr, f"error: the Docker engine at {forwarder.url} (DOCKER_HOST) went away during "
                              f"'up' of lab '{lab}'", f"run 'mptcpdock down {lab}' once the engine answers again")
        assert re.search(r"; it may have left \d+ containers? and \d+ networks? created so far", stderr), stderr
        assert lab_objects(local, lab) != (0, 0)  # the rollback could not reach the engine
        forwarder.start()  # same port: the engine answers again
        status = mptcpdock("status", docker_host=forwarder.url, state=state_dir)
        assert status.returncode == 0 and lab in status.stdout and "no state file" in status.stdout, status.stderr
        down = mptcpdock("down", lab, docker_host=forwarder.url, state=state_dir)
        assert down.returncode == 0, down.stderr
    finally:
        if up.poll() is None:
            up.kill()
    assert lab_objects(local, lab) == (0, 0)


def test_the_engine_going_away_mid_run_is_one_line(forwarder: Forwarder, local, tmp_path: Path):
    lab, state_dir = "t8-gone-run", tmp_path / "state"
    up = mptcpdock("up", str(EX1), "--name", lab, "--allow-no-impairments", "-q", docker_host=forwarder.url,
                   state=state_dir)
    assert up.returncode == 0, up.stderr
    run = start_mptcpdock("run", "--lab", lab, "--duration", "20", "--results", str(tmp_path / "results"),
                          "--no-plots", docker_host=forwarder.url, state=state_dir)
    try:
        wait_for(lambda: any((tmp_path / "results").glob(f"{lab}-*/topology.yaml")), "the run's results directory")
        time.sleep(3)  # the flow runs
        forwarder.kill()
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 1, stderr
        error = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert "Traceback" not in stderr and len(error) == 1, stderr  # progress lines come before it
        assert error[0] == stderr.strip().splitlines()[-1]
        assert f"went away during 'run' of lab '{lab}'" in error[0] and "partial results are in" in error[0]
        assert f"run 'mptcpdock down {lab}' once the engine answers again" in error[0]
    finally:
        if run.poll() is None:
            run.kill()
        forwarder.kill()
        forwarder.start()
        down = mptcpdock("down", lab, docker_host=forwarder.url, state=state_dir)
    assert down.returncode == 0, down.stderr
    assert lab_objects(local, lab) == (0, 0)
