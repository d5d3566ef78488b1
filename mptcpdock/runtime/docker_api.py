"""Thin, typed wrappers over the Docker SDK's low-level API: the only module that talks
to the engine for containers, networks and execs.

Everything here is labelled (:data:`LABEL_LAB` and friends) so that a lab can always be
found and removed from Docker alone, even after a crash.

The one shared client talks to the engine :func:`.engine.resolve_engine` picks (``--context``,
``DOCKER_HOST``, ``DOCKER_CONTEXT``, the CLI's current context, the local socket);
:func:`engine_gone` tells a lost connection to it from a request it refused.

A lab on several engines (docs/multi-host.md) talks to the others too: inside
``with using(engine):`` every call here goes to ``engine`` (one client per engine, each with its
own pool; per thread, as a context variable), and a container name or exec ID that is an
:class:`~.engine.OnEngine` goes to the engine it names, wherever it is used.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import ipaddress
import os
import re
import tarfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import docker
import requests
import urllib3
from docker.errors import APIError, DockerException, NotFound

from ..errors import MptcpdockError, RuntimeFailure
from .engine import Engine, EngineIdentity, OnEngine, resolve_engine

LABEL_LAB = "io.mptcpdock.lab"
LABEL_NODE = "io.mptcpdock.node"
LABEL_LINK = "io.mptcpdock.link"
LABEL_ROLE = "io.mptcpdock.role"  # node | link | probe
#: Carrier subnets: the addresses Docker's IPAM hands out. mptcpdock removes them from the
#: interfaces right after start (see runtime), so they never carry traffic; they only keep
#: Docker's bookkeeping apart from the link subnets users choose (which may repeat across labs).
CARRIER_POOL = ipaddress.IPv4Network("100.64.0.0/10")
CARRIER_PREFIX = 29  # Docker reserves .1 as gateway; /29 leaves room for the two ends
#: Overlays take their carrier blocks from the top of the pool, bridges from the bottom. A
#: swarm overlay enters this engine's local address space only when its first container
#: attaches, so a bridge another process creates in between on the same block is accepted,
#: and the attachment then fails ("Pool overlaps", seen as a 20 s "context deadline
#: exceeded"). Apart, the two kinds never meet until one of them has used 8192 blocks.
OVERLAY_CARRIER_POOL = ipaddress.IPv4Network("100.127.0.0/16")


#: HTTP connections the shared client keeps; above the runtime's thread count.
POOL_SIZE = 64


class DockerUnavailable(MptcpdockError):
    """The Docker engine cannot be reached."""


class EngineGone(DockerUnavailable):
    """The engine stopped answering in the middle of an operation."""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


_client_lock = threading.Lock()
_client: docker.DockerClient | None = None
_context: str | None = None  # the --context option, when given
_engine: Engine | None = None
_identity: EngineIdentity | None = None
#: The engine of ``with using(...)`` in this thread (None: the environment's).
_current: contextvars.ContextVar[Engine | None] = contextvars.ContextVar("mptcpdock_engine", default=None)
_other_clients: dict[tuple[str, str], docker.DockerClient] = {}  # (context name, URL) -> client
_other_identities: dict[tuple[str, str], EngineIdentity] = {}


def select_engine(context: str | None) -> None:
    """Talk to the engine of Docker context ``context`` (the ``--context`` option; None: the
    usual precedence, see :mod:`.engine`) from now on; the next call makes a new client."""
    global _client, _context, _engine, _identity
    with _client_lock:
        _context, _engine, _client, _identity = context, None, None, None


@contextlib.contextmanager
def using(target: Engine | None) -> Iterator[None]:
    """Send this thread's calls to ``target`` inside the block (None: the environment's engine)."""
    token = _current.set(target)
    try:
        yield
    finally:
        _current.reset(token)


def current() -> Engine | None:
    """The engine of the ``using`` block this thread is in (None: the environment's)."""
    return _current.get()


def environment_engine() -> Engine:
    """The engine this process talks to by default (resolved once), whatever ``using`` says."""
    global _engine
    with _client_lock:
        if _engine is None:
            _engine = resolve_engine(_context)
        return _engine


def engine() -> Engine:
    """The engine calls go to here: ``using``'s, else the environment's."""
    return _current.get() or environment_engine()


def client(on: Engine | None = None) -> docker.DockerClient:
    """The client of ``on`` (default: ``using``'s engine, else the one shared client of the
    environment's engine), each with a connection pool large enough for our worker threads."""
    global _client
    target = on or _current.get()
    if target is not None:
        key = (target.name, target.host)
        with _client_lock:
            if key not in _other_clients:
                _other_clients[key] = _connect(target)
            return _other_clients[key]
    target = environment_engine()
    with _client_lock:
        if _client is None:
            _client = _connect(target)
        return _client


def _api(ref: str) -> docker.APIClient:
    """The low-level client for a container name or exec ID (an OnEngine goes to its engine)."""
    return client(getattr(ref, "engine", None)).api


def _connect(target: Engine) -> docker.DockerClient:
    """A client of ``target`` that has answered a ping. ssh:// goes through paramiko (one SSH
    connection, a channel per HTTP connection); tcp:// uses ``target.tls`` when set."""
    try:
        made = docker.DockerClient(base_url=target.host, tls=target.tls or False, timeout=120,
                                   max_pool_size=POOL_SIZE, use_ssh_client=False)
        made.api.ping()
        return made
    except Exception as exc:  # noqa: BLE001 - SDK, requests, paramiko and socket errors alike: one line
        raise DockerUnavailable(
            f"cannot reach the Docker engine at {target.describe()}: {failure_reason(exc)} (fix: start dockerd "
            "(sudo dockerd &, or scripts/bootstrap.sh), or choose a running engine with DOCKER_HOST=URL or "
            "--context NAME; 'mptcpdock doctor' checks it)"
        ) from None


def engine_identity() -> EngineIdentity:
    """Which engine this is (``docker info``'s ID), as a lab's state records it; asked once per engine."""
    global _identity
    api = client().api
    current = _current.get()
    known = _identity if current is None else _other_identities.get((current.name, current.host))
    if known is None:
        info, target = api.info(), engine()
        known = EngineIdentity(id=str(info.get("ID") or ""), name=target.name, host=target.host,
                               api_version=str(api.api_version), chosen_by=target.chosen_by)
        if current is None:
            _identity = known
        else:
            _other_identities[(current.name, current.host)] = known
    return known


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


#: Errors that mean the engine (or the way to it) went away, not that it refused a request.
#: A read timeout is not one of them: waiting for a container may time out on a live engine.
_GONE_TYPES: tuple[type[BaseException], ...] = (
    requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.ProtocolError, ConnectionError, EOFError,
)
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_DISCONNECTED_TEXT = re.compile(r"RemoteDisconnected\('([^']+)'\)")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def engine_gone(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the connection to the engine broke."""
    return any(isinstance(error, _GONE_TYPES) or type(error).__name__ == "SSHException" for error in _chain(exc))


def failure_reason(exc: BaseException) -> str:
    """The short reason inside a connection error ('Connection refused'), else its first line."""
    for error in _chain(exc):
        text = str(error)
        for pattern in (_ERRNO_TEXT, _DISCONNECTED_TEXT):
            found = pattern.search(text)
            if found:
                return found.group(1).strip()
    text = first_line(exc)
    return text if len(text) <= 160 else text[:157] + "..."


def gone_error(doing: str, exc: BaseException, left: str, fix: str) -> EngineGone:
    """The one line for an engine lost during ``doing``: what may be left, and the fix."""
    return EngineGone(f"the Docker engine at {engine().describe()} went away during {doing} "
                      f"({failure_reason(exc)}); {left}; {fix}")


def used_subnets() -> set[ipaddress.IPv4Network]:
    out: set[ipaddress.IPv4Network] = set()
    for network in client().api.networks():
        for config in (network.get("IPAM") or {}).get("Config") or []:
            try:
                out.add(ipaddress.IPv4Network(config.get("Subnet", ""), strict=False))
            except ValueError:
                continue
    return out


def free_carrier_subnets(count: int) -> list[ipaddress.IPv4Network]:
    """``count`` carrier blocks free right now (a snapshot; see :class:`CarrierAllocator`)."""
    allocator = CarrierAllocator()
    blocks = [allocator.claim() for _ in range(count)]
    for block in blocks:
        allocator.settle(block)
    return blocks


_claims_lock = threading.Lock()
_claimed: set[int] = set()  # carrier blocks handed out in this process whose network does not exist yet


class CarrierAllocator:
    """Hands out free carrier blocks (``CARRIER_PREFIX`` subnets of ``CARRIER_POOL``).

    It starts from one listing of the engine's networks. A block handed out stays claimed
    process-wide until :meth:`settle` (its network exists, or its creation failed), so
    concurrent ``up``s in one process do not pick the same block. Another process can still
    take a block between listing and creation: the engine then refuses with 'Pool overlaps';
    :meth:`refresh` re-reads the engine's networks and the caller claims again.
    """

    def __init__(self) -> None:
        self._size = 2 ** (32 - CARRIER_PREFIX)
        self._blocks: set[int] = set()  # exact carrier-sized blocks in use (fast path)
        self._ranges: set[tuple[int, int]] = set()  # any other network overlapping the pool
        self.refresh()

    def refresh(self) -> None:
        used = [net for net in used_subnets() if net.overlaps(CARRIER_POOL)]
        with _claims_lock:
            for net in used:
                if net.prefixlen == CARRIER_PREFIX:
                    self._blocks.add(int(net.network_address))
                else:
                    self._ranges.add((int(net.network_address), int(net.broadcast_address)))

    def _free(self, start: int) -> bool:
        if start in self._blocks or start in _claimed:
            return False
        end = start + self._size - 1
        return not any(low <= end and start <= high for low, high in self._ranges)

    def claim(self, driver: str = "bridge") -> ipaddress.IPv4Network:
        """A free block: from the top of :data:`OVERLAY_CARRIER_POOL` downwards for an overlay,
        from the bottom of the pool upwards (below the overlays' range) for a bridge."""
        base = int(CARRIER_POOL.network_address)
        overlay_start = (int(OVERLAY_CARRIER_POOL.network_address) - base) // self._size
        if driver == "overlay":
            indexes = range(CARRIER_POOL.num_addresses // self._size - 1, overlay_start - 1, -1)
        else:
            indexes = range(overlay_start)
        with _claims_lock:
            for index in indexes:
                start = base + index * self._size
                if self._free(start):
                    _claimed.add(start)
                    self._blocks.add(start)
                    return ipaddress.IPv4Network((start, CARRIER_PREFIX))
        raise RuntimeFailure(f"no free carrier subnet left in {CARRIER_POOL}; remove unused Docker networks")

    def settle(self, block: ipaddress.IPv4Network) -> None:
        with _claims_lock:
            _claimed.discard(int(block.network_address))


def create_network(name: str, bridge: str, subnet: ipaddress.IPv4Network, labels: dict[str, str],
                   driver: str = "bridge") -> str:
    """A bridge with no host address, no masquerade and no gateway route into the host; or
    (``driver="overlay"``) a swarm overlay that standalone containers may attach to, internal so
    that Docker attaches no docker_gwbridge (a route out of the lab) to its containers. The
    overlay keeps its default MTU (1450); mptcpdock pins the lab's MTU inside the nodes."""
    api = client().api
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(subnet))])
    if driver == "overlay":
        return str(api.create_network(name, driver="overlay", ipam=ipam, labels=labels, check_duplicate=True,
                                      attachable=True, internal=True, scope="swarm")["Id"])
    result = api.create_network(
        name,
        driver="bridge",
        ipam=ipam,
        labels=labels,
        check_duplicate=True,
        options={
            "com.docker.network.bridge.name": bridge,
            "com.docker.network.bridge.inhibit_ipv4": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "false",
            "com.docker.network.bridge.enable_icc": "true",
        },
    )
    return str(result["Id"])


def create_container(
    *,
    name: str,
    hostname: str,
    image: str,
    labels: dict[str, str],
    cap_add: Iterable[str],
    sysctls: dict[str, str],
    privileged: bool,
    networks: list[tuple[str, str]],
    command: list[str] | None = None,
) -> str:
    """Create (not start) a container attached to ``networks`` [(network, address)], running
    ``command`` (default: ``sleep infinity``) under an init process."""
    api = client().api
    first = networks[0] if networks else None
    host_config = api.create_host_config(
        cap_add=list(cap_add),
        sysctls=dict(sysctls),
        privileged=privileged,
        init=True,
        network_mode=first[0] if first else "none",
        # The runtime reads each node's first output (its configuration report) from the
        # logs: keep them readable whatever the daemon's default log driver, and small.
        log_config=docker.types.LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
    )
    networking = None
    if first:
        networking = api.create_networking_config({first[0]: api.create_endpoint_config(ipv4_address=first[1])})
    container = api.create_container(
        image,
        command=command or ["sleep", "infinity"],
        name=name,
        hostname=hostname,
        labels=labels,
        host_config=host_config,
        networking_config=networking,
        detach=True,
    )
    cid = str(container["Id"])
    for network, address in networks[1:]:
        api.connect_container_to_network(cid, network, ipv4_address=address)
    return cid


#: seconds a worker engine gets to learn of an overlay the manager has just created
OVERLAY_KNOWN_S = 30.0


def start_container(cid: str) -> None:
    """Start a created container. On a swarm worker, an attachable overlay the manager created
    a moment ago may not be known yet ("could not find a network matching network mode",
    seen once in the VM tier while two earlier runs passed): retry that for OVERLAY_KNOWN_S."""
    deadline = time.monotonic() + OVERLAY_KNOWN_S
    while True:
        try:
            _api(cid).start(cid)
            return
        except APIError as exc:
            if "could not find a network matching network mode" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def wait_for_line(cid: str, line: str) -> tuple[bool, str]:
    """Follow a container's stdout until ``line`` appears (True) or the container stops
    (False); returns the stdout read so far."""
    stream = _api(cid).logs(cid, stdout=True, stderr=False, stream=True, follow=True)
    out = b""
    target = line.encode() + b"\n"
    try:
        for chunk in stream:
            out += chunk
            if target in out:
                return True, out.decode(errors="replace")
    finally:
        stream.close()
    return False, out.decode(errors="replace")


def exit_status(cid: str, timeout: float = 30) -> tuple[int, str]:
    """Wait for a container to stop; its exit code and its stderr."""
    api = _api(cid)
    code = api.wait(cid, timeout=timeout).get("StatusCode", -1)
    return int(code), api.logs(cid, stdout=False, stderr=True).decode(errors="replace")


def run_exec(container: str, argv: list[str], *, user: str = "") -> ExecResult:
    """Run ``argv`` in a container and wait for it (no shell involved)."""
    api = _api(container)
    exec_id = api.exec_create(container, argv, stdout=True, stderr=True, user=user)["Id"]
    stdout, stderr = api.exec_start(exec_id, demux=True)
    code = api.exec_inspect(exec_id).get("ExitCode")
    return ExecResult(
        exit_code=-1 if code is None else int(code),
        stdout=(stdout or b"").decode(errors="replace"),
        stderr=(stderr or b"").decode(errors="replace"),
    )


def start_exec_detached(container: str, argv: list[str]) -> str:
    """Start ``argv`` in a container in the background; returns the exec id (an OnEngine when
    the container is one)."""
    api = _api(container)
    exec_id = str(api.exec_create(container, argv, stdout=False, stderr=False)["Id"])
    api.exec_start(exec_id, detach=True)
    on = getattr(container, "engine", None)
    return OnEngine(exec_id, on) if on is not None else exec_id


def copy_from_container(container: str, path: str) -> bytes:
    """A tar archive of ``path`` in the container (``docker cp CONTAINER:PATH -``)."""
    stream, _ = _api(container).get_archive(container, path)
    return b"".join(stream)


def copy_to_container(container: str, base: str, directory: str, files: dict[str, bytes]) -> None:
    """Write ``files`` (name -> content) into ``base/directory`` of the container, creating
    ``directory`` (relative; ``base`` must exist and is left as it is), as ``docker cp`` of a
    tar archive does: values reach a node as files, never as code."""
    parts = [part for part in directory.strip("/").split("/") if part]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for depth in range(1, len(parts) + 1):
            info = tarfile.TarInfo("/".join(parts[:depth]))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        for name, content in files.items():
            info = tarfile.TarInfo("/".join([*parts, name]))
            info.size, info.mode = len(content), 0o644
            archive.addfile(info, io.BytesIO(content))
    if not _api(container).put_archive(container, base, buffer.getvalue()):
        raise RuntimeFailure(f"copying {', '.join(files)} into {container}:{base}/{directory} failed")


def exec_running(exec_id: str) -> bool:
    return bool(_api(exec_id).exec_inspect(exec_id).get("Running"))


def exec_exit_code(exec_id: str) -> int | None:
    return _api(exec_id).exec_inspect(exec_id).get("ExitCode")


def lab_containers(lab: str | None = None) -> list[dict[str, Any]]:
    label = f"{LABEL_LAB}={lab}" if lab else LABEL_LAB
    return client().api.containers(all=True, filters={"label": label})


def stopped_containers(lab: str) -> dict[str, str]:
    """The lab's containers that are not running: container name -> its state and exit code."""
    out = {}
    for container in lab_containers(lab):
        if container.get("State") != "running":
            name = container["Names"][0].lstrip("/")
            out[name] = container.get("Status") or container.get("State") or "not running"
    return out


def lab_networks(lab: str | None = None) -> list[dict[str, Any]]:
    label = f"{LABEL_LAB}={lab}" if lab else LABEL_LAB
    return client().api.networks(filters={"label": label})


def remove_container(cid: str) -> None:
    try:
        _api(cid).remove_container(cid, force=True, v=True)
    except NotFound:
        pass
    except APIError as exc:
        if exc.status_code != 404 and "already in progress" not in str(exc):
            raise


#: How long a swarm manager may keep an overlay "in use by task" after its last container went:
#: each attachment is a task the manager removes asynchronously (measured: up to ~2 s here).
TASK_RELEASE_S = 15.0


def remove_network(nid: str, overlay: bool = False) -> None:
    """Remove a network; an ``overlay`` is also waited for until the manager no longer lists it
    (a swarm removes it asynchronously: listed for a while after the call returned)."""
    deadline = time.monotonic() + TASK_RELEASE_S
    delay = 0.1
    while True:
        try:
            client().api.remove_network(nid)
            if overlay:
                _wait_network_gone(nid, deadline)
            return
        except NotFound:
            return
        except APIError as exc:
            if "not found" in str(exc):  # a swarm manager says 500 "network ... not found" for one just removed
                return
            if "in use by task" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _wait_network_gone(nid: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            client().api.inspect_network(nid)
        except NotFound:
            return
        except APIError as exc:
            if "not found" in str(exc):
                return
            raise
        time.sleep(0.1)
    raise RuntimeFailure(f"overlay network {nid[:12]} is still listed {TASK_RELEASE_S:g} s after its removal "
                         "(fix: run 'mptcpdock down' again; 'docker network ls --filter driver=overlay')")


def image_exists(image: str) -> bool:
    return image_id(image) is not None


def image_id(image: str) -> str | None:
    """The image's ID on the engine, None when it is not there."""
    try:
        return str(client().api.inspect_image(image)["Id"])
    except NotFound:
        return None


def engine_info() -> dict[str, Any]:
    return client().api.info()


#: The bridge through which Docker gives overlay-attached containers a way out of the host.
GWBRIDGE = "docker_gwbridge"


def swarm_role() -> str:
    """'manager', 'worker' or the swarm state when the engine is in none ('inactive', ...)."""
    swarm = engine_info().get("Swarm") or {}
    state = str(swarm.get("LocalNodeState") or "inactive")
    if state != "active":
        return state
    return "manager" if swarm.get("ControlAvailable") else "worker"


def gwbridge_containers() -> set[str]:
    """IDs of the containers attached to docker_gwbridge (none when it does not exist)."""
    try:
        network = client().api.inspect_network(GWBRIDGE)
    except NotFound:
        return set()
    return set((network.get("Containers") or {}).keys())


def disconnect_gwbridge(cid: str) -> None:
    """Take a container off docker_gwbridge (its way out of the host), if it is on it."""
    try:
        _api(cid).disconnect_container_from_network(cid, GWBRIDGE, force=True)
    except NotFound:
        pass


def container_mac(cid: str, network: str) -> str:
    """The MAC address of a container's interface on ``network`` (by name)."""
    networks = (_api(cid).inspect_container(cid).get("NetworkSettings") or {}).get("Networks") or {}
    if network not in networks or not networks[network].get("MacAddress"):
        raise RuntimeFailure(f"container {cid[:12]} has no MAC address on network {network!r}")
    return str(networks[network]["MacAddress"])
