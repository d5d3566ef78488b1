"""Load a topology from YAML (with line numbers for errors) and write one back.

The YAML schema is documented in ``docs/topology.md``; :func:`topology_to_dict` is its
inverse, so YAML -> model -> YAML round-trips.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import TopologyError
from .bundled import resolve_topology_path
from .model import (
    EVENT_ACTIONS, LOSS_MODELS, Endpoint, EngineSpec, EndpointChange, Event, Flow, Link, LinkEnd, LossModel, Mptcp, Node,
    Route, Shaping, Topology,
)
from .traces import TraceError, load_trace
from .units import (
    UnitError,
    format_percent,
    format_rate,
    format_time_us,
    parse_bytes,
    parse_percent,
    parse_rate,
    parse_seconds,
    parse_time_us,
)

TOP_KEYS = {
    "name", "routing", "source_routing", "address_pool", "link_prefix", "family", "address_pool6", "link_prefix6",
    "allow_no_impairments", "nodes", "links", "flows", "events", "description",
    "engines", "placement", "overlays", "mtu", "gso_max_segs", "snaplen",
}
ENGINE_KEYS = {"host", "context"}
NODE_KEYS = {"kind", "image", "sysctls", "mptcp", "routes", "routing", "source_routing", "privileged", "engine"}
MPTCP_KEYS = {"enabled", "limits", "endpoints", "monitor", "path_manager", "scheduler", "mptcpd"}
MPTCPD_KEYS = {"plugin", "addr_flags"}
LIMIT_KEYS = {"subflows", "add_addr_accepted"}
ENDPOINT_KEYS = {"interface", "flags", "address", "id", "port"}
ROUTE_KEYS = {"to", "via", "dev", "link", "metric"}
SET_KEYS = {"rate", "delay", "jitter", "loss", "queue"}
SHAPING_KEYS = SET_KEYS | {"trace", "qdisc", "corrupt", "duplicate", "reorder", "reorder_correlation", "distribution"}
EVENT_KEYS = {"t", "every", "until", "link", "node", "from", "label", *EVENT_ACTIONS}
ENDPOINT_CHANGE_KEYS = {"interface", "flags", "remove"}
LINK_KEYS = {"name", "endpoints", "subnet", "subnet6", "family", "egress", "cost"} | SHAPING_KEYS
LINK_END_KEYS = {"node", "interface", "address", "address6", "capture"}
FLOW_KEYS = {
    "name", "src", "dst", "src_address", "dst_address", "start", "duration", "stop",
    "streams", "protocol", "congestion", "tool", "port", "reverse", "baseline", "bitrate", "bytes", "command",
    "server", "family",
}


class _Reader:
    """Walks a composed YAML tree, keeping the line of every field for error messages."""

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.base = Path(source).resolve().parent if source else Path.cwd()
        self.locations: dict[str, int] = {}

    def error(self, path: str, message: str, fix: str | None = None) -> TopologyError:
        return TopologyError(message, field=path or None, fix=fix, source=self.source,
                             line=self.locations.get(path))

    def to_python(self, node: yaml.Node, path: str) -> Any:
        self.locations[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(yaml.safe_load(yaml.serialize(key_node)))
                child = f"{path}.{key}" if path else key
                if key in result:
                    self.locations[child] = key_node.start_mark.line + 1
                    raise self.error(child, f"duplicate key {key!r}", "give each key once")
                result[key] = self.to_python(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.to_python(item, f"{path}[{index}]") for index, item in enumerate(node.value)]
        if node.tag == "tag:yaml.org,2002:null":  # 'key:' with no value (serialize() cannot round-trip it)
            return None
        return yaml.safe_load(yaml.serialize(node))

    # typed accessors --------------------------------------------------------------------
    def mapping(self, value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            if not path:  # the document itself
                raise self.error(path, "a topology file holds a mapping (name:, nodes:, links:, ...), got "
                                       + _kind(value), "write the file as 'key: value' lines, "
                                       "e.g. 'name: lab1' then 'nodes:', not as '- ' list items")
            raise self.error(path, f"expected a mapping, got {type(value).__name__}",
                             f"write {path} as 'key: value' lines")
        for key in value:
            if key not in allowed:
                raise self.error(_join(path, key), f"unknown key {key!r}",
                                 "use one of: " + ", ".join(sorted(allowed)))
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(path, f"expected a list, got {type(value).__name__}",
                             f"write {path} as a list ('- item' lines)")
        return value

    def string(self, value: Any, path: str) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise self.error(path, f"expected a text value, got {type(value).__name__}")
        return str(value)

    def integer(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(path, f"{value!r} is not a whole number", "write a whole number such as 1")
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(path, f"{value!r} is not true/false", "write true or false")
        return value

    def unit(self, parse: Callable[[Any], Any], value: Any, path: str) -> Any:
        try:
            return parse(value)
        except UnitError as exc:
            raise self.error(path, str(exc), exc.fix) from None


def _kind(value: Any) -> str:
    """'a list', 'a number', 'a text': what a YAML value is, for messages."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a true/false value"
    if isinstance(value, (int, float)):
        return "a number"
    return "a text" if isinstance(value, str) else f"a {type(value).__name__}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def load_topology(path: str | Path, *, name: str | None = None) -> Topology:
    """Read a topology file (or the bundled topology ``path`` names, see
    :func:`~mptcpdock.topology.bundled.resolve_topology_path`). Raises
    :class:`TopologyError` naming file, line and field."""
    path = resolve_topology_path(path)
    source = str(path)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read file: {exc.strerror}", source=source,
                            fix="check the path") from None
    return load_topology_text(text, source=source, name=name)


