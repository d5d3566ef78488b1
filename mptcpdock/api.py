"""Build, run and read a lab from Python: the same model and pipeline as the YAML path.

A :class:`Lab` holds a :class:`mptcpdock.topology.model.Topology` and edits it through small typed
calls; everything after that (validate, plan, up, run, down) is the code the CLI uses::

    from mptcpdock.api import Lab

    lab = Lab("ex1")
    h1, h2 = lab.host("h1"), lab.host("h2")
    r1, r2 = lab.router("r1"), lab.router("r2")
    lab.link(h1, r1, subnet="10.0.0.0/24", rate="100mbit", delay="10ms", interfaces=("eth1a", "etr1a"))
    lab.link(r1, r2, subnet="12.0.0.0/24", rate="100mbit", delay="10ms", interfaces=("etr1b", "etr2a"))
    lab.link(r2, h2, subnet="192.168.10.0/24", rate="10mbit", delay="10ms", interfaces=("etr2b", "eth2a"))
    lab.link(r2, h2, subnet="192.168.11.0/24", rate="10mbit", delay="10ms", interfaces=("etr2c", "eth2b"))
    h1.route("default", dev="eth1a")
    r1.route("192.168.10.0/24", dev="etr1b").route("192.168.11.0/24", dev="etr1b")
    r2.route("10.0.0.0/24", dev="etr2a")
    h2.route("10.0.0.0/24", dev="eth2a")
    h1.mptcp(subflows=1, add_addr_accepted=1, endpoints={"eth1a": ["subflow"]})
    h2.mptcp(subflows=1, add_addr_accepted=1, endpoints={"eth2b": ["signal"]}, monitor=True)
    lab.flow(h1, h2, dst_address="192.168.10.2", duration=20)

    print(lab.to_yaml())                       # the equivalent topology file
    with lab.running(allow_no_impairments=True):
        result = lab.run()                     # results/<lab>-<timestamp>/, summary.json
    print(result.results_dir)

``lab.topology`` is the model itself (what ``to_yaml`` writes); ``lab.resolved()`` is the
validated copy with every default filled in (interface names, addresses, ports).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import ipaddress
import os
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from .errors import TopologyError
from .experiment.runner import RunResult, run_experiment
from .experiment.sweep import SweepResult, run_sweep
from .plan.commands import Plan
from .runtime import lab as lab_api
from .runtime.apply import UpResult
from .runtime.docker_api import ExecResult, run_exec
from .runtime.state import LabState
from .topology.loader import load_topology, topology_to_yaml
from .topology.model import Endpoint, EndpointChange, EngineSpec, Event, Flow, Link, LinkEnd, Mptcp, Node, Route, Shaping, Topology
from .topology.traces import TraceError, load_trace
from .topology.units import UnitError, parse_bytes, parse_percent, parse_rate, parse_seconds, parse_time_us
from .topology.validate import validate

Progress = Callable[[str], None]
_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def _quiet(_: str) -> None:
    return None


# -- where a call came from (for error messages that name the script's line) -------------------

def caller_location() -> tuple[str | None, int | None]:
    """File and line of the first caller outside the mptcpdock package."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            filename = frame.f_code.co_filename
            if not str(Path(filename).resolve()).startswith(_PACKAGE_DIR + os.sep):
                return filename, frame.f_lineno
            frame = frame.f_back
        return None, None
    finally:
        del frame


# -- export capture: run a script up to the point where it would touch Docker ----------------------

class ExportStop(BaseException):
    """Raised by ``up``/``run`` while :func:`capturing` is active: the script stops there.

    A BaseException, so that a script's own ``except Exception`` does not swallow it."""


_captured: list[Topology] | None = None


@contextlib.contextmanager
def capturing() -> Iterator[list[Topology]]:
    """While active, ``Lab.up``/``Lab.run`` (and the NeST layer's ``Experiment.run``) record
    a copy of their topology and raise :class:`ExportStop` instead of touching Docker."""
    global _captured
    previous, _captured = _captured, []
    try:
        yield _captured
    finally:
        _captured = previous


def is_capturing() -> bool:
    """Whether an export is running the script (nothing may touch Docker)."""
    return _captured is not None


def stop_if_capturing(topology: Topology) -> None:
    """Record ``topology`` and stop the script when an export is capturing."""
    if _captured is not None:
        _captured.append(copy.deepcopy(topology))
        raise ExportStop()


