"""Probe the Docker host's kernel, from a throwaway container, for what labs need.

Containers share the Docker host's kernel (on macOS/Windows: the VM's), so the probe
must run there, not on the machine running mptcpdock. It tries each qdisc on the
container's own loopback device (and an ifb device in its own namespace), which touches
nothing outside that container, and reads the MPTCP sysctls it finds. ``up`` and
``doctor`` both run it: one container run. ``doctor`` also tries ``--privileged`` on a
second throwaway container (:func:`check_privileged`).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from docker.errors import APIError

from ..errors import KernelFeatureError, RuntimeFailure, TopologyError
from ..topology.validate import line_of
from . import docker_api
from .docker_api import LABEL_ROLE

QDISCS = ("netem", "htb", "tbf", "pfifo")
#: Endpoint flags every MPTCP kernel and iproute2 have (5.6+).
BASE_ENDPOINT_FLAGS = ("signal", "subflow", "backup", "fullmesh")
#: Newer endpoint flags and the kernel that added them (for messages only: support is probed).
FLAG_KERNEL_SINCE: dict[str, tuple[int, int]] = {"fullmesh": (5, 18), "laminar": (6, 18)}
#: MPTCP knobs read as they are (each only where this kernel has it; see :class:`KernelProbe`).
MPTCP_KNOBS = ("available_path_managers", "available_schedulers", "path_manager", "scheduler", "pm_type")

# A fixed script: no user input reaches it.
_SCRIPT = r"""
try() { if tc qdisc add dev lo root handle 1: "$@" >/dev/null 2>&1; then tc qdisc del dev lo root; echo yes; else echo no; fi; }
version() { if command -v "$1" >/dev/null 2>&1; then "$@" 2>&1 | head -n1; else echo missing; fi; }
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
echo "iproute2=$(ip -V 2>&1 | tr -d '\n')"
echo "iperf3=$(version iperf3 --version)"
echo "mptcpize=$(version mptcpize --version)"
m=/proc/sys/net/mptcp
if [ -e $m/enabled ]; then echo mptcp=yes; echo "mptcp_enabled=$(cat $m/enabled)"; else echo mptcp=no; fi
for knob in available_path_managers available_schedulers path_manager scheduler pm_type; do
  if [ -r "$m/$knob" ]; then echo "$knob=$(cat "$m/$knob")"; fi
done
if ip mptcp limits show >/dev/null 2>&1; then echo ip_mptcp=yes; else echo ip_mptcp=no; fi
echo "netem=$(try netem delay 1ms)"
echo "htb=$(try htb default 1)"
echo "tbf=$(try tbf rate 1mbit burst 32kbit latency 50ms)"
echo "pfifo=$(try pfifo limit 10)"
for q in fq_codel codel pie cake fq; do echo "aqm_$q=$(try $q)"; done
echo "aqm_red=$(try red limit 60000 min 5000 max 15000 avpkt 1000 burst 7 bandwidth 10mbit probability 0.02)"
if tc qdisc add dev lo clsact >/dev/null 2>&1; then tc qdisc del dev lo clsact; echo clsact=yes; else echo clsact=no; fi
if ip link add name mpdprobeifb type ifb >/dev/null 2>&1; then ip link del mpdprobeifb; echo ifb=yes; else echo ifb=no; fi
if tc qdisc add dev lo clsact >/dev/null 2>&1; then
  if tc filter add dev lo egress pref 1 handle 1 bpf da bytecode "1,6 0 0 2" >/dev/null 2>&1; then echo blackhole=yes; else echo blackhole=no; fi
  tc qdisc del dev lo clsact