def load_topology_text(text: str, *, source: str | None = None, name: str | None = None) -> Topology:
    reader = _Reader(source)
    try:
        tree = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise TopologyError(f"invalid YAML: {problem}", source=source,
                            line=mark.line + 1 if mark else None,
                            fix="check indentation and quoting near that line") from None
    if tree is None:
        raise TopologyError("the file is empty", source=source, fix="describe nodes and links")
    data = reader.mapping(reader.to_python(tree, ""), "", TOP_KEYS)
    topology = _topology(reader, data, name)
    topology.source = source
    topology.locations = reader.locations
    return topology


def _topology(reader: _Reader, data: dict[str, Any], name: str | None) -> Topology:
    lab_name = name or data.get("name")
    if lab_name is None:
        raise reader.error("name", "the lab has no name", "add 'name: mylab' at the top")
    topology = Topology(name=reader.string(lab_name, "name"))
    if "routing" in data:
        topology.routing = reader.string(data["routing"], "routing")  # type: ignore[assignment]
    if "source_routing" in data:
        topology.source_routing = reader.boolean(data["source_routing"], "source_routing")
    if "address_pool" in data:
        topology.address_pool = reader.string(data["address_pool"], "address_pool")
    if "link_prefix" in data:
        topology.link_prefix = reader.integer(data["link_prefix"], "link_prefix")
    if "snaplen" in data:
        topology.snaplen = reader.integer(data["snaplen"], "snaplen")
    for key in ("family", "address_pool6"):
        if data.get(key) is not None:
            setattr(topology, key, reader.string(data[key], key))
    if "link_prefix6" in data:
        topology.link_prefix6 = reader.integer(data["link_prefix6"], "link_prefix6")
    if "allow_no_impairments" in data:
        topology.allow_no_impairments = reader.boolean(data["allow_no_impairments"], "allow_no_impairments")
    for key in ("placement", "overlays"):
        if key in data:
            setattr(topology, key, reader.string(data[key], key))
    if data.get("mtu") is not None:
        topology.mtu = reader.integer(data["mtu"], "mtu")
    if data.get("gso_max_segs") is not None:
        topology.gso_max_segs = _gso_max_segs(reader, data["gso_max_segs"])
    for engine_name, spec in reader.mapping(data.get("engines"), "engines", set(data.get("engines") or {})).items():
        path = f"engines.{engine_name}"
        spec = reader.mapping(spec, path, ENGINE_KEYS)
        topology.engines[str(engine_name)] = EngineSpec(
            name=str(engine_name),
            host=reader.string(spec["host"], f"{path}.host") if spec.get("host") is not None else None,
            context=reader.string(spec["context"], f"{path}.context") if spec.get("context") is not None else None)
    nodes = data.get("nodes")
    if not isinstance(nodes, dict) or not nodes:
        raise reader.error("nodes", "no nodes", "add a 'nodes:' mapping such as 'nodes: {h1: {}, h2: {}}'")
    for node_name, spec in nodes.items():
        topology.nodes[node_name] = _node(reader, node_name, spec, f"nodes.{node_name}")
    for index, spec in enumerate(reader.sequence(data.get("links"), "links")):
        topology.links.append(_link(reader, spec, f"links[{index}]"))
    for index, spec in enumerate(reader.sequence(data.get("flows"), "flows")):
        topology.flows.append(_flow(reader, spec, f"flows[{index}]"))
    for index, spec in enumerate(reader.sequence(data.get("events"), "events")):
        topology.events.append(_event(reader, spec, f"events[{index}]"))
    return topology


