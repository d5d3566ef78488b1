"""Probe the Docker host's kernel, from a throwaway container, for what labs need.

Containers share the Docker host's kernel (on macOS/Windows: the VM's), so the probe
must run there, not on the machine running mptcpdock. It tries each qdisc on the
container's own loopback device, which touches nothing outside that container.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import KernelFeatureError, RuntimeFailure
from . import docker_api
from .docker_api import LABEL_ROLE

QDISCS = ("netem", "htb", "tbf", "pfifo")

# A fixed script: no user input reaches it.
_SCRIPT = r"""
try() { if tc qdisc add dev lo root handle 1: "$@" >/dev/null 2>&1; then tc qdisc del dev lo root; echo yes; else echo no; fi; }
echo "kernel=$(uname -r)"
echo "iproute2=$(ip -V 2>&1 | tr -d '\n')"
echo "iperf3=$(iperf3 --version 2>&1 | head -n1)"
if [ -e /proc/sys/net/mptcp/enabled ]; then echo mptcp=yes; else echo mptcp=no; fi
if ip mptcp limits show >/dev/null 2>&1; then echo ip_mptcp=yes; else echo ip_mptcp=no; fi
echo "netem=$(try netem delay 1ms)"
echo "htb=$(try htb default 1)"
echo "tbf=$(try tbf rate 1mbit burst 32kbit latency 50ms)"
echo "pfifo=$(try pfifo limit 10)"
"""


@dataclass(frozen=True)
class KernelProbe:
    kernel: str
    iproute2: str
    iperf3: str
    mptcp: bool
    ip_mptcp: bool
    netem: bool
    htb: bool
    tbf: bool
    pfifo: bool

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "KernelProbe":
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})  # type: ignore[arg-type]

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
    )


def probe_kernel(image: str, lab: str = "probe") -> KernelProbe:
    """Run the probe in a short-lived container from ``image`` and parse what it found."""
    api = docker_api.client().api
    host_config = api.create_host_config(cap_add=["NET_ADMIN"], network_mode="none", init=True)
    container = api.create_container(
        image,
        command=["sh", "-c", _SCRIPT],
        host_config=host_config,
        labels={docker_api.LABEL_LAB: lab, LABEL_ROLE: "probe"},
    )
    cid = container["Id"]
    try:
        api.start(cid)
        status = api.wait(cid, timeout=60)
        output = api.logs(cid, stdout=True, stderr=True).decode(errors="replace")
    finally:
        docker_api.remove_container(cid)
    if status.get("StatusCode") != 0:
        raise RuntimeFailure(f"kernel probe failed in image {image}: {output.strip()[-300:]}")
    return parse_probe(output)


def require(probe: KernelProbe, *, netem_links: list[str], rate_links: bool, allow_no_impairments: bool) -> bool:
    """Raise unless the kernel has what the plan needs.

    Returns True when delay/jitter/loss must be dropped (no netem, and the user opted in).
    """
    missing = probe.missing_for(needs_netem=False, needs_rate=rate_links)
    if missing:
        raise KernelFeatureError(
            f"the Docker host's kernel ({probe.kernel}) lacks " + ", ".join(missing)
            + "; use a Docker host whose kernel has them (e.g. a Debian or Ubuntu VM; Docker Desktop "
            "and WSL2 kernels have no MPTCP)"
        )
    if netem_links and not probe.netem:
        if allow_no_impairments:
            return True
        shown = ", ".join(netem_links[:6]) + (f" and {len(netem_links) - 6} more" if len(netem_links) > 6 else "")
        raise KernelFeatureError(
            f"links {shown} ask for delay, jitter or loss, but the Docker host's kernel "
            f"({probe.kernel}) has no netem qdisc (sch_netem). Fix: load it on the Docker host "
            "(modprobe sch_netem; on Debian/Ubuntu it is in linux-modules-extra), or run with "
            "--allow-no-impairments (or 'allow_no_impairments: true' in the topology) to proceed "
            "with rates only; the lab will record and warn that impairments were dropped"
        )
    return False