# -- values ---------------------------------------------------------------------------------------

def _unit(parse: Callable[[Any], Any], value: Any, field: str, source: str | None, line: int | None) -> Any:
    try:
        return parse(value)
    except UnitError as exc:
        raise TopologyError(str(exc), field=field, fix=exc.fix, source=source, line=line) from None


def _trace(path: str | Path | None, field: str, source: str | None, line: int | None):
    if path is None:
        return None
    file = Path(path)
    if not file.is_absolute():
        file = (Path(source).resolve().parent if source else Path.cwd()) / file
    try:
        return load_trace(file)
    except OSError as exc:
        raise TopologyError(f"cannot read trace {str(path)!r}: {exc.strerror or exc}", field=field, source=source,
                            line=line, fix="give the path of a Mahimahi or time,rate CSV file (relative to the "
                                            "script)") from None
    except TraceError as exc:
        raise TopologyError(f"trace {str(path)!r}: {exc}", field=field, fix=exc.fix, source=source,
                            line=line) from None


def shaping(*, rate: str | int | None = None, delay: str | int | float | None = None,
            jitter: str | int | float | None = None, loss: str | float | None = None,
            queue: int | None = None, trace: str | Path | None = None, field: str = "shaping",
            source: str | None = None, line: int | None = None) -> Shaping:
    """A :class:`Shaping` from the units people write ('10mbit', '10ms', '1%'); ``trace``: a
    bandwidth trace file (Mahimahi, or time,rate CSV) the rate follows during runs."""
    return Shaping(
        trace=_trace(trace, f"{field}.trace", source, line),
        rate=None if rate is None else _unit(parse_rate, rate, f"{field}.rate", source, line),
        delay=None if delay is None else _unit(parse_time_us, delay, f"{field}.delay", source, line),
        jitter=None if jitter is None else _unit(lambda v: parse_time_us(v, what="jitter"), jitter,
                                                 f"{field}.jitter", source, line),
        loss=None if loss is None else _unit(parse_percent, loss, f"{field}.loss", source, line),
        queue=queue,
    )


def flow_model(src: "NodeRef | str", dst: "NodeRef | str", *, duration: float | str | None = None,
               start: float | str = 0, stop: float | str | None = None,
               dst_address: "str | InterfaceRef | None" = None, src_address: "str | InterfaceRef | None" = None,
               streams: int = 1, protocol: str = "mptcp", congestion: str | None = None,
               port: int | None = None, reverse: bool = False, name: str | None = None,
               tool: str = "iperf3", baseline: bool = False, bitrate: int | str | None = None,
               bytes: int | str | None = None, command: Sequence[str] = (), server: Sequence[str] = (),
               field: str = "flow", source: str | None = None) -> Flow:
    """A model :class:`Flow` from the values people write (times in seconds or '20s')."""
    line = caller_location()[1]
    begin = _unit(lambda v: parse_seconds(v, what="start"), start, f"{field}.start", source, line)
    if duration is not None and stop is not None:
        raise TopologyError("both duration and stop are given", field=f"{field}.stop", source=source, line=line,
                            fix="keep one of them")
    length = 10.0
    if duration is not None:
        length = _unit(lambda v: parse_seconds(v, what="duration"), duration, f"{field}.duration", source, line)
    if stop is not None:
        end = _unit(lambda v: parse_seconds(v, what="stop"), stop, f"{field}.stop", source, line)
        if end <= begin:
            raise TopologyError(f"stop {end:g}s is not after start {begin:g}s", field=f"{field}.stop",
                                source=source, line=line, fix="make stop later than start, or give a duration")
        length = end - begin
    for key, argv in (("command", command), ("server", server)):
        if isinstance(argv, str):
            raise TopologyError(f"{key} is one text, not an argument list (no shell runs it)", field=f"{field}.{key}",
                                source=source, line=line, fix=f"pass a list, e.g. {key}=['curl', '-s', URL]")
    return Flow(
        src=_node_name(src)[0], dst=_node_name(dst)[0], name=name,
        dst_address=dst_address.address if isinstance(dst_address, InterfaceRef) else dst_address,
        src_address=src_address.address if isinstance(src_address, InterfaceRef) else src_address,
        start=begin, duration=length, streams=streams, protocol=protocol, congestion=congestion,
        tool=tool, port=port, reverse=reverse, baseline=baseline,
        bitrate=None if bitrate is None else _unit(parse_rate, bitrate, f"{field}.bitrate", source, line),
        bytes=None if bytes is None else _unit(parse_bytes, bytes, f"{field}.bytes", source, line),
        command=[str(arg) for arg in command], server=[str(arg) for arg in server],
    )