else echo blackhole=no; fi
if [ -e /proc/sys/net/mptcp/blackhole_timeout ]; then echo "blackhole_timeout=$(cat /proc/sys/net/mptcp/blackhole_timeout)"; else echo blackhole_timeout=absent; fi
echo "mptcp_limits=$(ip mptcp limits show 2>/dev/null | tr '\n' ' ')"
if [ -x /usr/libexec/mptcpd ]; then echo "mptcpd=$(/usr/libexec/mptcpd --version 2>&1 | head -n1)"; else echo mptcpd=missing; fi
echo "mptcpd_plugins=$(for f in /usr/lib/*/mptcpd/*.so; do [ -e "$f" ] && basename "$f" .so; done | tr '\n' ' ')"
if [ -d /proc/sys/net/ipv6 ]; then echo ipv6=yes; else echo ipv6=no; fi
# Endpoint flags: the ones this iproute2 names, each tried on an endpoint of a scratch address
# (on lo, in this container's own namespace) and read back: 'yes' when the kernel kept it,
# 'kernel' when the kernel refused or dropped it.
flags=$(ip mptcp help 2>&1 | sed -n 's/^FLAG *:= *\[\(.*\)\]/\1/p' | tr -d '|')
echo "ip_endpoint_flags=$(echo $flags)"
i=0; results=""
for f in $flags; do
  i=$((i+1)); a=198.18.0.$i
  case "$f" in signal|subflow) combo=$f ;; *) combo="subflow $f" ;; esac
  if ip mptcp endpoint add $a dev lo $combo >/dev/null 2>&1 && ip mptcp endpoint show | grep -w "$a" | grep -qw "$f"; then
    results="$results $f:yes"
  else results="$results $f:kernel"; fi
done
echo "endpoint_flags=$(echo $results)"
ip mptcp endpoint flush 2>/dev/null
if ip addr add 198.18.1.1/32 dev lo 2>/dev/null && ip mptcp endpoint add 198.18.1.1 dev lo signal port 10099 >/dev/null 2>&1; then
  echo endpoint_port=yes; else echo endpoint_port=no; fi
