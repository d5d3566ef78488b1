"""Support for the VM-host tier (tests/test_vmhost.py, ``pytest -m vmhost``): the engine
check, the mptcpdock CLI, ping statistics, Docker label checks, and the figures report.

The tier runs against a Docker engine in a Linux VM with a netem kernel (scripts/vm-host.sh,
started by scripts/test.sh). It only ever talks to that engine: the ``vm_engine`` fixture
requires ``DOCKER_HOST`` to be ``$MPTCPDOCK_VM_DOCKER_HOST``. It skips in exactly two cases:
the tier was not started (no ``MPTCPDOCK_VM_DOCKER_HOST``), or scripts/test.sh found that
QEMU cannot start on this machine (``MPTCPDOCK_VM_SKIP_REASON``, used word for word as the
skip reason). Anything else that goes wrong is a failure.

Registered as a plugin by ``pytest_plugins`` in test_vmhost.py: its fixtures, and a
``pytest_terminal_summary`` hook printing every figure the tests recorded (configured vs
measured, with the host's load at the time), also written to ``vmhost-figures.json`` in
pytest's base temporary directory.

Only the public surface of mptcpdock is used: the ``mptcpdock`` command line, topology
YAML, and the Docker labels every lab object carries (``io.mptcpdock.lab``).

PYTEST_DONT_REWRITE: several test modules import this one, whichever pytest collects first
would otherwise trigger "already imported" warnings; its asserts carry their own messages.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

import docker
import pytest
import yaml

from mptcpdock import NODE_IMAGE

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "topologies"
ENV_VM_HOST = "MPTCPDOCK_VM_DOCKER_HOST"
ENV_SKIP_REASON = "MPTCPDOCK_VM_SKIP_REASON"
LABEL_LAB = "io.mptcpdock.lab"  # on every container and network of a lab (docs: 'down' finds them by it)

#: An echo request of ping's default size on the wire: 56 data + 8 ICMP + 20 IP + 14 Ethernet.
PING_FRAME_BYTES = 98


# -- figures -----------------------------------------------------------------------------------

@dataclass
class Figure:
    """One measured quantity. ``expected`` is the configured value or the limit, ``measured``
    what the tier found; ``bound`` says what the test demanded; ``unit`` applies to both."""

    test: str
    what: str
    measured: float | None
    unit: str = ""
    expected: float | None = None
    bound: str = ""
    ok: bool | None = None
    note: str = ""
    load: tuple[float, float, float] = field(default_factory=os.getloadavg)
    #: measured while the machine was starved and missed its bound: reported, not judged (see judge)
    inconclusive: bool = False


FIGURES: list[Figure] = []
FIGURES_FILE: list[Path] = []  # where the summary also writes them (set by the vm_engine fixture)


class Recorder:
    """``figures.add(...)`` inside a test; the test's name is filled in."""

    def __init__(self, test: str) -> None:
        self.test = test

    def add(self, what: str, measured: float | None, unit: str = "", *, expected: float | None = None,
            bound: str = "", ok: bool | None = None, note: str = "") -> Figure:
        figure = Figure(self.test, what, measured, unit, expected, bound, ok, note)
        FIGURES.append(figure)
        return figure

    def missed_while_starved(self) -> None:
        """This test's missed figures become inconclusive (see judge)."""
        for figure in FIGURES:
            if figure.test == self.test and figure.ok is False:
                figure.inconclusive = True


@pytest.fixture()
def figures(request: pytest.FixtureRequest) -> Recorder:
    return Recorder(request.node.name)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("", "probes") and float(value).is_integer():
        return f"{int(value)}"
    digits = 3 if abs(value) < 10 else 2
    return f"{value:.{digits}f}"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001 - hook signature
    if not FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section("VM-host tier figures (configured or limit vs measured; host load 1/5/15 min)")
    current = None
    for figure in FIGURES:
        if figure.test != current:
            current = figure.test
            write(f"{figure.test}:")
        verdict = "STRV" if figure.inconclusive else {True: "ok  ", False: "FAIL", None: "    "}[figure.ok]
        expected = "" if figure.expected is None else f"  (configured/limit {_number(figure.expected, figure.unit)})"
        ratio = ""
        if figure.expected and figure.measured is not None and figure.unit in ("Mbit/s",):
            ratio = f"  = {figure.measured / figure.expected:.3f} of it"
        line = (f"  {verdict} {figure.what}: {_number(figure.measured, figure.unit)} {figure.unit}{expected}{ratio}"
                f"{'  [' + figure.bound + ']' if figure.bound else ''}{'  ' + figure.note if figure.note else ''}"
                f"  load {figure.load[0]:.2f}/{figure.load[1]:.2f}/{figure.load[2]:.2f}")
        write(line)
    for path in FIGURES_FILE:
        path.write_text(json.dumps([asdict(figure) for figure in FIGURES], indent=2) + "\n")
        write(f"(also in {path})")