def _node(reader: _Reader, name: str, spec: Any, path: str) -> Node:
    spec = reader.mapping(spec, path, NODE_KEYS)
    node = Node(name=str(name))
    if "kind" in spec:
        node.kind = reader.string(spec["kind"], f"{path}.kind")  # type: ignore[assignment]
    if spec.get("image") is not None:
        node.image = reader.string(spec["image"], f"{path}.image")
    for key, value in reader.mapping(spec.get("sysctls"), f"{path}.sysctls", set(spec.get("sysctls") or {})).items():
        node.sysctls[str(key)] = str(int(value) if isinstance(value, bool) else value)
    if "routing" in spec:
        node.routing = reader.string(spec["routing"], f"{path}.routing")  # type: ignore[assignment]
    if "source_routing" in spec:
        node.source_routing = reader.boolean(spec["source_routing"], f"{path}.source_routing")
    if "privileged" in spec:
        node.privileged = reader.boolean(spec["privileged"], f"{path}.privileged")
    if spec.get("engine") is not None:
        node.engine = reader.string(spec["engine"], f"{path}.engine")
    node.mptcp = _mptcp(reader, spec.get("mptcp"), f"{path}.mptcp")
    for index, route in enumerate(reader.sequence(spec.get("routes"), f"{path}.routes")):
        node.routes.append(_route(reader, route, f"{path}.routes[{index}]"))
    return node


def _mptcp(reader: _Reader, spec: Any, path: str) -> Mptcp:
    if isinstance(spec, bool):
        return Mptcp(enabled=spec)
    spec = reader.mapping(spec, path, MPTCP_KEYS)
    mptcp = Mptcp()
    if "enabled" in spec:
        mptcp.enabled = reader.boolean(spec["enabled"], f"{path}.enabled")
    if "monitor" in spec:
        mptcp.monitor = reader.boolean(spec["monitor"], f"{path}.monitor")
    for key in ("path_manager", "scheduler"):
        if spec.get(key) is not None:
            setattr(mptcp, key, reader.string(spec[key], f"{path}.{key}"))
    if "mptcpd" in spec:  # 'mptcpd: sspi', 'mptcpd: false', or {plugin: sspi, addr_flags: [subflow]}
        value = spec["mptcpd"]
        if value is False or value == "none":
            mptcp.mptcpd = "none"
        elif isinstance(value, str):
            mptcp.mptcpd = reader.string(value, f"{path}.mptcpd")
        else:
            item = reader.mapping(value, f"{path}.mptcpd", MPTCPD_KEYS)
            if item.get("plugin") is not None:
                mptcp.mptcpd = reader.string(item["plugin"], f"{path}.mptcpd.plugin")
            if "addr_flags" in item:
                mptcp.mptcpd_addr_flags = _flags(reader, item["addr_flags"], f"{path}.mptcpd.addr_flags")
    limits = reader.mapping(spec.get("limits"), f"{path}.limits", LIMIT_KEYS)
    if "subflows" in limits:
        mptcp.subflows = reader.integer(limits["subflows"], f"{path}.limits.subflows")
    if "add_addr_accepted" in limits:
        mptcp.add_addr_accepted = reader.integer(limits["add_addr_accepted"], f"{path}.limits.add_addr_accepted")
    endpoints = spec.get("endpoints")
    if isinstance(endpoints, dict):  # short form: {eth0: [subflow], eth1: signal}
        for interface, flags in endpoints.items():
            mptcp.endpoints.append(Endpoint(str(interface), _flags(reader, flags, f"{path}.endpoints.{interface}")))
    else:
        for index, item in enumerate(reader.sequence(endpoints, f"{path}.endpoints")):
            item_path = f"{path}.endpoints[{index}]"
            item = reader.mapping(item, item_path, ENDPOINT_KEYS)
            if "interface" not in item:
                raise reader.error(item_path, "endpoint has no interface", "add 'interface: eth0'")
            mptcp.endpoints.append(Endpoint(
                interface=reader.string(item["interface"], f"{item_path}.interface"),
                flags=_flags(reader, item.get("flags", ["subflow"]), f"{item_path}.flags"),
                address=reader.string(item["address"], f"{item_path}.address") if item.get("address") else None,
                id=reader.integer(item["id"], f"{item_path}.id") if item.get("id") is not None else None,
                port=reader.integer(item["port"], f"{item_path}.port") if item.get("port") is not None else None,
            ))
    return mptcp