# -- handles --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InterfaceRef:
    """One end of a link: ``lab.link(...).a`` / ``.b``. Name and address are the resolved
    ones (the defaults validation fills in when the link does not give them)."""

    lab: "Lab"
    link_index: int
    side: int  # 0: the link's first end, 1: its second

    @property
    def node(self) -> str:
        return self._end(self.lab.topology).node

    @property
    def name(self) -> str:
        return self._end(self.lab.resolved()).interface or ""

    @property
    def address(self) -> str:
        return self._end(self.lab.resolved()).address or ""

    @property
    def subnet(self) -> str:
        return self.lab.resolved().links[self.link_index].subnet or ""

    @property
    def peer(self) -> "InterfaceRef":
        return InterfaceRef(self.lab, self.link_index, 1 - self.side)

    def _end(self, topology: Topology) -> LinkEnd:
        link = topology.links[self.link_index]
        return link.a if self.side == 0 else link.b

    def pin_name(self) -> str:
        """Write the resolved interface name into the model (so routes can refer to it)."""
        end = self._end(self.lab.topology)
        if end.interface is None:
            end.interface = self.name
        return end.interface


@dataclass(frozen=True)
class LinkRef:
    """A link of the lab: ``lab.link(...)``."""

    lab: "Lab"
    index: int

    @property
    def model(self) -> Link:
        return self.lab.topology.links[self.index]

    @property
    def name(self) -> str:
        return self.lab.resolved().links[self.index].name or ""

    @property
    def a(self) -> InterfaceRef:
        return InterfaceRef(self.lab, self.index, 0)

    @property
    def b(self) -> InterfaceRef:
        return InterfaceRef(self.lab, self.index, 1)

    @property
    def subnet(self) -> str:
        return self.lab.resolved().links[self.index].subnet or ""

    def interface(self, node: "NodeRef | str") -> InterfaceRef:
        name = node.name if isinstance(node, NodeRef) else node
        if self.model.a.node == name:
            return self.a
        if self.model.b.node == name:
            return self.b
        raise TopologyError(f"link {self.index} does not touch node {name!r}", field=f"links[{self.index}]",
                            fix=f"use {self.model.a.node!r} or {self.model.b.node!r}")

    def egress(self, node: "NodeRef | str", **values: Any) -> "LinkRef":
        """Shape only what ``node`` sends into this link (over the link's own shaping)."""
        name = node.name if isinstance(node, NodeRef) else node
        self.interface(name)
        self.model.egress[name] = shaping(field=f"links[{self.index}].egress.{name}", **values)
        return self