# -- the engine --------------------------------------------------------------------------------

@dataclass
class VmEngine:
    docker_host: str
    client: docker.DockerClient
    kernel: str
    server_version: str
    state_dir: Path

    def lab_objects(self, lab: str) -> tuple[list[str], list[str]]:
        """Names of the containers and networks labelled with ``lab`` on the VM engine."""
        label = {"label": f"{LABEL_LAB}={lab}"}
        containers = [c["Names"][0].lstrip("/") for c in self.client.api.containers(all=True, filters=label)]
        networks = [n["Name"] for n in self.client.api.networks(filters=label)]
        return containers, networks

    def all_lab_objects(self) -> tuple[list[str], list[str]]:
        label = {"label": LABEL_LAB}
        containers = [c["Names"][0].lstrip("/") for c in self.client.api.containers(all=True, filters=label)]
        networks = [n["Name"] for n in self.client.api.networks(filters=label)]
        return containers, networks


@pytest.fixture(scope="session")
def vm_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmEngine]:
    reason = os.environ.get(ENV_SKIP_REASON, "").strip()
    if reason:
        pytest.skip(reason)
    wanted = os.environ.get(ENV_VM_HOST, "").strip()
    if not wanted:
        pytest.skip(f"the VM tier was not started: {ENV_VM_HOST} is not set (scripts/test.sh sets it after "
                    f"'scripts/vm-host.sh start'; by hand: export DOCKER_HOST=... {ENV_VM_HOST}=... from its last line)")
    actual = os.environ.get("DOCKER_HOST", "")
    if actual != wanted:
        pytest.fail(f"the VM tier must talk to the VM engine only: DOCKER_HOST={actual!r}, but "
                    f"{ENV_VM_HOST}={wanted!r}", pytrace=False)
    for variable in ("DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
        if os.environ.get(variable):
            pytest.fail(f"{variable} is set ({os.environ[variable]!r}): the VM engine is plain tcp on 127.0.0.1; "
                        "unset it for this tier", pytrace=False)
    try:
        client = docker.DockerClient(base_url=wanted, timeout=120)
        version = client.version()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the VM engine at {wanted} does not answer: {exc}", pytrace=False)
    try:
        client.images.get(NODE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"the VM engine at {wanted} has no {NODE_IMAGE} (fix: scripts/vm-host.sh load-image)",
                    pytrace=False)
    state = tmp_path_factory.getbasetemp() / "state"  # the same place as conftest's _private_state
    FIGURES_FILE[:] = [tmp_path_factory.getbasetemp() / "vmhost-figures.json"]
    engine = VmEngine(wanted, client, version.get("KernelVersion", "?"), version.get("Version", "?"), state)
    left = engine.all_lab_objects()
    assert left == ([], []), f"the VM engine already holds lab objects before the tier starts: {left}"
    yield engine
    left = engine.all_lab_objects()
    assert left == ([], []), f"lab objects left on the VM engine after the tier: {left}"
    client.close()


# -- the command line --------------------------------------------------------------------------

def mptcpdock_executable() -> str:
    local = Path(sys.executable).with_name("mptcpdock")
    if local.exists():
        return str(local)
    found = shutil.which("mptcpdock")
    assert found, "no mptcpdock command (fix: scripts/bootstrap.sh installs it into .venv)"
    return found


@dataclass
class Cli:
    engine: VmEngine

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MPTCPDOCK_STATE_DIR"] = str(self.engine.state_dir)
        env["DOCKER_HOST"] = self.engine.docker_host
        env.setdefault("COLUMNS", "200")
        return env

    def run(self, *argv: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        started = time.monotonic()
        result = subprocess.run([mptcpdock_executable(), *argv], capture_output=True, text=True, env=self.env(),
                                timeout=timeout, cwd=ROOT)
        result.seconds = time.monotonic() - started  # type: ignore[attr-defined]
        if check:
            assert result.returncode == 0, (f"mptcpdock {' '.join(argv)} -> exit {result.returncode}\n"
                                            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def popen(self, *argv: str) -> subprocess.Popen:
        return subprocess.Popen([mptcpdock_executable(), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env(), cwd=ROOT)

    def exec(self, lab: str, node: str, *argv: str, timeout: float = 600) -> str:
        return self.run("exec", "--lab", lab, node, "--", *argv, timeout=timeout).stdout

    def assert_gone(self, lab: str) -> None:
        containers, networks = self.engine.lab_objects(lab)
        assert not containers and not networks, f"lab {lab}: left on the VM engine: {containers} {networks}"

    @contextlib.contextmanager
    def lab(self, topology: Path, name: str, figures: Recorder | None = None) -> Iterator[str]:
        """``mptcpdock up TOPOLOGY --name NAME`` (no --allow-no-impairments: the VM has netem);
        always ``down``, and nothing labelled with the lab may be left on the engine."""
        self.run("down", "-q", name)
        up = self.run("up", "-q", str(topology), "--name", name)
        if figures is not None:
            figures.add(f"'mptcpdock up' of {topology.name}", up.seconds, "s")  # type: ignore[attr-defined]
        try:
            yield name
        finally:
            self.run("down", "-q", name)
            self.assert_gone(name)


@pytest.fixture(scope="session")
def cli(vm_engine: VmEngine) -> Cli:
    return Cli(vm_engine)


def start_killer(client: docker.DockerClient, lab: str, proc: subprocess.Popen) -> tuple[threading.Thread, list[str]]:
    """A thread that kills the first node container of ``lab`` running on ``client``'s engine
    while ``proc`` (an ``up``) runs; the list gets the killed container's name."""
    killed: list[str] = []

    def kill_first_running() -> None:
        api = client.api
        while proc.poll() is None and not killed:
            nodes = {"label": [f"{LABEL_LAB}={lab}", "io.mptcpdock.role=node"], "status": "running"}
            for container in api.containers(filters=nodes):
                try:
                    api.kill(container["Id"])
                except Exception:  # noqa: BLE001 - it may have stopped by itself meanwhile: try the next
                    continue
                killed.append(container["Names"][0].lstrip("/"))
                break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_running, daemon=True)
    killer.start()
    return killer, killed


def write_topology(path: Path, topology: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(topology, sort_keys=False))
    return path


# -- ping --------------------------------------------------------------------------------------

PING_TIME = re.compile(r"icmp_seq=(\d+) ttl=\d+ time=([\d.]+) ms")
PING_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) received")


@dataclass
class PingResult:
    target: str
    transmitted: int
    received: int
    rtts_ms: list[float]
    host_steal_percent: list[float] = field(default_factory=list)  # per attempt, see unstarved()

    @property
    def lost(self) -> int:
        return self.transmitted - self.received

    @property
    def min(self) -> float:
        return min(self.rtts_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.rtts_ms)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.rtts_ms)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.rtts_ms)

    @property
    def robust_stdev(self) -> float:
        """The interquartile range / 1.349: a normal distribution's stdev, blind to the few
        probes an emulator delays by tens of milliseconds."""
        quartiles = statistics.quantiles(self.rtts_ms, n=4)
        return (quartiles[2] - quartiles[0]) / 1.349