def _flags(reader: _Reader, value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.replace(",", " ").split() if part]
    return tuple(reader.string(flag, f"{path}[{i}]") for i, flag in enumerate(reader.sequence(value, path)))


def _route(reader: _Reader, spec: Any, path: str) -> Route:
    spec = reader.mapping(spec, path, ROUTE_KEYS)
    if "to" not in spec:
        raise reader.error(path, "route has no destination", "add 'to: default' or 'to: 10.0.1.0/24'")
    return Route(
        to=reader.string(spec["to"], f"{path}.to"),
        via=reader.string(spec["via"], f"{path}.via") if spec.get("via") is not None else None,
        dev=reader.string(spec["dev"], f"{path}.dev") if spec.get("dev") is not None else None,
        link=reader.string(spec["link"], f"{path}.link") if spec.get("link") is not None else None,
        metric=reader.integer(spec["metric"], f"{path}.metric") if spec.get("metric") is not None else None,
    )


def _shaping(reader: _Reader, spec: dict[str, Any], path: str) -> Shaping:
    shaping = Shaping()
    if spec.get("rate") is not None:
        shaping.rate = reader.unit(parse_rate, spec["rate"], f"{path}.rate")
    if spec.get("delay") is not None:
        shaping.delay = reader.unit(parse_time_us, spec["delay"], f"{path}.delay")
    if spec.get("jitter") is not None:
        shaping.jitter = reader.unit(lambda v: parse_time_us(v, what="jitter"), spec["jitter"], f"{path}.jitter")
    if isinstance(spec.get("loss"), dict):
        shaping.loss_model = _loss_model(reader, spec["loss"], f"{path}.loss")
    elif spec.get("loss") is not None:
        shaping.loss = reader.unit(parse_percent, spec["loss"], f"{path}.loss")
    if spec.get("queue") is not None:
        shaping.queue = reader.integer(spec["queue"], f"{path}.queue")
    if spec.get("trace") is not None:
        shaping.trace = _trace(reader, spec["trace"], f"{path}.trace")
    for key in ("corrupt", "duplicate", "reorder", "reorder_correlation"):
        if spec.get(key) is not None:
            setattr(shaping, key, reader.unit(parse_percent, spec[key], f"{path}.{key}"))
    for key in ("qdisc", "distribution"):
        if spec.get(key) is not None:
            setattr(shaping, key, reader.string(spec[key], f"{path}.{key}"))
    return shaping


def _loss_model(reader: _Reader, spec: dict[str, Any], path: str) -> LossModel:
    """``{model: gemodel, p: 1%, r: 30%, 1-h: 100%, 1-k: 0%}`` or ``{model: state, p13: ..., ...}``;
    what is left out gets iproute2's default."""
    model = spec.get("model")
    if model not in LOSS_MODELS:
        raise reader.error(f"{path}.model", f"loss model {model!r} is not one of netem's "
                           f"({', '.join(LOSS_MODELS)})" if model is not None else "a loss mapping without model:",
                           "write loss: {model: gemodel, p: 1%, r: 30%} (or a percentage for random loss)")
    names = LOSS_MODELS[model]
    spec = reader.mapping(spec, path, {"model", *names})
    first = names[0]
    if spec.get(first) is None:
        raise reader.error(path, f"loss model {model} without {first}",
                           f"give {first}: the probability of entering the lossy state, e.g. {first}: 1%")
    given = {name: reader.unit(parse_percent, spec[name], f"{path}.{name}") for name in names
             if spec.get(name) is not None}
    return LossModel.with_defaults(model, given)