ip mptcp endpoint flush 2>/dev/null
"""


@dataclass(frozen=True)
class KernelProbe:
    """What one probe container found. ``mptcp``: ``net.mptcp.enabled`` exists (the kernel has
    CONFIG_MPTCP); ``mptcp_knobs``: the MPTCP sysctls of :data:`MPTCP_KNOBS` this kernel has,
    with their values (``available_path_managers`` since 6.15, ``pm_type`` before it, since
    5.19; ``available_schedulers`` where the kernel has a scheduler choice)."""

    kernel: str
    iproute2: str
    iperf3: str
    mptcp: bool
    ip_mptcp: bool
    netem: bool
    htb: bool
    tbf: bool
    pfifo: bool
    arch: str = "?"
    mptcpize: str = "?"
    mptcp_enabled: str = ""
    mptcp_knobs: dict[str, str] = field(default_factory=dict)
    clsact: bool = False
    ifb: bool = False
    #: AQM leaf qdiscs (fq_codel, codel, pie, cake, red, fq) -> whether this kernel has them; {}: not probed
    aqm: dict[str, bool] = field(default_factory=dict)
    #: a clsact egress filter that drops everything (cls_bpf): what blackhole events use
    blackhole: bool = False
    #: net.mptcp.blackhole_timeout's default in a new namespace; None: the kernel has no such sysctl
    blackhole_timeout: int | None = None
    mptcp_limits: str = ""  # 'ip mptcp limits show' in a new namespace: the kernel's defaults
    #: endpoint flag -> "yes" (the image's iproute2 names it and the kernel keeps it) or
    #: "kernel" (iproute2 names it, the kernel refused or dropped it); flags the image's
    #: iproute2 does not name are absent (see :meth:`endpoint_flag_problem`)
    endpoint_flags: dict[str, str] = field(default_factory=dict)
    endpoint_port: bool = False  # a signal endpoint with its own port (listening socket)
    mptcpd: str = "missing"  # 'mptcpd --version' of the image, or "missing"
    mptcpd_plugins: tuple[str, ...] = ()  # the image's mptcpd plugins (sspi, addr_adv, mesh)
    ipv6: bool = True

    @property
    def path_managers(self) -> tuple[str, ...]:
        """What ``mptcp.path_manager`` may be here: net.mptcp.available_path_managers (6.15+),
        kernel and userspace where only net.mptcp.pm_type exists (5.19-6.14), else kernel."""
        if "available_path_managers" in self.mptcp_knobs:
            return tuple(self.mptcp_knobs["available_path_managers"].split())
        if "pm_type" in self.mptcp_knobs:
            return ("kernel", "userspace")
        return ("kernel",)

    @property
    def schedulers(self) -> tuple[str, ...]:
        """net.mptcp.available_schedulers (6.6+); () where the kernel has no scheduler choice."""
        return tuple(self.mptcp_knobs.get("available_schedulers", "").split())

    def path_manager_sysctls(self, path_manager: str) -> dict[str, str]:
        """The sysctls selecting ``path_manager`` on this kernel: net.mptcp.path_manager on
        6.15+, net.mptcp.pm_type (0 kernel, 1 userspace) before."""
        if "path_manager" in self.mptcp_knobs:
            return {"net.mptcp.path_manager": path_manager}
        if "pm_type" in self.mptcp_knobs:
            return {"net.mptcp.pm_type": "1" if path_manager == "userspace" else "0"}
        return {}

    @property
    def iproute2_version(self) -> tuple[int, ...]:
        """'ip utility, iproute2-6.15.0, libbpf 1.5.0' -> (6, 15, 0); () when unknown."""
        match = re.search(r"iproute2-(?:ss)?(\d+)\.(\d+)(?:\.(\d+))?", self.iproute2)
        return tuple(int(part) for part in match.groups() if part is not None) if match else ()

    @property
    def ss_mptcp_bytes(self) -> bool:
        """Whether the image's ``ss -M`` prints per-connection byte counters (iproute2 >= 6.5)."""
        return self.iproute2_version >= (6, 5)

    def endpoint_flag_problem(self, flag: str) -> str | None:
        """None when endpoints may carry ``flag`` here; else which side lacks it, in words."""
        state = self.endpoint_flags.get(flag)
        if state == "yes" or (not self.endpoint_flags and flag in BASE_ENDPOINT_FLAGS):
            return None  # an older probe did not test flags: the four basic ones always work
        if state == "kernel":
            return (f"the Docker host's kernel ({self.kernel}) does not keep the endpoint flag {flag!r} "
                    "(the probe added an endpoint with it and read it back without it)")
        since = FLAG_KERNEL_SINCE.get(flag)
        kernel = ""
        if since:
            has = _kernel_version(self.kernel) >= since
            kernel = (f"; the kernel ({self.kernel}) has it" if has else
                      f"; the kernel ({self.kernel}) lacks it too (it needs {'.'.join(map(str, since))}+)")
        return f"the node image's iproute2 ({self.iproute2_short}) does not know the endpoint flag {flag!r}{kernel}"

    @property
    def iproute2_short(self) -> str:
        return ".".join(map(str, self.iproute2_version)) or self.iproute2

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "KernelProbe":
        """From :meth:`to_dict` (also of older probes, which lack the later fields)."""
        values = {key: data[key] for key in cls.__dataclass_fields__ if key in data}
        if "mptcpd_plugins" in values:
            values["mptcpd_plugins"] = tuple(values["mptcpd_plugins"])  # type: ignore[arg-type]
        return cls(**values)  # type: ignore[arg-type]

    def missing_for(self, *, needs_netem: bool, needs_rate: bool) -> list[str]:
        missing = []
        if not self.mptcp:
            missing.append("MPTCP (CONFIG_MPTCP)")
        if not self.ip_mptcp:
            missing.append("'ip mptcp' in the node image's iproute2")
        if needs_rate and not self.htb:
            missing.append("the htb qdisc (sch_htb)")
        if needs_netem and not self.netem:
            missing.append("the netem qdisc (sch_netem)")
        return missing