def save_pings(path: Path, results: dict[str, PingResult]) -> None:
    """Every probe's RTT, for looking at the distributions after the run."""
    path.write_text(json.dumps({name: asdict(result) for name, result in results.items()}) + "\n")


def parse_ping(target: str, text: str) -> PingResult:
    counts = PING_COUNTS.search(text)
    assert counts, f"no ping summary in:\n{text[-2000:]}"
    seen: dict[int, float] = {}
    for seq, rtt in PING_TIME.findall(text):
        seen.setdefault(int(seq), float(rtt))  # a duplicate reply counts once
    return PingResult(target, int(counts[1]), int(counts[2]), list(seen.values()))


def ping(cli: Cli, lab: str, node: str, target: str, *, count: int, interval: float = 0.01,
         source: str | None = None) -> PingResult:
    """``ping -c COUNT -i INTERVAL TARGET`` in ``node`` (root in the container: sub-200 ms
    intervals are allowed); every reply's RTT (ping prints 0.1 ms steps above 10 ms, 0.01 ms
    below) and the transmitted/received counts."""
    argv = ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "2"]
    if source:
        argv += ["-I", source]
    result = cli.run("exec", "--lab", lab, node, "--", *argv, target, check=False,
                     timeout=count * interval * 3 + 60)
    assert result.returncode in (0, 1), f"ping {target} in {lab}/{node}: exit {result.returncode}: {result.stderr}"
    return parse_ping(target, result.stdout)


def steady_ping(cli: Cli, lab: str, node: str, target: str, **options: Any) -> PingResult:
    """``ping`` repeated while the machine running the emulator was starved (see unstarved)."""
    result, steals = unstarved(lambda: ping(cli, lab, node, target, **options))
    result.host_steal_percent = steals
    return result


# -- the emulator's host -----------------------------------------------------------------------