@dataclass(frozen=True)
class NodeRef:
    """A node of the lab: ``lab.host(...)`` / ``lab.router(...)``. Every method returns the
    node, so calls chain."""

    lab: "Lab"
    name: str

    @property
    def model(self) -> Node:
        return self.lab.topology.nodes[self.name]

    @property
    def interfaces(self) -> dict[str, str]:
        """interface -> address (resolved)."""
        resolved = self.lab.resolved()
        return {link.end(self.name).interface or "": link.end(self.name).address or ""
                for link in resolved.links_of(self.name)}

    def address(self, interface: str | None = None) -> str:
        """The address of ``interface`` (default: the node's first interface)."""
        addresses = self.interfaces
        if not addresses:
            raise TopologyError(f"node {self.name!r} has no links", field=f"nodes.{self.name}", fix="link it first")
        if interface is None:
            return next(iter(addresses.values()))
        if interface not in addresses:
            raise TopologyError(f"node {self.name!r} has no interface {interface!r}", field=f"nodes.{self.name}",
                                fix="use one of: " + ", ".join(addresses))
        return addresses[interface]

    def route(self, to: "str | InterfaceRef | LinkRef", *, via: str | None = None, dev: "str | InterfaceRef | None" = None,
              link: "LinkRef | str | None" = None, metric: int | None = None) -> "NodeRef":
        """A static route. ``to``: 'default', a prefix or address, or an interface/link (its
        subnet). Next hop: ``via`` (an address), ``dev`` (an interface: its peer) or ``link``."""
        destination = self.lab._route_destination(to, f"nodes.{self.name}.routes[{len(self.model.routes)}].to")
        if isinstance(dev, InterfaceRef):
            if dev.node != self.name:
                raise TopologyError(f"interface {dev.name!r} belongs to {dev.node!r}, not {self.name!r}",
                                    field=f"nodes.{self.name}.routes", fix="route through one of this node's interfaces")
            dev = dev.pin_name()
        link_name = None
        if isinstance(link, LinkRef):
            link_name = self.lab._pin_link_name(link)
        elif link is not None:
            link_name = link
        self.model.routes.append(Route(to=destination, via=via, dev=dev, link=link_name, metric=metric))
        self.lab._locate(f"nodes.{self.name}.routes[{len(self.model.routes) - 1}]")
        return self

    def mptcp(self, *, enabled: bool | None = None, subflows: int | None = None,
              add_addr_accepted: int | None = None,
              endpoints: Mapping[str, Sequence[str] | str] | None = None,
              monitor: bool | None = None) -> "NodeRef":
        """Set what is given: MPTCP on/off, the limits, endpoints (added), the monitor."""
        settings = self.model.mptcp
        if enabled is not None:
            settings.enabled = enabled
        if subflows is not None:
            settings.subflows = subflows
        if add_addr_accepted is not None:
            settings.add_addr_accepted = add_addr_accepted
        for interface, flags in (endpoints or {}).items():
            self.endpoint(interface, *([flags] if isinstance(flags, str) else flags))
        if monitor is not None:
            settings.monitor = monitor
        self.lab._locate(f"nodes.{self.name}.mptcp")
        return self

    def endpoint(self, interface: "str | InterfaceRef", *flags: str, address: str | None = None) -> "NodeRef":
        """An MPTCP endpoint (``ip mptcp endpoint add``) on one of this node's interfaces."""
        if isinstance(interface, InterfaceRef):
            interface = interface.pin_name()
        field = f"nodes.{self.name}.mptcp.endpoints[{len(self.model.mptcp.endpoints)}]"
        self.model.mptcp.endpoints.append(Endpoint(interface=interface, flags=tuple(flags) or ("subflow",),
                                                   address=address))
        self.lab._locate(field)
        return self

    def monitor(self, on: bool = True) -> "NodeRef":
        """Run one ``ip mptcp monitor`` on this node during experiments."""
        self.model.mptcp.monitor = on
        return self

    def sysctl(self, key: str, value: str | int) -> "NodeRef":
        self.model.sysctls[key] = str(value)
        return self


def _node_name(node: "NodeRef | str") -> tuple[str, str | None]:
    """'h1' / 'h1:eth0' / NodeRef -> (node, interface or None)."""
    if isinstance(node, NodeRef):
        return node.name, None
    name, _, interface = str(node).partition(":")
    return name, interface or None


# -- the lab --------------------------------------------------------------------------------------

