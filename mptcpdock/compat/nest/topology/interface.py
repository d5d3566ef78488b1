"""NeST's ``Interface``: one end of a ``connect()``; shaping and MPTCP endpoints live here."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any, Sequence

from ....api import InterfaceRef, caller_location, shaping
from ....errors import TopologyError
from ....topology.model import DISTRIBUTIONS, ENDPOINT_FLAGS, Shaping
from ....topology.units import UnitError, parse_percent, parse_time_us
from .._unsupported import unsupported_attribute
from .address import Address

if TYPE_CHECKING:
    from .network import Network
    from .node import Node

#: NeST's set_qdisc choices (0.4.4): these four map onto mptcpdock's AQM leaves, pfifo is its default leaf.
NEST_QDISCS: tuple[str, ...] = ("codel", "fq_codel", "pie", "red", "pfifo")
#: ... and these two have no mptcpdock equivalent.
NEST_ONLY_QDISCS: tuple[str, ...] = ("choke", "fq_pie")

#: NeST's default (``["subflow", "fullmesh", "signal"]`` on iproute2 >= 5.19) is refused by
#: the kernel: an endpoint cannot be both signal and fullmesh. NeST's own default for older
#: iproute2, which every kernel accepts, keeps the intent: announce this address and open
#: subflows from it.
DEFAULT_ENDPOINT_FLAGS: tuple[str, ...] = ("signal", "subflow")


class Interface:
    """Created by :func:`connect`; ``pair`` is the interface at the other end."""

    def __init__(self, name: str, node: "Node", ref: InterfaceRef, network: "Network | None") -> None:
        self.name = name
        self.node = node
        self.ref = ref
        self.network = network
        self.pair: "Interface | None" = None
        self._address: Address | None = None
        self._nest_delay: int | None = None  # NeST's self._delay (microseconds)
        self._qdisc: str | None = None
        self.netem_extras = False  # a set_packet_* or set_delay_distribution call: netem is required

    # addresses ----------------------------------------------------------------------------
    @property
    def address(self) -> Address | None:
        return self._address

    @property
    def id(self) -> str:
        return self.name

    @property
    def node_id(self) -> str:
        return self.node.name

    def set_address(self, address: "str | Address") -> None:
        """Give this interface its address (AddressHelper does this for a Network's interfaces)."""
        value = Address(address)
        if value.is_default() or "/" not in value.get_addr():
            raise TopologyError(f"{value.get_addr()!r} needs a prefix length", fix="write e.g. 10.0.0.1/24")
        self._address = value
        link = self.ref.lab.topology.links[self.ref.link_index]
        end = link.a if self.ref.side == 0 else link.b
        end.address = value.get_addr(with_subnet=False)
        if link.subnet is None:
            link.subnet = value.get_subnet()

    def get_address(self, ipv4: bool = True, ipv6: bool = True, as_list: bool = False) -> "Address | list[Address]":
        if self._address is None:
            raise TopologyError(f"interface {self.name!r} of node {self.node.name!r} has no address yet",
                                source=caller_location()[0], line=caller_location()[1],
                                fix="call AddressHelper.assign_addresses() (or set_address) first")
        return [self._address] if as_list else self._address

    def subnet(self) -> ipaddress.IPv4Network | None:
        if self._address is not None:
            return ipaddress.IPv4Network(self._address.get_subnet())
        if self.network is not None:
            return self.network.subnet
        return None

    # shaping ------------------------------------------------------------------------------
    # NeST keeps each interface's netem delay (``self._delay``) apart: set_delay_distribution adds
    # its delay to it, set_packet_reordering adds its delay to it for the netem line only. The
    # model keeps every parameter a call sets (NeST's ``tc qdisc change ... netem`` resets the
    # ones a call does not name: docs/nest.md).
    def set_attributes(self, bandwidth: Any, delay: Any, qdisc: str | None = None, **kwargs: Any) -> None:
        """Rate and delay of what this interface sends (htb, and netem for the delay); ``qdisc``
        (with its ``**kwargs``) as :meth:`set_qdisc`."""
        if kwargs and qdisc is None:
            raise _error(f"set_attributes() got options {sorted(kwargs)} without a qdisc", "drop them")
        link = self.ref.lab.topology.links[self.ref.link_index]
        saved = (link.egress.get(self.node.name), self._nest_delay, self._qdisc)
        try:
            self.set_bandwidth(bandwidth)
            self.set_delay(delay)
            if qdisc is not None:
                self.set_qdisc(qdisc, **kwargs)
        except TopologyError:  # all or nothing, as one call
            if saved[0] is None:
                link.egress.pop(self.node.name, None)
            else:
                link.egress[self.node.name] = saved[0]
            self._nest_delay, self._qdisc = saved[1], saved[2]
            raise

    def set_bandwidth(self, bandwidth: Any) -> None:
        self._shape(rate=_text(bandwidth))

    def set_delay(self, delay: Any) -> None:
        self._shape(delay=_text(delay))
        self._nest_delay = self._egress().delay

    def set_packet_loss(self, loss_rate: Any, correlation_rate: Any = None) -> None:
        """netem ``loss`` (percent, e.g. "1%") of what this interface sends."""
        if correlation_rate is not None:
            raise _error("set_packet_loss(correlation_rate=...): netem's loss correlation is not supported by "
                         "mptcpdock", "drop correlation_rate (independent loss), or use set_packet_loss alone")
        self._shape(loss=_percent(loss_rate, "loss_rate"))

    def set_packet_corruption(self, corrupt_rate: Any, correlation_rate: Any = None) -> None:
        """netem ``corrupt`` (percent): one bit flipped in that share of the packets sent."""
        if correlation_rate is not None:
            raise _error("set_packet_corruption(correlation_rate=...): netem's corruption correlation is not "
                         "supported by mptcpdock", "drop correlation_rate")
        self._shape(corrupt=_percent(corrupt_rate, "corrupt_rate"))

    def set_packet_duplication(self, duplicate_rate: Any) -> None:
        """netem ``duplicate`` (percent) of the packets sent."""
        self._shape(duplicate=_percent(duplicate_rate, "duplicate_rate"))

    def set_packet_reordering(self, delay: Any, reorder_rate: Any, gap: int | None = None) -> None:
        """netem ``delay D reorder R``: R percent of the packets go at once, the others wait D,
        where D is ``delay`` plus the interface's delay so far (as in NeST)."""
        if gap is not None:
            raise _error("set_packet_reordering(gap=...): netem's reorder gap is not supported by mptcpdock",
                         "drop gap (reorder_rate percent of the packets are sent at once, the rest delayed)")
        extra = _time_us(delay, "delay")
        self._shape(delay_us=extra + (self._nest_delay or 0), reorder=_percent(reorder_rate, "reorder_rate"))

    def set_delay_distribution(self, delay: Any, jitter: Any, distribution: Any) -> None:
        """netem ``delay D JITTER distribution X``; D is ``delay`` plus the interface's delay so
        far, as in NeST (which needs a set_delay first; here a missing one counts as 0)."""
        name = str(getattr(distribution, "option", distribution))
        if name not in DISTRIBUTIONS:
            raise _error(f"delay distribution {name!r} is not supported by mptcpdock",
                         "use one of " + ", ".join(DISTRIBUTIONS))
        total = _time_us(delay, "delay") + (self._nest_delay or 0)
        self._shape(delay_us=total, jitter_us=_time_us(jitter, "jitter"), distribution=name)
        self._nest_delay = total

    def set_qdisc(self, qdisc: str, **kwargs: Any) -> None:
        """An AQM as this interface's queue: the leaf under its htb (NeST puts it in an IFB the
        interface mirrors its egress to). codel, fq_codel, pie, red; pfifo is the default leaf.
        ``limit=N`` (packets) is the queue limit; other options are errors."""
        name = str(qdisc)
        if name in NEST_ONLY_QDISCS:
            raise _error(f"set_qdisc({name!r}): mptcpdock has no {name} leaf",
                         "use one of codel, fq_codel, pie, red (or pfifo); cake and fq through a topology file")
        if name not in NEST_QDISCS:
            raise _error(f"{name} is not a valid Qdisc (NeST's: {', '.join(NEST_QDISCS + NEST_ONLY_QDISCS)})",
                         "use one of codel, fq_codel, pie, red, pfifo")
        options = dict(kwargs)
        limit = options.pop("limit", None)
        if options:
            raise _error(f"set_qdisc({name!r}) options {sorted(options)} are not supported by mptcpdock "
                         "(the qdisc keeps its kernel defaults)", "drop them; limit=N (packets) is supported")
        queue = None
        if limit is not None:
            try:
                queue = int(str(limit).rstrip("p"))
            except ValueError:
                raise _error(f"set_qdisc limit {limit!r} is not a number of packets", "write e.g. limit=\"100\"") from None
        self._shape(qdisc=None if name == "pfifo" else name, queue=queue)
        if name == "pfifo":  # the default leaf again, whatever an earlier set_qdisc chose
            self._egress().qdisc = None
        self._qdisc = name

    def get_qdisc(self) -> str | None:
        """The name of the qdisc set_qdisc gave this interface (NeST returns its Qdisc object)."""
        return self._qdisc

    def _egress(self) -> Shaping:
        link = self.ref.lab.topology.links[self.ref.link_index]
        return link.egress.get(self.node.name, Shaping())

    def _shape(self, *, delay_us: int | None = None, jitter_us: int | None = None, qdisc: str | None = None,
               queue: int | None = None, **values: Any) -> None:
        source, line = caller_location()
        link = self.ref.lab.topology.links[self.ref.link_index]
        field = f"links[{self.ref.link_index}].egress.{self.node.name}"
        new = shaping(field=field, source=source, line=line,
                      **{key: values.pop(key) for key in ("rate", "delay") if key in values})
        if delay_us is not None:
            new.delay = delay_us
        if jitter_us is not None:
            new.jitter = jitter_us
        new.qdisc, new.queue = qdisc, queue
        for key, value in values.items():  # loss, corrupt, duplicate, reorder, distribution: already parsed
            setattr(new, key, value)
        merged = self._egress().merged(new)
        if merged.qdisc is not None and merged.needs_netem:
            raise _error(f"interface {self.name!r} would have both the {merged.qdisc} qdisc and netem (delay, "
                         "loss, corruption, duplication or reordering): mptcpdock puts either as the leaf under htb",
                         "give the AQM to one interface and the impairment to another (e.g. the peer, "
                         "or the next hop's)")
        link.egress[self.node.name] = merged
        if {"loss", "corrupt", "duplicate", "reorder", "distribution"} & set(values):
            self.netem_extras = True

    # MPTCP --------------------------------------------------------------------------------
    def enable_mptcp_endpoint(self, flags: Sequence[str] = DEFAULT_ENDPOINT_FLAGS) -> None:
        """Make this interface's address an MPTCP endpoint (``ip mptcp endpoint add``)."""
        flags = tuple([flags] if isinstance(flags, str) else flags)
        source, line = caller_location()
        unknown = [flag for flag in flags if flag not in ENDPOINT_FLAGS]
        if unknown or not flags:
            raise TopologyError(f"endpoint flags {list(flags)} are not valid", source=source, line=line,
                                fix="use signal, subflow, backup and/or fullmesh")
        if "signal" in flags and "fullmesh" in flags:
            raise TopologyError("the kernel refuses an endpoint that is both signal and fullmesh",
                                source=source, line=line, fix='use ["signal"] or ["subflow", "fullmesh"]')
        mptcp = self.node.ref.model.mptcp
        existing = next((ep for ep in mptcp.endpoints if ep.interface == self.name), None)
        if existing is not None:
            raise TopologyError(f"interface {self.name!r} already is an MPTCP endpoint ({', '.join(existing.flags)}); "
                                "the kernel refuses a second endpoint for the same address",
                                source=source, line=line, fix="enable each interface once")
        self.node.ref.endpoint(self.name, *flags)

    def get_mptcp_endpoints(self) -> dict[str, tuple[str, ...]]:
        """{address: flags} of this interface's endpoint (empty when it has none)."""
        for endpoint in self.node.ref.model.mptcp.endpoints:
            if endpoint.interface == self.name:
                address = self._address.get_addr(with_subnet=False) if self._address else ""
                return {address: endpoint.flags}
        return {}

    def __getattr__(self, name: str) -> Any:
        return unsupported_attribute("Interface", name)

    def __repr__(self) -> str:
        return f"Interface({self.name!r})"


def _error(message: str, fix: str) -> TopologyError:
    source, line = caller_location()
    return TopologyError(message, source=source, line=line, fix=fix)


def _percent(value: Any, what: str) -> float:
    text = _text(value)
    if not (isinstance(text, str) and text.strip().endswith("%")):  # NeST's Percentage: "<number>%"
        raise _error(f"{what} {value!r} is not a percentage", 'write it as NeST does, e.g. "1%" or "0.5%"')
    try:
        return parse_percent(text)
    except UnitError as exc:
        raise _error(f"{what} {value!r}: {exc}", exc.fix) from None


def _time_us(value: Any, what: str) -> int:
    try:
        return parse_time_us(_text(value), what=what)
    except UnitError as exc:
        raise _error(f"{what} {value!r}: {exc}", exc.fix) from None


def _text(value: Any) -> Any:
    """NeST accepts its Bandwidth/Delay objects or strings; both print as '10mbit' / '10ms'."""
    for attribute in ("string_value", "value"):
        if hasattr(value, attribute):
            return getattr(value, attribute)
    return value


__all__ = ["Interface", "DEFAULT_ENDPOINT_FLAGS"]