def _trace(reader: _Reader, value: Any, path: str):
    written = reader.string(value, path)
    file = Path(written) if Path(written).is_absolute() else reader.base / written
    try:
        return load_trace(file)
    except OSError as exc:
        raise reader.error(path, f"cannot read trace {written!r}: {exc.strerror or exc}",
                           "give the path of a Mahimahi or time,rate CSV file, relative to the topology file") from None
    except TraceError as exc:
        raise reader.error(path, f"trace {written!r}: {exc}", exc.fix) from None


def _times(reader: _Reader, value: Any, path: str) -> tuple[float, ...]:
    items = value if isinstance(value, list) else [value]
    for i, item in enumerate(items):
        if isinstance(item, (int, float)) and not isinstance(item, bool) and item < 0:
            raise reader.error(f"{path}[{i}]" if isinstance(value, list) else path,
                               f"t={item:g} s is in the past (before the run's t=0)", "write a time >= 0")
    return tuple(reader.unit(lambda v: parse_seconds(v, what="event time"), item,
                             f"{path}[{i}]" if isinstance(value, list) else path) for i, item in enumerate(items))


def _event(reader: _Reader, spec: Any, path: str) -> Event:
    spec = reader.mapping(spec, path, EVENT_KEYS)
    if "t" not in spec and "every" not in spec:
        raise reader.error(path, "event has no time", "add 't: 5' (seconds after t=0), a list 't: [5, 10]', "
                                                       "or 'every: 2s, until: 20s'")
    event = Event()
    if "t" in spec:
        event.t = _times(reader, spec["t"], f"{path}.t")
    if "every" in spec:
        event.every = reader.unit(lambda v: parse_seconds(v, what="every"), spec["every"], f"{path}.every")
    if "until" in spec:
        event.until = reader.unit(lambda v: parse_seconds(v, what="until"), spec["until"], f"{path}.until")
    for key in ("link", "node", "label"):
        if spec.get(key) is not None:
            setattr(event, key, reader.string(spec[key], f"{path}.{key}"))
    if spec.get("from") is not None:
        event.from_node = reader.string(spec["from"], f"{path}.from")
    if "state" in spec:
        state = spec["state"]
        if isinstance(state, bool) or str(state) not in ("down", "up"):
            raise reader.error(f"{path}.state", f"state {state!r} is not down or up", "write 'state: down' or 'state: up'")
        event.state = str(state)
    if "blackhole" in spec:
        event.blackhole = reader.boolean(spec["blackhole"], f"{path}.blackhole")
    if "set" in spec:
        values = reader.mapping(spec["set"], f"{path}.set", SET_KEYS)
        if not values:
            raise reader.error(f"{path}.set", "set: names no parameter", "name one of: " + ", ".join(sorted(SET_KEYS)))
        event.set = _shaping(reader, values, f"{path}.set")
    if "endpoint" in spec:
        item_path = f"{path}.endpoint"
        item = reader.mapping(spec["endpoint"], item_path, ENDPOINT_CHANGE_KEYS)
        if "interface" not in item:
            raise reader.error(item_path, "endpoint has no interface", "add 'interface: eth1'")
        remove = reader.boolean(item["remove"], f"{item_path}.remove") if "remove" in item else False
        if remove and "flags" in item:
            raise reader.error(item_path, "remove: true with flags", "give flags (add or change) or remove: true")
        if not remove and "flags" not in item:
            raise reader.error(item_path, "endpoint change without flags",
                               "give 'flags: [subflow, backup]' (the endpoint's new flags) or 'remove: true'")
        event.endpoint = EndpointChange(
            interface=reader.string(item["interface"], f"{item_path}.interface"),
            flags=_flags(reader, item["flags"], f"{item_path}.flags") if "flags" in item else (),
            remove=remove)
    if "limits" in spec:
        limits = reader.mapping(spec["limits"], f"{path}.limits", LIMIT_KEYS)
        if not limits:
            raise reader.error(f"{path}.limits", "limits: names no limit", "name subflows and/or add_addr_accepted")
        event.limits = {key: reader.integer(value, f"{path}.limits.{key}") for key, value in limits.items()}
    given = [name for name in EVENT_ACTIONS if name in spec]
    if len(given) != 1:
        raise reader.error(path, "an event needs exactly one action" + (f", got {', '.join(given)}" if given else ""),
                           "give one of: state, blackhole, set (with link:), endpoint, limits (with node:)")
    return event