class Lab:
    """A lab described in Python. See the module documentation for an example."""

    def __init__(self, name: str, *, routing: str = "static", source_routing: bool | None = None,
                 address_pool: str = "10.0.0.0/8", link_prefix: int = 24,
                 allow_no_impairments: bool = False, placement: str = "manual", overlays: str = "crossing",
                 mtu: int | None = None, gso_max_segs: int | str = "auto") -> None:
        source, line = caller_location()
        self.topology = Topology(name=name, routing=routing, source_routing=source_routing,  # type: ignore[arg-type]
                                 address_pool=address_pool, link_prefix=link_prefix,
                                 allow_no_impairments=allow_no_impairments, source=source,
                                 placement=placement, overlays=overlays, mtu=mtu,
                                 gso_max_segs=gso_max_segs)
        if line:
            self.topology.locations["name"] = line

    # construction from other forms ----------------------------------------------------------
    @classmethod
    def from_topology(cls, topology: Topology) -> "Lab":
        """Wrap an existing model (it is used, not copied)."""
        lab = cls.__new__(cls)
        lab.topology = topology
        return lab

    @classmethod
    def load(cls, path: str | Path, *, name: str | None = None) -> "Lab":
        """A lab from a topology YAML file."""
        return cls.from_topology(load_topology(path, name=name))

    @property
    def name(self) -> str:
        return self.topology.name

    @name.setter
    def name(self, value: str) -> None:
        self.topology.name = value

    # engines (docs/multi-host.md) -------------------------------------------------------------
    def engine(self, name: str, *, host: str | None = None, context: str | None = None) -> str:
        """Declare an engine (``engines: {NAME: {host: URL}}``); neither: the environment's. Returns
        ``name``, for ``host(..., engine=name)``."""
        self.topology.engines[name] = EngineSpec(name=name, host=host, context=context)
        self._locate(f"engines.{name}")
        return name

    # nodes, links, flows --------------------------------------------------------------------
    def host(self, name: str, *, image: str | None = None, mptcp: bool = True, engine: str | None = None) -> NodeRef:
        return self._add_node(name, "host", image, mptcp, engine)

    def router(self, name: str, *, image: str | None = None, mptcp: bool = True,
               engine: str | None = None) -> NodeRef:
        return self._add_node(name, "router", image, mptcp, engine)

    def node(self, name: str) -> NodeRef:
        if name not in self.topology.nodes:
            raise TopologyError(f"no node {name!r}", field="nodes", fix="nodes: " + ", ".join(self.topology.nodes))
        return NodeRef(self, name)

    @property
    def nodes(self) -> list[NodeRef]:
        return [NodeRef(self, name) for name in self.topology.nodes]

    def _add_node(self, name: str, kind: str, image: str | None, mptcp: bool, engine: str | None = None) -> NodeRef:
        if name in self.topology.nodes:
            raise TopologyError(f"node {name!r} exists already", field=f"nodes.{name}",
                                source=self.topology.source, line=caller_location()[1],
                                fix="give every node its own name")
        self.topology.nodes[name] = Node(name=name, kind=kind, image=image, mptcp=Mptcp(enabled=mptcp),  # type: ignore[arg-type]
                                         engine=engine)
        self._locate(f"nodes.{name}")
        return NodeRef(self, name)

    def link(self, a: "NodeRef | str", b: "NodeRef | str", *, subnet: str | None = None,
             rate: str | int | None = None, delay: str | int | float | None = None,
             jitter: str | int | float | None = None, loss: str | float | None = None,
             queue: int | None = None, interfaces: tuple[str | None, str | None] | None = None,
             addresses: tuple[str | None, str | None] | None = None, name: str | None = None,
             cost: int = 1, egress: Mapping["NodeRef | str", Mapping[str, Any]] | None = None,
             trace: str | Path | None = None) -> LinkRef:
        """Join two nodes. ``a``/``b`` are nodes or 'node:interface'. Shaping applies to both
        directions; ``egress={node: {...}}`` overrides what one node sends."""
        index = len(self.topology.links)
        field = f"links[{index}]"
        source, line = self.topology.source, caller_location()[1]
        (a_node, a_if), (b_node, b_if) = _node_name(a), _node_name(b)
        if interfaces:
            a_if, b_if = interfaces[0] or a_if, interfaces[1] or b_if
        a_addr, b_addr = addresses or (None, None)
        link = Link(
            a=LinkEnd(node=a_node, interface=a_if, address=a_addr),
            b=LinkEnd(node=b_node, interface=b_if, address=b_addr),
            name=name, subnet=subnet, cost=cost,
            shaping=shaping(rate=rate, delay=delay, jitter=jitter, loss=loss, queue=queue, trace=trace,
                            field=field, source=source, line=line),
        )
        self.topology.links.append(link)
        self._locate(field)
        ref = LinkRef(self, index)
        for node, values in (egress or {}).items():
            ref.egress(node, **values)
        return ref

    def flow(self, src: "NodeRef | str", dst: "NodeRef | str", *, duration: float | str | None = None,
             start: float | str = 0, stop: float | str | None = None,
             dst_address: "str | InterfaceRef | None" = None, src_address: "str | InterfaceRef | None" = None,
             streams: int = 1, protocol: str = "mptcp", congestion: str | None = None,
             port: int | None = None, reverse: bool = False, name: str | None = None,
             tool: str = "iperf3", baseline: bool = False, bitrate: int | str | None = None,
             bytes: int | str | None = None, command: Sequence[str] = (), server: Sequence[str] = ()) -> Flow:
        """A flow from ``src`` to ``dst`` (default 10 s; give ``duration`` or ``stop``).
        ``baseline``: after the run, single-path TCP over each path this MPTCP flow used.
        ``protocol="udp"`` with ``bitrate`` (e.g. "5mbit"): cross traffic (loss, jitter reported);
        ``bytes`` ("10M"): a sized flow (completion time); ``tool="command"`` with ``command``
        (and ``server``) argument lists: another application, under mptcpize for MPTCP."""
        field = f"flows[{len(self.topology.flows)}]"
        flow = flow_model(src, dst, duration=duration, start=start, stop=stop, dst_address=dst_address,
                          src_address=src_address, streams=streams, protocol=protocol, congestion=congestion,
                          port=port, reverse=reverse, name=name, tool=tool, baseline=baseline, bitrate=bitrate,
                          bytes=bytes, command=command, server=server, field=field, source=self.topology.source)
        self.topology.flows.append(flow)
        self._locate(field)
        return flow

    def event(self, t: float | str | Sequence[float | str] | None = None, *, every: float | str | None = None,
              until: float | str | None = None, link: "LinkRef | str | None" = None,
              node: "NodeRef | str | None" = None, from_node: "NodeRef | str | None" = None,
              state: str | None = None, blackhole: bool | None = None, set: Mapping[str, Any] | None = None,
              endpoint: Mapping[str, Any] | None = None, limits: Mapping[str, int] | None = None,
              label: str | None = None) -> Event:
        """Something that happens during runs, ``t`` seconds after t=0 (or a list of times, or
        ``every`` seconds from ``t`` until ``until``), as ``events:`` in YAML (see docs/topology.md):
        ``lab.event(6, link=primary, state="down")``, ``lab.event(3, link=wifi, blackhole=True)``,
        ``lab.event(4, link=lte, from_node=h1, set={"rate": "2mbit"})``,
        ``lab.event(8, node=h1, endpoint={"interface": "eth1", "flags": ["subflow", "backup"]})``,
        ``lab.event(9, node=h1, limits={"subflows": 4})``."""
        index = len(self.topology.events)
        field = f"events[{index}]"
        source, line = self.topology.source, caller_location()[1]
        seconds = lambda value, what: _unit(lambda v: parse_seconds(v, what=what), value,  # noqa: E731
                                            f"{field}.{what}", source, line)
        times = () if t is None else tuple(seconds(v, "t") for v in (t if isinstance(t, (list, tuple)) else [t]))
        change = None
        if endpoint is not None:
            flags = endpoint.get("flags", ())
            change = EndpointChange(interface=endpoint["interface"].pin_name() if isinstance(endpoint.get("interface"),
                                                                                            InterfaceRef)
                                    else str(endpoint.get("interface")),
                                    flags=tuple([flags] if isinstance(flags, str) else flags),
                                    remove=bool(endpoint.get("remove", False)))
        event = Event(
            t=times, every=None if every is None else seconds(every, "every"),
            until=None if until is None else seconds(until, "until"),
            link=self._pin_link_name(link) if isinstance(link, LinkRef) else link,
            node=_node_name(node)[0] if node is not None else None,
            from_node=_node_name(from_node)[0] if from_node is not None else None,
            state=state, blackhole=blackhole,
            set=None if set is None else shaping(field=f"{field}.set", source=source, line=line, **set),
            endpoint=change, limits=None if limits is None else dict(limits), label=label)
        self.topology.events.append(event)
        self._locate(field)
        return event

    # helpers for handles ----------------------------------------------------------------------
    def _locate(self, field: str) -> None:
        """Remember the script line that declared ``field`` (for error messages)."""
        source, line = caller_location()
        if line and (self.topology.source is None or source == self.topology.source):
            self.topology.locations[field] = line

    def _route_destination(self, to: "str | InterfaceRef | LinkRef", field: str) -> str:
        if isinstance(to, str):
            return to
        link = self.topology.links[to.link_index if isinstance(to, InterfaceRef) else to.index]
        if link.subnet is None:
            raise TopologyError("a route to an interface or link needs that link's subnet", field=field,
                                source=self.topology.source, line=caller_location()[1],
                                fix="give the link subnet=..., or route to a prefix")
        return str(ipaddress.IPv4Network(link.subnet, strict=False))

    def _pin_link_name(self, link: LinkRef) -> str:
        if link.model.name is None:
            link.model.name = link.name
        return link.model.name or ""

    # the pipeline ------------------------------------------------------------------------------
    def resolved(self) -> Topology:
        """The validated copy: every default filled in. Raises :class:`TopologyError`."""
        return validate(self.topology)

    def plan(self) -> Plan:
        """Everything ``up`` would do, without Docker."""
        return lab_api.prepare(self.topology)

    def to_yaml(self, *, resolved: bool = False) -> str:
        """The equivalent topology file (``resolved=True``: with every default written out)."""
        return topology_to_yaml(self.resolved() if resolved else self.topology)

    def write_yaml(self, path: str | Path, *, resolved: bool = False) -> Path:
        target = Path(path)
        target.write_text(self.to_yaml(resolved=resolved))
        return target

    def up(self, *, allow_no_impairments: bool | None = None, progress: Progress = _quiet) -> UpResult:
        """Bring the lab up on Docker (validating first). ``allow_no_impairments``: proceed
        with rates only where the kernel has no netem (default: the topology's setting)."""
        stop_if_capturing(self.topology)
        allow = self.topology.allow_no_impairments if allow_no_impairments is None else allow_no_impairments
        return lab_api.bring_up(self.topology, allow_no_impairments=allow, progress=progress)

    def run(self, *, duration: float | None = None, results_root: str | Path = Path("results"),
            progress: Progress = _quiet, bring_up_if_needed: bool = True,
            allow_no_impairments: bool | None = None, baseline: bool = False, plots: bool = True,
            capture: Sequence[str] = (), snaplen: int | None = None) -> RunResult:
        """Run the lab's flows (bringing it up first if it is not up): the same results
        directory as ``mptcpdock run``. ``duration`` overrides every flow's duration;
        ``baseline`` also measures single-path TCP over each path an MPTCP flow used;
        ``capture``: ``"node:iface"`` (or ``"node"``) items recorded with tcpdump into captures/."""
        stop_if_capturing(self.topology)
        allow = self.topology.allow_no_impairments if allow_no_impairments is None else allow_no_impairments
        return run_experiment(self.name, self.topology, duration=duration, results_root=Path(results_root),
                              progress=progress, bring_up_if_needed=bring_up_if_needed,
                              allow_no_impairments=allow, baseline=baseline, plots=plots, capture=capture,
                              snaplen=snaplen)

    def sweep(self, sets: Mapping[str, Sequence[str]], *, repeat: int = 1, duration: float | None = None,
              results_root: str | Path = Path("results"), progress: Progress = _quiet,
              allow_no_impairments: bool | None = None, plots: bool = True) -> SweepResult:
        """``mptcpdock sweep``: every point of the grid ``sets`` ({PATH: [values]}, e.g.
        ``{"links.r2-h2-2.rate": ["5mbit", "10mbit"]}``), ``repeat`` times each; the lab is kept
        (shaping changed in place) where only shaping or flows change."""
        stop_if_capturing(self.topology)
        allow = self.topology.allow_no_impairments if allow_no_impairments is None else allow_no_impairments
        return run_sweep(self.topology, [(path, [str(v) for v in values]) for path, values in sets.items()],
                         repeat=repeat, duration=duration, results_root=Path(results_root), progress=progress,
                         allow_no_impairments=allow, plots=plots)

    def down(self, progress: Progress = _quiet) -> tuple[int, int]:
        """Remove the lab's containers and networks (idempotent): (containers, networks)."""
        _, containers, networks = lab_api.tear_down(self.name, progress)
        return containers, networks

    @contextlib.contextmanager
    def running(self, *, allow_no_impairments: bool | None = None, progress: Progress = _quiet) -> Iterator[UpResult]:
        """``with lab.running(): ...``: up on entry, always down on exit."""
        result = self.up(allow_no_impairments=allow_no_impairments, progress=progress)
        try:
            yield result
        finally:
            self.down()

    def state(self) -> LabState:
        return lab_api.lab_state(self.name)

    def exec(self, node: "NodeRef | str", argv: Sequence[str]) -> ExecResult:
        """Run ``argv`` in a node of the running lab."""
        return run_exec(self.state().container(_node_name(node)[0]), list(argv))

    def __repr__(self) -> str:
        return (f"Lab({self.name!r}: {len(self.topology.nodes)} nodes, {len(self.topology.links)} links, "
                f"{len(self.topology.flows)} flows)")