def parse_probe(output: str) -> KernelProbe:
    values = dict(line.split("=", 1) for line in output.splitlines() if "=" in line)
    flag = lambda key: values.get(key) == "yes"  # noqa: E731
    return KernelProbe(
        kernel=values.get("kernel", "?"),
        iproute2=values.get("iproute2", "?"),
        iperf3=values.get("iperf3", "?"),
        mptcp=flag("mptcp"),
        ip_mptcp=flag("ip_mptcp"),
        netem=flag("netem"),
        htb=flag("htb"),
        tbf=flag("tbf"),
        pfifo=flag("pfifo"),
        arch=values.get("arch", "?"),
        mptcpize=values.get("mptcpize", "?"),
        mptcp_enabled=values.get("mptcp_enabled", ""),
        mptcp_knobs={knob: values[knob].strip() for knob in MPTCP_KNOBS if knob in values},
        clsact=flag("clsact"),
        ifb=flag("ifb"),
        blackhole=flag("blackhole"),
        blackhole_timeout=int(values["blackhole_timeout"]) if values.get("blackhole_timeout", "").isdigit() else None,
        mptcp_limits=values.get("mptcp_limits", "").strip(),
        aqm={key[4:]: value == "yes" for key, value in values.items() if key.startswith("aqm_")},
        endpoint_flags=dict(part.split(":", 1) for part in values.get("endpoint_flags", "").split() if ":" in part),
        endpoint_port=flag("endpoint_port"),
        mptcpd=values.get("mptcpd", "missing").strip() or "missing",
        mptcpd_plugins=tuple(values.get("mptcpd_plugins", "").split()),
        ipv6=values.get("ipv6", "yes") == "yes",
    )


def _kernel_version(release: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)\.(\d+)", release)
    return (int(match[1]), int(match[2])) if match else ()


def probe_kernel(image: str, lab: str = "probe") -> KernelProbe:
    """Run the probe in a short-lived container from ``image`` and parse what it found."""
    code, output = _run_throwaway(image, ["sh", "-c", _SCRIPT], lab, cap_add=["NET_ADMIN"])
    if code != 0:
        raise RuntimeFailure(f"kernel probe failed in image {image}: {output.strip()[-300:]}")
    return parse_probe(output)


@dataclass(frozen=True)
class PrivilegedCheck:
    """Whether this engine starts ``--privileged`` containers (labs need it only for nodes that
    ask for ``privileged: true``); ``detail`` is the engine's reason when it does not."""

    usable: bool
    detail: str


def check_privileged(image: str, lab: str = "probe") -> PrivilegedCheck:
    """Start a throwaway ``--privileged`` container from ``image`` running ``true``."""
    try:
        code, output = _run_throwaway(image, ["true"], lab, privileged=True)
    except APIError as exc:  # the engine refuses to start it: that is the answer
        return PrivilegedCheck(False, docker_api.first_line(exc))
    return PrivilegedCheck(code == 0, "started and exited 0" if code == 0 else f"exit {code}: {output.strip()[-200:]}")


def _run_throwaway(image: str, command: list[str], lab: str, **host: object) -> tuple[int, str]:
    """Run ``command`` in a labelled container with no network; (exit code, output). Always removed."""
    api = docker_api.client().api
    host_config = api.create_host_config(network_mode="none", init=True, **host)
    container = api.create_container(image, command=command, host_config=host_config,
                                     labels={docker_api.LABEL_LAB: lab, LABEL_ROLE: "probe"})
    cid = container["Id"]
    try:
        api.start(cid)
        status = api.wait(cid, timeout=60)
        output = api.logs(cid, stdout=True, stderr=True).decode(errors="replace")
    finally:
        docker_api.remove_container(cid)
    return int(status.get("StatusCode", -1)), output


