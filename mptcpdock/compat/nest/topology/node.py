"""NeST's ``Node`` and ``Router``: each becomes one container of the lab."""

from __future__ import annotations

from typing import Any

import sys
import time
from pathlib import Path

from ....api import NodeRef, caller_location, is_capturing
from ....errors import TopologyError
from ....runtime.docker_api import run_exec
from ....runtime.progress import phase_lines
from .. import _live
from .._session import session
from .._unsupported import unsupported_attribute
from .address import Address
from .interface import Interface


class Node:
    """A host. MPTCP is on, as in NeST."""

    _kind = "host"

    def __init__(self, name: str) -> None:
        if not name:
            raise ValueError("Node name can't be an empty string")
        current = session()
        if name in current.nodes:
            source, line = caller_location()
            raise TopologyError(f"node {name!r} exists already", source=source, line=line,
                                fix="give every node its own name (they name the containers)")
        self._name = name
        self.ref: NodeRef = (current.lab.router(name) if self._kind == "router" else current.lab.host(name))
        self._interfaces: list[Interface] = []
        current.nodes[name] = self

    @property
    def name(self) -> str:
        return self._name

    @property
    def id(self) -> str:
        return self._name

    @property
    def interfaces(self) -> list[Interface]:
        return list(self._interfaces)

    @property
    def is_mptcp(self) -> bool:
        return self.ref.model.mptcp.enabled

    # MPTCP --------------------------------------------------------------------------------
    def enable_mptcp(self) -> None:
        """MPTCP on. Like NeST (``ip mptcp endpoint flush``), this forgets the node's endpoints."""
        self.ref.model.mptcp.enabled = True
        self.ref.model.mptcp.endpoints.clear()

    def disable_mptcp(self) -> None:
        """MPTCP off (``net.mptcp.enabled=0``); forgets the node's endpoints, as NeST does."""
        self.ref.model.mptcp.enabled = False
        self.ref.model.mptcp.endpoints.clear()

    def set_mptcp_parameters(self, max_subflows: int, max_add_addr_accepted: int) -> None:
        """``ip mptcp limits set subflows N add_addr_accepted M``."""
        self.ref.mptcp(subflows=int(max_subflows), add_addr_accepted=int(max_add_addr_accepted))

    def add_mptcp_monitor(self) -> None:
        """One ``ip mptcp monitor`` on this node for the whole experiment (however many flows)."""
        self.ref.monitor()

    def get_mptcp_endpoints(self) -> dict[str, tuple[str, ...]]:
        endpoints: dict[str, tuple[str, ...]] = {}
        for interface in self._interfaces:
            endpoints.update(interface.get_mptcp_endpoints())
        return endpoints

    def is_mptcp_supported(self) -> bool:
        """Multihomed (two or more interfaces) and multiaddressed (in two or more subnets)."""
        subnets = {interface.subnet() for interface in self._interfaces}
        return len(self._interfaces) > 1 and len(subnets - {None}) > 1

    # routes -------------------------------------------------------------------------------
    def add_route(self, dest_addr: "str | Address", via_interface: Interface,
                  next_hop_addr: "str | Address | None" = None) -> None:
        """A static route to ``dest_addr``'s subnet ("DEFAULT": the default route), leaving by
        ``via_interface`` towards its peer (or ``next_hop_addr``)."""
        source, line = caller_location()
        if not isinstance(via_interface, Interface) or via_interface.node is not self:
            raise TopologyError(f"{via_interface!r} is not an interface of node {self.name!r}", source=source,
                                line=line, fix="route through one of this node's own interfaces")
        destination = Address(dest_addr)
        if destination.is_default():
            to = "default"
        elif "/" in destination.get_addr():
            to = destination.get_subnet()
        else:
            to = destination.get_addr()
        via = Address(next_hop_addr).get_addr(with_subnet=False) if next_hop_addr is not None else None
        self.ref.route(to, dev=via_interface.name, via=via)

    # other NeST node settings that map onto the model ---------------------------------------
    def configure_tcp_param(self, param: str, value: Any) -> None:
        """``net.ipv4.tcp_<param>`` in this node (set when its container is created; NeST runs
        ``sysctl -w`` at once). The congestion algorithm of add_tcp_flow/add_mptcp_flow
        overrides ``congestion_control``, as in NeST."""
        self.ref.sysctl(f"net.ipv4.tcp_{param}", value)

    def configure_udp_param(self, param: str, value: Any) -> None:
        """``net.ipv4.udp_<param>`` in this node (set when its container is created)."""
        self.ref.sysctl(f"net.ipv4.udp_{param}", value)

    # packets ------------------------------------------------------------------------------
    def capture_packets(self, interface: Interface | None = None, packet_count: int | None = None,
                        timeout: int | None = None, output_file: str | None = None,
                        output_format: str | None = None, **kwargs: Any) -> None:
        """Record what ``interface`` (default: every interface of this node) sends and receives
        during the experiment: tcpdump, started before the flows and stopped after them, into
        the results' ``captures/<node>-<interface>.pcap`` (headers: the topology's snaplen,
        200 bytes). ``packet_count``: keep the first N packets (tshark -c N). A copy goes where
        NeST writes it: ``packet_capture/OUTPUT_FILE`` in the current directory (default name
        ``<node>_<interface>_<time>``; ``output_file`` needs an interface)."""
        source, line = caller_location()

        def refuse(what: str, fix: str) -> TopologyError:
            return TopologyError(f"capture_packets({what}) is not supported by mptcpdock", source=source, line=line,
                                 fix=fix)

        if timeout is not None:
            raise refuse("timeout=...", "drop timeout (the capture covers the whole experiment) or use packet_count")
        if output_format is not None:
            raise refuse("output_format=...", "drop it: captures are pcap files (open them in Wireshark or tshark)")
        if kwargs:
            raise refuse(", ".join(f"{key}=..." for key in sorted(kwargs)),
                         "drop them (tcpdump records headers; the snaplen is the topology's)")
        if interface is not None and (not isinstance(interface, Interface) or interface.node is not self):
            raise TopologyError(f"{interface!r} is not an interface of node {self.name!r}", source=source, line=line,
                                fix="capture on one of this node's own interfaces")
        if output_file is not None and interface is None:
            raise refuse("output_file=... without an interface",
                         "name the interface: a capture of a whole node is one pcap per interface")
        if packet_count is not None and (isinstance(packet_count, bool) or int(packet_count) < 1):
            raise TopologyError(f"packet_count {packet_count!r} is not a positive number", source=source, line=line,
                                fix="write e.g. packet_count=100")
        targets = [interface] if interface is not None else self._interfaces
        if not targets:
            raise TopologyError(f"node {self.name!r} has no interface to capture on", source=source, line=line,
                                fix="connect it first")
        stamp = time.strftime("%d-%m-%Y-%H:%M:%S")  # NeST's default file name: <node>_<interface>_<time>
        for target in targets:
            link = target.ref.lab.topology.links[target.ref.link_index]
            (link.a if target.ref.side == 0 else link.b).capture = True
            if packet_count is not None:
                session().capture_counts[(self.name, target.name)] = int(packet_count)
            file = output_file if output_file is not None else f"{self.name}_{target.name}_{stamp}"
            session().capture_files[(self.name, target.name)] = str(Path("packet_capture", file).resolve())

    def ping(self, destination_address: "str | Address", preload: int = 1, packets: int = 5,
             verbose: int = 2) -> bool:
        """``ping -l PRELOAD -c PACKETS`` from this node, now: True when it succeeds.

        The network runs from here on: the model as built so far is brought up (the lab
        Experiment.run() reuses when nothing changes after the ping). During an export
        (``mptcpdock export``), nothing runs and ping returns True."""
        if verbose not in (0, 1, 2):
            raise ValueError(f"Verbose parameter value is {verbose}. It should be 0, 1 or 2.")
        address = Address(destination_address).get_addr(with_subnet=False)
        if is_capturing():
            return True
        name = _live.lab_name()
        live = _live.up_now(name, phase_lines(lambda message: print(f"  {message}", file=sys.stderr, flush=True)))
        if verbose == 2:
            print(f"\n=== PING from {self.name} to {address} ===\n", flush=True)
        result = run_exec(live.up.state.container(self.name),
                          ["ping", "-l", str(int(preload)), "-c", str(int(packets)), address])
        if verbose == 2:
            print((result.stdout + result.stderr).rstrip(), flush=True)
        status = result.exit_code == 0
        if verbose == 1:
            outcome = "SUCCESS :" if status else "FAILURE:"
            print(f"\n{outcome} === PING from {self.name} to {address} ===\n", flush=True)
        return status

    def _add_interface(self, interface: Interface) -> None:
        self._interfaces.append(interface)

    def __getattr__(self, name: str) -> Any:
        return unsupported_attribute("Node", name)

    def __enter__(self) -> None:
        unsupported_attribute("Node", "__enter__")()

    def __exit__(self, *args: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Router(Node):
    """A node that forwards (``net.ipv4.ip_forward=1``)."""

    _kind = "router"