# -- comparing models -----------------------------------------------------------------------------

def positional_interfaces(topology: Topology) -> Topology:
    """A resolved copy whose interfaces are named by position (``if0``, ``if1``, ... per node
    in link order), every reference (routes, endpoints) renamed with them, and the lab's name
    and source blanked: two descriptions of the same network compare equal with ``==``
    whatever they call their interfaces."""
    resolved = validate(topology)
    renames: dict[str, dict[str, str]] = {name: {} for name in resolved.nodes}
    for link in resolved.links:
        for end in (link.a, link.b):
            new = f"if{len(renames[end.node])}"
            renames[end.node][end.interface or ""] = new
            end.interface = new
    for name, node in resolved.nodes.items():
        for route in node.routes:
            if route.dev:
                route.dev = renames[name].get(route.dev, route.dev)
        for endpoint in node.mptcp.endpoints:
            endpoint.interface = renames[name].get(endpoint.interface, endpoint.interface)
    resolved.name, resolved.source, resolved.locations = "", None, {}
    return resolved


def same_network(a: Topology, b: Topology) -> bool:
    """True when ``a`` and ``b`` describe the same lab up to interface names and lab name."""
    return positional_interfaces(a) == positional_interfaces(b)


# -- running scripts for export -------------------------------------------------------------------