def _link_end(reader: _Reader, spec: Any, path: str) -> LinkEnd:
    if isinstance(spec, str):  # "node" or "node:interface"
        node, _, interface = spec.partition(":")
        return LinkEnd(node=node, interface=interface or None)
    spec = reader.mapping(spec, path, LINK_END_KEYS)
    if "node" not in spec:
        raise reader.error(path, "link end has no node", "write 'node: h1' or the short form 'h1:eth0'")
    end = LinkEnd(
        node=reader.string(spec["node"], f"{path}.node"),
        interface=reader.string(spec["interface"], f"{path}.interface") if spec.get("interface") else None,
        address=reader.string(spec["address"], f"{path}.address") if spec.get("address") else None,
        capture=reader.boolean(spec["capture"], f"{path}.capture") if "capture" in spec else False,
        address6=reader.string(spec["address6"], f"{path}.address6") if spec.get("address6") else None,
    )
    if end.address and ":" in end.address and end.address6 is None:  # 'address: fd00::1' is the IPv6 one
        end.address, end.address6 = None, end.address
        reader.locations[f"{path}.address6"] = reader.locations.get(f"{path}.address", 0)
    return end


def _link(reader: _Reader, spec: Any, path: str) -> Link:
    spec = reader.mapping(spec, path, LINK_KEYS)
    ends = reader.sequence(spec.get("endpoints"), f"{path}.endpoints")
    if len(ends) != 2:
        raise reader.error(f"{path}.endpoints", f"a link joins exactly two nodes, got {len(ends)}",
                           "write 'endpoints: [h1, r1]'")
    link = Link(
        a=_link_end(reader, ends[0], f"{path}.endpoints[0]"),
        b=_link_end(reader, ends[1], f"{path}.endpoints[1]"),
        name=reader.string(spec["name"], f"{path}.name") if spec.get("name") else None,
        subnet=reader.string(spec["subnet"], f"{path}.subnet") if spec.get("subnet") else None,
        subnet6=reader.string(spec["subnet6"], f"{path}.subnet6") if spec.get("subnet6") else None,
        family=reader.string(spec["family"], f"{path}.family") if spec.get("family") else None,
        shaping=_shaping(reader, spec, path),
    )
    if "cost" in spec:
        link.cost = reader.integer(spec["cost"], f"{path}.cost")
    egress = reader.mapping(spec.get("egress"), f"{path}.egress", {link.a.node, link.b.node})
    for node, override in egress.items():
        override_path = f"{path}.egress.{node}"
        link.egress[node] = _shaping(reader, reader.mapping(override, override_path, SHAPING_KEYS), override_path)
    return link


def _flow(reader: _Reader, spec: Any, path: str) -> Flow:
    spec = reader.mapping(spec, path, FLOW_KEYS)
    for key in ("src", "dst"):
        if key not in spec:
            raise reader.error(path, f"flow has no {key}", "write 'src: h1' and 'dst: h2'")
    flow = Flow(src=reader.string(spec["src"], f"{path}.src"), dst=reader.string(spec["dst"], f"{path}.dst"))
    for key in ("name", "src_address", "dst_address", "protocol", "congestion", "tool", "family"):
        if spec.get(key) is not None:
            setattr(flow, key, reader.string(spec[key], f"{path}.{key}"))
    if "start" in spec:
        flow.start = reader.unit(lambda v: parse_seconds(v, what="start"), spec["start"], f"{path}.start")
    if "duration" in spec and "stop" in spec:
        raise reader.error(f"{path}.stop", "both duration and stop are given", "keep one of them")
    if "duration" in spec:
        flow.duration = reader.unit(lambda v: parse_seconds(v, what="duration"), spec["duration"], f"{path}.duration")
    if "stop" in spec:
        stop = reader.unit(lambda v: parse_seconds(v, what="stop"), spec["stop"], f"{path}.stop")
        if stop <= flow.start:
            raise reader.error(f"{path}.stop", f"stop {stop:g}s is not after start {flow.start:g}s",
                               "make stop later than start, or give a duration")
        flow.duration = stop - flow.start
    if "streams" in spec:
        flow.streams = reader.integer(spec["streams"], f"{path}.streams")
    if "port" in spec:
        flow.port = reader.integer(spec["port"], f"{path}.port")
    if "reverse" in spec:
        flow.reverse = reader.boolean(spec["reverse"], f"{path}.reverse")
    if "baseline" in spec:
        flow.baseline = reader.boolean(spec["baseline"], f"{path}.baseline")
    if spec.get("bitrate") is not None:
        flow.bitrate = reader.unit(parse_rate, spec["bitrate"], f"{path}.bitrate")
    if spec.get("bytes") is not None:
        flow.bytes = reader.unit(parse_bytes, spec["bytes"], f"{path}.bytes")
    for key in ("command", "server"):
        if spec.get(key) is None:
            continue
        if isinstance(spec[key], str):
            raise reader.error(f"{path}.{key}", f"{key} is one text, not an argument list (no shell runs it)",
                               f"write a list, e.g. {key}: [curl, -s, 'http://{{dst_address}}:{{port}}/']")
        setattr(flow, key, [reader.string(arg, f"{path}.{key}[{i}]")
                            for i, arg in enumerate(reader.sequence(spec[key], f"{path}.{key}"))])
    return flow