#: The VM is emulated on this machine's CPUs. When its hypervisor takes them away (steal time
#: in /proc/stat), the emulated CPUs stop: netem timers fire late and packets wait. Seen here:
#: 20-26% steal for a minute made ex.1's idle min RTT 5-8 ms too long and its TCP flows reach
#: 0.69-0.75 of their limit, where runs without steal give 0.96-0.98. A measurement taken
#: while more than this share was stolen measured the host's neighbours, not the emulation.
STEAL_LIMIT_PERCENT = 5.0
STEADY_ATTEMPTS = 3
T = TypeVar("T")


def host_cpu_jiffies() -> tuple[int, int]:
    """(stolen, total) jiffies over all of this machine's CPUs since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return values[7], sum(values)


def with_host_steal(measure: Callable[[], T]) -> tuple[T, float]:
    """``measure()`` and the share of this machine's CPU time (%) its hypervisor stole meanwhile."""
    stolen_before, total_before = host_cpu_jiffies()
    result = measure()
    stolen, total = host_cpu_jiffies()
    return result, 100 * (stolen - stolen_before) / max(1, total - total_before)


def unstarved(measure: Callable[[], T], attempts: int = STEADY_ATTEMPTS) -> tuple[T, list[float]]:
    """Run ``measure`` until the host steals at most STEAL_LIMIT_PERCENT of its CPU time while
    it runs (at most ``attempts`` times). The result of that run, or of the least starved one
    if every run was starved (the test then judges it, and its figure shows the steal), and
    the steal of every run, in order. The outcome never decides a repeat: only the steal does."""
    runs: list[tuple[T, float]] = []
    for _ in range(attempts):
        runs.append(with_host_steal(measure))
        if runs[-1][1] <= STEAL_LIMIT_PERCENT:
            break
    chosen = min(runs, key=lambda run: run[1]) if runs[-1][1] > STEAL_LIMIT_PERCENT else runs[-1]
    return chosen[0], [steal for _, steal in runs]


def starved(steals: Sequence[float]) -> bool:
    """Every run of a measurement was starved (see STEAL_LIMIT_PERCENT)."""
    return bool(steals) and min(steals) > STEAL_LIMIT_PERCENT


def judge(figures: Recorder, ok: bool, failure: str, steals: Sequence[float]) -> None:
    """Pass when ``ok``; fail with ``failure`` when a run that missed had its CPUs; skip, as
    inconclusive, when the measurement missed and every run of it was starved: what it measured
    was the machine's neighbours, and no figure of the emulator can be had from this machine
    now (its figures stay in the table, marked STRV). A run that had its CPUs is always judged."""
    if ok:
        return
    if starved(steals):
        figures.missed_while_starved()
        pytest.skip(f"inconclusive: {failure}; measured while this machine's hypervisor stole "
                    f"{', '.join(f'{steal:.1f}%' for steal in steals)} of its CPU time (every run above "
                    f"{STEAL_LIMIT_PERCENT:g}%: the emulated VM was short of CPU)")
    raise AssertionError(f"{failure} ({steal_note(steals)})")


def steal_note(steals: Sequence[float]) -> str:
    """The figure's note: one run's steal, or every run's when starved runs were repeated."""
    if len(steals) <= 1:
        return f"host steal {steals[0]:.1f}%" if steals else ""
    return "host steal " + ", ".join(f"{steal:.1f}%" for steal in steals) + \
        f" (runs above {STEAL_LIMIT_PERCENT:g}% repeated)"


def frame_time_ms(rate_bits: float, frame_bytes: int = PING_FRAME_BYTES) -> float:
    """Time one frame takes to leave an htb class at ``rate_bits`` (the probe's serialisation)."""
    return frame_bytes * 8 / rate_bits * 1000


def binomial_band(n: int, p: float, sigmas: float = 3.0) -> tuple[float, float]:
    """[n p - k sigma, n p + k sigma] for a binomial(n, p) count."""
    sigma = math.sqrt(n * p * (1 - p))
    return n * p - sigmas * sigma, n * p + sigmas * sigma


def load_now() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}/{five:.2f}/{fifteen:.2f}"


def summary_of(results_dir: Path) -> dict[str, Any]:
    return json.loads((results_dir / "summary.json").read_text())


def results_dir_of(output: str) -> Path:
    """The ``results: DIR`` line ``mptcpdock run`` ends with."""
    match = re.search(r"^results: (\S+)\s*$", output, re.M)
    assert match, f"no 'results:' line in:\n{output}"
    path = Path(match[1])
    return path if path.is_absolute() else ROOT / path


def flow_of(summary: dict[str, Any], name: str) -> dict[str, Any]:
    for item in summary["flows"]:
        if item["name"] == name:
            return item
    raise AssertionError(f"no flow {name!r} in {[item['name'] for item in summary['flows']]}")


def sequence(values: Sequence[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)