def require_for_events(probe: KernelProbe, needs: list, source: str | None) -> None:
    """Raise (one line per problem, the first one) when an event asks for what the kernel lacks.

    ``needs`` are :class:`mptcpdock.plan.events.KernelNeed`: feature, field, line, what."""
    for need in needs:
        if need.feature == "netem" and not probe.netem:
            message = (f"{need.what}: the Docker host's kernel ({probe.kernel}) has no netem qdisc (sch_netem), "
                       f"so {need.field.rsplit('.', 1)[-1]} cannot change")
            fix = ("load sch_netem on the Docker host, or use one that has it (scripts/vm-host.sh starts a VM "
                   "whose kernel does); or remove the event")
        elif need.feature == "blackhole" and not probe.blackhole:
            message = (f"{need.what}: the Docker host's kernel ({probe.kernel}) cannot drop packets on an egress "
                       "(no clsact qdisc or no cls_bpf classifier)")
            fix = "use a kernel with CONFIG_NET_SCH_INGRESS and CONFIG_NET_CLS_BPF, or use 'state: down'"
        else:
            continue
        raise KernelFeatureError(TopologyError(message, field=need.field, fix=fix, source=source,
                                               line=need.line).render())


def require(probe: KernelProbe, *, netem_links: list[str], rate_links: bool, allow_no_impairments: bool,
            leaf_qdiscs: dict[str, list[str]] | None = None) -> bool:
    """Raise unless the kernel has what the plan needs (``leaf_qdiscs``: AQM qdisc -> the
    link ends asking for it; a missing one is never dropped silently).

    Returns True when delay/jitter/loss must be dropped (no netem, and the user opted in).
    """
    missing = probe.missing_for(needs_netem=False, needs_rate=rate_links)
    if missing:
        raise KernelFeatureError(
            f"the Docker host's kernel ({probe.kernel}) lacks " + ", ".join(missing)
            + "; use a Docker host whose kernel has them (e.g. a Debian or Ubuntu VM; Docker Desktop "
            "and WSL2 kernels have no MPTCP)"
        )
    for kind, where in (leaf_qdiscs or {}).items():
        if not probe.aqm.get(kind, False):
            shown = ", ".join(where[:4]) + (f" and {len(where) - 4} more" if len(where) > 4 else "")
            has = ", ".join(name for name, present in probe.aqm.items() if present) or "none of them"
            raise KernelFeatureError(
                f"qdisc {kind} on {shown}: the Docker host's kernel ({probe.kernel}) has no {kind} qdisc "
                f"(sch_{kind}; of the AQM qdiscs it has {has}). Fix: load sch_{kind} on the Docker host "
                "(modprobe), use a host whose kernel has it (scripts/vm-host.sh), or pick a qdisc it has")
    if netem_links and not probe.netem:
        if allow_no_impairments:
            return True
        shown = ", ".join(netem_links[:6]) + (f" and {len(netem_links) - 6} more" if len(netem_links) > 6 else "")
        raise KernelFeatureError(
            f"links {shown} ask for delay, jitter or loss (or netem's corrupt/duplicate/reorder), "
            "but the Docker host's kernel "
            f"({probe.kernel}) has no netem qdisc (sch_netem). Fix: load it on the Docker host "
            "(modprobe sch_netem; on Debian/Ubuntu it is in linux-modules-extra), or run with "
            "--allow-no-impairments (or 'allow_no_impairments: true' in the topology) to proceed "
            "with rates only; the lab will record and warn that impairments were dropped"
        )
    return False


def mptcp_needs(topology) -> bool:
    """Whether the topology asks for something only the probe can allow: a path manager, a
    scheduler, an endpoint flag beyond the basic four, an endpoint port, or IPv6."""
    for node in topology.nodes.values():
        mptcp = node.mptcp
        if mptcp.path_manager or mptcp.scheduler:
            return True
        if any(ep.port is not None or set(ep.flags) - set(BASE_ENDPOINT_FLAGS) for ep in mptcp.endpoints):
            return True
    if any(event.endpoint is not None and set(event.endpoint.flags) - set(BASE_ENDPOINT_FLAGS)
           for event in topology.events):
        return True
    return any(link.subnet6 for link in topology.links)