# -- model -> YAML ---------------------------------------------------------------------------

def _shaping_dict(shaping: Shaping) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if shaping.rate is not None:
        out["rate"] = format_rate(shaping.rate)
    if shaping.delay is not None:
        out["delay"] = format_time_us(shaping.delay)
    if shaping.jitter is not None:
        out["jitter"] = format_time_us(shaping.jitter)
    if shaping.loss is not None:
        out["loss"] = format_percent(shaping.loss)
    if shaping.loss_model is not None:
        out["loss"] = {"model": shaping.loss_model.model,
                       **{name: format_percent(value) for name, value in shaping.loss_model.params}}
    if shaping.queue is not None:
        out["queue"] = shaping.queue
    if shaping.trace is not None:
        out["trace"] = shaping.trace.path
    for key in ("corrupt", "duplicate", "reorder", "reorder_correlation"):
        if getattr(shaping, key) is not None:
            out[key] = format_percent(getattr(shaping, key))
    for key in ("qdisc", "distribution"):
        if getattr(shaping, key) is not None:
            out[key] = getattr(shaping, key)
    return out


def _node_dict(node: Node) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": node.kind}
    if node.image:
        out["image"] = node.image
    if node.sysctls:
        out["sysctls"] = dict(node.sysctls)
    if node.privileged:
        out["privileged"] = True
    if node.engine:
        out["engine"] = node.engine
    if node.routing:
        out["routing"] = node.routing
    if node.source_routing is not None:
        out["source_routing"] = node.source_routing
    mptcp: dict[str, Any] = {}
    if not node.mptcp.enabled:
        mptcp["enabled"] = False
    limits = {key: getattr(node.mptcp, key) for key in ("subflows", "add_addr_accepted")
              if getattr(node.mptcp, key) is not None}
    if limits:
        mptcp["limits"] = limits
    if node.mptcp.endpoints:
        mptcp["endpoints"] = [
            {"interface": ep.interface, "flags": list(ep.flags), **({"address": ep.address} if ep.address else {}),
             **({"id": ep.id} if ep.id is not None else {}), **({"port": ep.port} if ep.port is not None else {})}
            for ep in node.mptcp.endpoints
        ]
    if node.mptcp.monitor:
        mptcp["monitor"] = True
    for key in ("path_manager", "scheduler"):
        if getattr(node.mptcp, key) is not None:
            mptcp[key] = getattr(node.mptcp, key)
    if node.mptcp.mptcpd is not None or node.mptcp.mptcpd_addr_flags:
        if node.mptcp.mptcpd_addr_flags:
            mptcp["mptcpd"] = {"plugin": node.mptcp.mptcpd_plugin, "addr_flags": list(node.mptcp.mptcpd_addr_flags)}
        else:
            mptcp["mptcpd"] = False if node.mptcp.mptcpd == "none" else node.mptcp.mptcpd
    if mptcp:
        out["mptcp"] = mptcp
    if node.routes:
        out["routes"] = [
            {key: value for key, value in vars(route).items() if value is not None} for route in node.routes
        ]
    return out


