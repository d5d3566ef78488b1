"""``mptcpdock doctor``: can labs run on the engine mptcpdock talks to, and with what?

:func:`examine` asks the engine (which one, how it was chosen, versions, OS/arch), whether
the node image is there, runs the kernel probe (one container, :mod:`.probe`) and tries a
``--privileged`` throwaway container. :func:`make_checks` turns those facts into a checklist
and :func:`verdict` into the exit status: 0 labs run with impairments, 2 only without them
(no netem), 1 not at all (no engine, no node image, no MPTCP, no ``ip mptcp``, no htb).
Everything but :func:`examine` is pure, so the rules are tested without Docker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from .. import NODE_IMAGE
from ..errors import MptcpdockError
from . import docker_api
from .probe import KernelProbe, PrivilegedCheck, check_privileged, probe_kernel

SCHEMA = 1
OK, MISSING, INFO = "ok", "missing", "info"
LABS, IMPAIRMENTS = "labs", "impairments"  # what a missing check stops
EXIT_OK, EXIT_NOT_AT_ALL, EXIT_NO_IMPAIRMENTS = 0, 1, 2

Progress = Callable[[str], None]

VM_FIX = ("run the engine in a Linux VM with a Debian or Ubuntu kernel: on macOS 'colima start --vm-type vz' "
          "(then 'docker context use colima'), or 'limactl start template://docker-rootful' (then the 'docker context "
          "create' line it prints); on Windows a Hyper-V VM with Debian or Ubuntu and dockerd ('docker context create "
          "vm --docker host=ssh://USER@VM'); then 'mptcpdock --context NAME doctor'; see docs/docker-hosts.md")
NETEM_FIX = ("load it on the Docker host ('modprobe sch_netem'; on Ubuntu it is in linux-modules-extra-$(uname -r)), "
             "or use a Docker host whose kernel has it (a Debian/Ubuntu VM: colima, lima, or this project's "
             "scripts/vm-host.sh start); until then run labs with --allow-no-impairments (rates only)")


@dataclass(frozen=True)
class KnownKernel:
    """A Docker host kernel known to ship without MPTCP (CONFIG_MPTCP is a bool: no module fixes it)."""

    platform: str
    marker: str  # what in the kernel string gives it away


KNOWN_KERNELS = (
    KnownKernel("Docker Desktop (linuxkit)", "linuxkit"),
    KnownKernel("WSL2 (microsoft-standard)", "microsoft-standard"),
    KnownKernel("OrbStack", "orbstack"),
)


def known_kernel(kernel: str, operating_system: str = "") -> KnownKernel | None:
    """The known MPTCP-less platform behind a kernel string (and the engine's OS name), if any."""
    text = f"{kernel} {operating_system}".lower()
    if "docker desktop" in text:
        return KNOWN_KERNELS[0]
    return next((known for known in KNOWN_KERNELS if known.marker in text), None)


@dataclass(frozen=True)
class EngineFacts:
    """The engine as resolved (name, host, how chosen) and, when it answered, what it said."""

    name: str
    host: str
    chosen_by: str
    reachable: bool
    error: str = ""
    id: str = ""
    api_version: str = ""
    server_version: str = ""
    operating_system: str = ""
    os_type: str = ""
    arch: str = ""
    kernel: str = ""


@dataclass(frozen=True)
class ImageFacts:
    name: str
    present: bool
    id: str = ""


@dataclass(frozen=True)
class Check:
    """One line of the checklist. ``stops``: what cannot run while it is missing (LABS,
    IMPAIRMENTS, or "" for facts that stop nothing)."""

    name: str
    status: str  # OK | MISSING | INFO
    detail: str
    fix: str = ""
    stops: str = ""


@dataclass(frozen=True)
class Report:
    engine: EngineFacts
    image: ImageFacts | None
    probe: KernelProbe | None
    privileged: PrivilegedCheck | None
    checks: list[Check] = field(default_factory=list)
    exit_code: int = EXIT_NOT_AT_ALL
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` document (``schema`` says its version)."""
        known = known_kernel(self.engine.kernel, self.engine.operating_system)
        return {
            "schema": SCHEMA,
            "exit": self.exit_code,
            "summary": self.summary,
            "engine": asdict(self.engine),
            "image": asdict(self.image) if self.image else None,
            "kernel": self.probe.to_dict() if self.probe else None,
            "known_kernel_without_mptcp": known.platform if known else None,
            "privileged": asdict(self.privileged) if self.privileged else None,
            "checks": [asdict(check) for check in self.checks],
        }


# -- asking the engine ------------------------------------------------------------------------------

def examine(image: str = NODE_IMAGE, progress: Progress = lambda _: None) -> Report:
    """Everything doctor reports, from the engine this process talks to."""
    progress("resolving and asking the Docker engine")
    engine = engine_facts()
    image_facts = probe = privileged = None
    if engine.reachable:
        found = docker_api.image_id(image)
        image_facts = ImageFacts(image, found is not None, found or "")
        if image_facts.present:
            progress(f"probing the kernel from a {image} container")
            probe = probe_kernel(image, "doctor")
            progress("trying a --privileged container")
            privileged = check_privileged(image, "doctor")
    return assemble(engine, image_facts, probe, privileged)


def engine_facts() -> EngineFacts:
    try:
        target = docker_api.engine()
    except MptcpdockError as exc:  # a --context / DOCKER_CONTEXT / TLS setting that does not resolve
        return EngineFacts(name="?", host="?", chosen_by="?", reachable=False, error=str(exc))
    try:
        api = docker_api.client().api
        info, version = api.info(), api.version()
    except MptcpdockError as exc:
        return EngineFacts(target.name, target.host, target.chosen_by, reachable=False, error=str(exc))
    return EngineFacts(target.name, target.host, target.chosen_by, reachable=True, id=str(info.get("ID") or ""),
                       api_version=str(version.get("ApiVersion") or api.api_version),
                       server_version=str(version.get("Version") or ""),
                       operating_system=str(info.get("OperatingSystem") or ""), os_type=str(info.get("OSType") or ""),
                       arch=str(info.get("Architecture") or ""), kernel=str(info.get("KernelVersion") or ""))


# -- the checklist and the verdict (pure) ----------------------------------------------------------

def assemble(engine: EngineFacts, image: ImageFacts | None, probe: KernelProbe | None,
             privileged: PrivilegedCheck | None) -> Report:
    checks = make_checks(engine, image, probe, privileged)
    code = verdict(checks)
    return Report(engine, image, probe, privileged, checks, code, SUMMARIES[code])


SUMMARIES = {
    EXIT_OK: "labs can run here, with delay, jitter and loss",
    EXIT_NO_IMPAIRMENTS: "labs can run here, but only without delay, jitter and loss: use --allow-no-impairments",
    EXIT_NOT_AT_ALL: "labs cannot run here",
}


def verdict(checks: list[Check]) -> int:
    """1 when anything labs need is missing, else 2 when impairments are, else 0."""
    missing = {check.stops for check in checks if check.status == MISSING}
    if LABS in missing:
        return EXIT_NOT_AT_ALL
    return EXIT_NO_IMPAIRMENTS if IMPAIRMENTS in missing else EXIT_OK


def make_checks(engine: EngineFacts, image: ImageFacts | None, probe: KernelProbe | None,
                privileged: PrivilegedCheck | None) -> list[Check]:
    checks = [engine_check(engine)]
    if not engine.reachable:
        return checks
    checks.append(kernel_check(engine, probe))
    checks.append(image_check(image, engine))
    if probe is None:
        return checks
    checks += kernel_feature_checks(engine, probe)
    checks += tool_checks(probe)
    if privileged is not None:
        checks.append(privileged_check(privileged))
    return checks


def engine_check(engine: EngineFacts) -> Check:
    if not engine.reachable:  # the error names the engine, what chose it, and the fix
        return Check("engine", MISSING, engine.error, stops=LABS)
    return Check("engine", OK, f"{engine.name}: {engine.host} (chosen by {engine.chosen_by}); Docker "
                 f"{engine.server_version}, API {engine.api_version}, {engine.os_type}/{engine.arch}, "
                 f"{engine.operating_system}")


def kernel_check(engine: EngineFacts, probe: KernelProbe | None) -> Check:
    kernel = probe.kernel if probe else engine.kernel
    known = known_kernel(kernel, engine.operating_system)
    detail = f"{kernel} ({probe.arch if probe else engine.arch})"
    if known and (probe is None or not probe.mptcp):
        return Check("kernel", INFO, f"{detail}: {known.platform}, whose kernels ship without MPTCP", VM_FIX)
    return Check("kernel", INFO, detail)


def image_check(image: ImageFacts | None, engine: EngineFacts) -> Check:
    assert image is not None
    if image.present:
        return Check("node image", OK, f"{image.name} ({image.id[:19]})")
    local = engine.host.startswith("unix://") or engine.host.startswith("npipe://")
    fix = (f"'mptcpdock image build' (builds {image.name} on this engine)" if local else
           f"build or load it on this engine: 'mptcpdock image build' here, or copy it from an engine that has it: "
           f"'mptcpdock image save node.tar' there, then '{_engine_command(engine)} image load node.tar'")
    return Check("node image", MISSING, f"{image.name} is not on this engine (the kernel probe runs in it, so the "
                 "kernel checks could not run)", fix, LABS)


def _engine_command(engine: EngineFacts) -> str:
    return f"mptcpdock --context {engine.name}" if engine.name != "default" else f"DOCKER_HOST={engine.host} mptcpdock"


def kernel_feature_checks(engine: EngineFacts, probe: KernelProbe) -> list[Check]:
    known = known_kernel(probe.kernel, engine.operating_system)
    mptcp_fix = VM_FIX if known else ("use a Docker host whose kernel has CONFIG_MPTCP=y (Debian and Ubuntu kernels "
                                      "do); " + VM_FIX)
    return [
        Check("MPTCP", OK, f"net.mptcp.enabled exists in a container (= {probe.mptcp_enabled or '?'})")
        if probe.mptcp else Check("MPTCP", MISSING, f"no net.mptcp.enabled in a container: kernel {probe.kernel} "
                                  "has no MPTCP (CONFIG_MPTCP is built in or not at all)", mptcp_fix, LABS),
        *mptcp_choice_checks(probe),
        qdisc_check("htb", probe.htb, "rates (sch_htb)", LABS,
                    "load sch_htb on the Docker host ('modprobe sch_htb'), or use a Debian/Ubuntu kernel"),
        qdisc_check("netem", probe.netem, "delay, jitter and loss (sch_netem)", IMPAIRMENTS, NETEM_FIX),
        qdisc_check("tbf", probe.tbf, "token bucket (sch_tbf)"),
        qdisc_check("ifb", probe.ifb, "ifb devices (ingress shaping)"),
        qdisc_check("clsact", probe.clsact, "the clsact qdisc (ingress/egress filters)"),
    ]


def qdisc_check(name: str, present: bool, what: str, stops: str = "", fix: str = "") -> Check:
    if present:
        return Check(name, OK, f"{what}: present")
    return Check(name, MISSING if stops else INFO, f"{what}: not in this kernel", fix, stops)


def mptcp_choice_checks(probe: KernelProbe) -> list[Check]:
    """The path managers and packet schedulers this kernel offers."""
    if not probe.mptcp:
        return [Check(name, INFO, "none (no MPTCP)") for name in ("path managers", "schedulers")]
    return [Check("path managers", INFO, path_managers(probe.mptcp_knobs)),
            Check("schedulers", INFO, schedulers(probe.mptcp_knobs))]


def path_managers(knobs: dict[str, str]) -> str:
    """By kernel era: available_path_managers (6.15+), pm_type (5.19+), or neither."""
    if "available_path_managers" in knobs:
        return f"{knobs['available_path_managers']} (net.mptcp.path_manager = {knobs.get('path_manager', '?')})"
    if "pm_type" in knobs:
        kind = {"0": "in-kernel", "1": "userspace"}.get(knobs["pm_type"], "?")
        return (f"in-kernel and userspace, chosen by net.mptcp.pm_type = {knobs['pm_type']} ({kind}); this kernel "
                "predates net.mptcp.available_path_managers (6.15)")
    return "in-kernel only (a kernel before 5.19: no net.mptcp.pm_type)"


def schedulers(knobs: dict[str, str]) -> str:
    if "available_schedulers" in knobs:
        return f"{knobs['available_schedulers']} (net.mptcp.scheduler = {knobs.get('scheduler', '?')})"
    return "the default one only (no net.mptcp.available_schedulers in this kernel)"


def tool_checks(probe: KernelProbe) -> list[Check]:
    rebuild = "rebuild the node image: 'mptcpdock image build'"
    return [
        Check("ip mptcp", OK, "the node image's iproute2 has 'ip mptcp'") if probe.ip_mptcp else
        Check("ip mptcp", MISSING, "the node image's iproute2 has no 'ip mptcp'", rebuild, LABS),
        Check("iproute2", INFO, probe.iproute2),
        _tool_check("iperf3", probe.iperf3, rebuild),
        _tool_check("mptcpize", probe.mptcpize, rebuild),
    ]


def _tool_check(name: str, version: str, fix: str) -> Check:
    if version in ("missing", "?", ""):
        return Check(name, INFO, "not in the node image (flows need it)", fix)
    return Check(name, INFO, version)


def privileged_check(privileged: PrivilegedCheck) -> Check:
    if privileged.usable:
        return Check("--privileged", INFO, "usable (only nodes with 'privileged: true' use it)")
    return Check("--privileged", INFO, f"not usable: {privileged.detail} (labs do not need it: nodes get NET_ADMIN "
                 "and NET_RAW; only nodes with 'privileged: true' fail here)")