@dataclass(eq=False)
class ScriptRun:
    """One run of a script by :func:`topology_of_script` (equal only to itself)."""

    path: Path


_script_run: ScriptRun | None = None


def current_script() -> ScriptRun | None:
    """The script :func:`topology_of_script` is running; None outside one.

    A front end that keeps state per process (the NeST layer keeps NeST's global topology
    and config) keys it on this, so that each script starts from nothing and leaves nothing
    behind. The core neither knows nor resets who does."""
    return _script_run


@contextlib.contextmanager
def _running(script: Path) -> Iterator[ScriptRun]:
    global _script_run
    previous, _script_run = _script_run, ScriptRun(script)
    try:
        yield _script_run
    finally:
        _script_run = previous


def topology_of_script(path: str | Path, argv: Iterable[str] = ()) -> Topology:
    """Run a Python script that builds a lab (native API or the NeST layer) up to the point
    where it would bring the lab up, and return that lab's model. Nothing touches Docker."""
    script = Path(path)
    if not script.is_file():
        raise TopologyError(f"no such script: {script}", source=str(script), fix="check the path")
    old_argv, old_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *argv]
    sys.path.insert(0, str(script.resolve().parent))
    namespace: dict[str, Any] = {}
    try:
        # The script's own prints go to stderr: stdout may be carrying the exported YAML.
        with _running(script), capturing() as captured, contextlib.redirect_stdout(sys.stderr):
            try:
                namespace = runpy.run_path(str(script), run_name="__main__")
            except ExportStop:
                pass
    finally:
        sys.argv, sys.path[:] = old_argv, old_path
    if captured:
        return captured[-1]
    labs = [value for value in namespace.values() if isinstance(value, Lab)]
    if len(labs) == 1:
        return copy.deepcopy(labs[0].topology)
    raise TopologyError(
        f"the script built {'no lab' if not labs else f'{len(labs)} labs'} that could be exported",
        source=str(script),
        fix="call lab.up()/lab.run() (or Experiment.run() with the NeST layer), or define exactly one Lab")


def env_duration(variable: str = "MPTCPDOCK_FLOW_DURATION") -> float | None:
    """Seconds from an environment variable (None when unset or empty)."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return None
    try:
        seconds = parse_seconds(value, what=variable)
    except UnitError as exc:
        raise TopologyError(f"{variable}={value!r}: {exc}", fix=exc.fix) from None
    if seconds <= 0:
        raise TopologyError(f"{variable}={value!r} is not a positive duration", fix="write e.g. 10 or 10s")
    return seconds


__all__ = ["Lab", "NodeRef", "LinkRef", "InterfaceRef", "shaping", "flow_model", "capturing", "ExportStop",
           "stop_if_capturing", "is_capturing", "positional_interfaces", "same_network", "topology_of_script", "ScriptRun",
           "current_script", "env_duration"]