def require_for_mptcp(probe: KernelProbe, topology) -> None:
    """Raise a one-line :class:`KernelFeatureError` (file:line, field, what, fix) for the first
    MPTCP setting this Docker host's kernel or the node image cannot do."""
    def fail(field: str, message: str, fix: str) -> KernelFeatureError:
        return KernelFeatureError(TopologyError(message, field=field, fix=fix, source=topology.source,
                                                line=line_of(topology, field)).render())

    for name, node in topology.nodes.items():
        mptcp, path = node.mptcp, f"nodes.{name}.mptcp"
        if not mptcp.enabled:
            continue
        if mptcp.path_manager and mptcp.path_manager not in probe.path_managers:
            knob = ("net.mptcp.available_path_managers" if "available_path_managers" in probe.mptcp_knobs
                    else "no net.mptcp.pm_type: the userspace path manager needs 5.19+")
            raise fail(f"{path}.path_manager", f"the Docker host's kernel ({probe.kernel}) has no "
                       f"{mptcp.path_manager!r} path manager ({knob}: {' '.join(probe.path_managers)})",
                       "use one of: " + ", ".join(probe.path_managers))
        if mptcp.scheduler and mptcp.scheduler not in probe.schedulers:
            if probe.schedulers:
                raise fail(f"{path}.scheduler", f"the Docker host's kernel ({probe.kernel}) has no MPTCP scheduler "
                           f"{mptcp.scheduler!r}; net.mptcp.available_schedulers: {' '.join(probe.schedulers)}",
                           "use one of: " + ", ".join(probe.schedulers)
                           + " (others are BPF schedulers a kernel must register first)")
            raise fail(f"{path}.scheduler", f"the Docker host's kernel ({probe.kernel}) has no MPTCP scheduler "
                       "choice (no net.mptcp.scheduler: it needs 6.6+)", "remove 'scheduler:'")
        if mptcp.uses_mptcpd:
            if probe.mptcpd == "missing":
                raise fail(f"{path}.path_manager", "the node image has no mptcpd (/usr/libexec/mptcpd), which "
                           "drives the userspace path manager", "rebuild the node image (`mptcpdock image build`), "
                           "or write 'mptcpd: false' to run none")
            if probe.mptcpd_plugins and mptcp.mptcpd_plugin not in probe.mptcpd_plugins:
                raise fail(f"{path}.mptcpd", f"the node image's mptcpd has no plugin {mptcp.mptcpd_plugin!r}",
                           "use one of: " + ", ".join(probe.mptcpd_plugins))
        for index, endpoint in enumerate(mptcp.endpoints):
            field = f"{path}.endpoints[{index}]"
            for flag in endpoint.flags:
                problem = probe.endpoint_flag_problem(flag)
                if problem:
                    raise fail(f"{field}.flags", problem, _flag_fix(probe, flag))
            if endpoint.port is not None and probe.endpoint_flags and not probe.endpoint_port:
                raise fail(f"{field}.port", "the Docker host's kernel or the image's iproute2 cannot give an endpoint "
                           "its own port (the probe's signal endpoint with a port failed)", "remove the port")
    for index, event in enumerate(topology.events):
        if event.endpoint is None:
            continue
        for flag in event.endpoint.flags:
            problem = probe.endpoint_flag_problem(flag)
            if problem:
                raise fail(f"events[{index}].endpoint.flags", problem, _flag_fix(probe, flag))
    if not probe.ipv6:
        for index, link in enumerate(topology.links):
            if link.subnet6:
                raise fail(f"links[{index}].subnet6", f"the Docker host's kernel ({probe.kernel}) has no IPv6",
                           "use IPv4 links (family: ipv4), or a Docker host with IPv6")


def _flag_fix(probe: KernelProbe, flag: str) -> str:
    usable = [name for name, state in probe.endpoint_flags.items() if state == "yes"] or list(BASE_ENDPOINT_FLAGS)
    if flag in probe.endpoint_flags:  # iproute2 has it, the kernel does not
        return f"use a Docker host whose kernel has it, or drop the flag (usable here: {', '.join(usable)})"
    if flag in FLAG_KERNEL_SINCE or flag in ("laminar",):
        return (f"build the node image on an iproute2 that knows it (Debian's next release, or a backport), "
                f"or drop the flag (usable here: {', '.join(usable)})")
    return f"check the spelling; endpoint flags usable here: {', '.join(usable)}"