def _end_value(end: LinkEnd) -> Any:
    if end.address or end.address6 or end.capture:
        return {"node": end.node, **({"interface": end.interface} if end.interface else {}),
                **({"address": end.address} if end.address else {}),
                **({"address6": end.address6} if end.address6 else {}), **({"capture": True} if end.capture else {})}
    return f"{end.node}:{end.interface}" if end.interface else end.node


def _link_dict(link: Link) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if link.name:
        out["name"] = link.name
    out["endpoints"] = [_end_value(link.a), _end_value(link.b)]
    if link.subnet:
        out["subnet"] = link.subnet
    if link.subnet6:
        out["subnet6"] = link.subnet6
    if link.family:
        out["family"] = link.family
    out.update(_shaping_dict(link.shaping))
    if link.egress:
        out["egress"] = {node: _shaping_dict(shaping) for node, shaping in link.egress.items()}
    if link.cost != 1:
        out["cost"] = link.cost
    return out


def _flow_dict(flow: Flow) -> dict[str, Any]:
    defaults = Flow(src=flow.src, dst=flow.dst)
    out: dict[str, Any] = {}
    for key in ("name", "src", "dst", "src_address", "dst_address", "start", "duration", "streams",
                "protocol", "congestion", "tool", "port", "reverse", "baseline", "bitrate", "bytes", "command",
                "server", "family"):
        value = getattr(flow, key)
        if key in ("src", "dst") or (value is not None and value != getattr(defaults, key)):
            out[key] = list(value) if isinstance(value, list) else value
    return out


def _seconds_value(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _event_dict(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if event.t:
        out["t"] = _seconds_value(event.t[0]) if len(event.t) == 1 else [_seconds_value(t) for t in event.t]
    if event.every is not None:
        out["every"] = _seconds_value(event.every)
    if event.until is not None:
        out["until"] = _seconds_value(event.until)
    for key in ("link", "node"):
        if getattr(event, key) is not None:
            out[key] = getattr(event, key)
    if event.from_node is not None:
        out["from"] = event.from_node
    if event.state is not None:
        out["state"] = event.state
    if event.blackhole is not None:
        out["blackhole"] = event.blackhole
    if event.set is not None:
        out["set"] = _shaping_dict(event.set)
    if event.endpoint is not None:
        out["endpoint"] = ({"interface": event.endpoint.interface, "remove": True} if event.endpoint.remove else
                           {"interface": event.endpoint.interface, "flags": list(event.endpoint.flags)})
    if event.limits is not None:
        out["limits"] = dict(event.limits)
    if event.label is not None:
        out["label"] = event.label
    return out


def _gso_max_segs(reader: _Reader, value: Any) -> int | str:
    """A number of segments or a mode; validate checks the range and the mode's name."""
    if isinstance(value, bool):  # YAML reads off/no/false (and on/yes/true) as booleans
        raise reader.error("gso_max_segs", f"{value!r} is not a setting",
                           "write kernel (no cap), auto (the default cap) or a number of segments such as 1")
    return value if isinstance(value, int) else reader.string(value, "gso_max_segs")


def topology_to_dict(topology: Topology) -> dict[str, Any]:
    out: dict[str, Any] = {"name": topology.name}
    defaults = Topology(name=topology.name)
    for key in ("routing", "source_routing", "address_pool", "link_prefix", "allow_no_impairments",
                "placement", "overlays", "mtu", "gso_max_segs", "snaplen", "family", "address_pool6",
                "link_prefix6"):
        value = getattr(topology, key)
        if value != getattr(defaults, key):
            out[key] = value
    if topology.engines:
        out["engines"] = {name: {key: getattr(spec, key) for key in ("host", "context") if getattr(spec, key)}
                          for name, spec in topology.engines.items()}
    out["nodes"] = {name: _node_dict(node) for name, node in topology.nodes.items()}
    out["links"] = [_link_dict(link) for link in topology.links]
    if topology.flows:
        out["flows"] = [_flow_dict(flow) for flow in topology.flows]
    if topology.events:
        out["events"] = [_event_dict(event) for event in topology.events]
    return out


def topology_to_yaml(topology: Topology) -> str:
    return yaml.safe_dump(topology_to_dict(topology), sort_keys=False, default_flow_style=None, width=100)
