"""NeST 0.4.4 calls the layer does not support: each raises one line naming the call and what
to use instead (never a silent no-op). docs/nest.md lists them."""

from __future__ import annotations

from typing import Any, Callable, NoReturn

from ...api import caller_location
from ...errors import TopologyError

#: class -> NeST method -> what to use instead.
UNSUPPORTED: dict[str, dict[str, str]] = {
    "Interface": {
        "set_packet_loss_state": "use set_packet_loss (independent loss); netem's 4-state model is not supported",
        "set_packet_loss_gemodel": "use set_packet_loss (independent loss); netem's Gilbert-Elliott model is not "
                                   "supported",
        "disable": "use a topology file's events: (state: down at t=...), docs/topology.md#events",
        "enable": "use a topology file's events: (state: up at t=...), docs/topology.md#events",
        "set_mode": "use a topology file's events: (state: down/up), docs/topology.md#events",
        "add_address": "use set_address (one address per interface)",
        "del_address": "use set_address (one address per interface)",
        "enable_mpls": "drop it (mptcpdock routes IPv4 without MPLS)",
        "is_mpls_enabled": "drop it (mptcpdock routes IPv4 without MPLS)",
        "enable_offload": "drop it (offloads keep the container defaults; GSO is capped per lab, docs/topology.md)",
        "disable_offload": "drop it (offloads keep the container defaults; GSO is capped per lab, docs/topology.md)",
        "disable_ip_dad": "drop it (the NeST layer is IPv4 only)",
    },
    "Node": {
        "__enter__": "drop 'with node:' (commands run inside nodes through 'mptcpdock exec NODE ...')",
        "read_tcp_param": "read it after a run in results/<lab>-<time>/nodes/<node>/info-start.txt, or with "
                          "'mptcpdock exec NODE sysctl net.ipv4.tcp_PARAM' on a lab kept up",
        "read_udp_param": "use 'mptcpdock exec NODE sysctl net.ipv4.udp_PARAM' on a lab kept up",
        "get_arp_table": "use 'mptcpdock exec NODE ip neigh' on a lab kept up (delete_namespaces_on_termination False)",
        "get_arp_entry": "use 'mptcpdock exec NODE ip neigh' on a lab kept up",
        "set_arp_entry": "drop it (neighbours are resolved by ARP)",
        "delete_arp_entry": "drop it (neighbours are resolved by ARP)",
        "flush_arp_table": "drop it (neighbours are resolved by ARP)",
        "enable_ip_forwarding": "create the node as Router(name)",
        "disable_ip_dad": "drop it (the NeST layer is IPv4 only)",
        "add_route_mpls_push": "use add_route (mptcpdock routes IPv4 without MPLS)",
        "add_route_mpls_switch": "use add_route (mptcpdock routes IPv4 without MPLS)",
        "add_route_mpls_pop": "use add_route (mptcpdock routes IPv4 without MPLS)",
        "print_routes_to_file": "use 'mptcpdock routes --lab LAB' (the computed routes and policy rules)",
        "get_interface": "keep the interfaces connect() returns",
    },
    "Experiment": {
        "add_coap_application": "use add_tcp_flow/add_udp_flow, or a topology file's 'tool: command' flow",
        "add_mpeg_dash_application": "use add_tcp_flow, or a topology file's 'tool: command' flow",
        "add_sip_application": "use add_udp_flow, or a topology file's 'tool: command' flow",
        "configure_tcp_module_params": "drop it (the congestion control's module parameters keep their defaults)",
    },
}


def unsupported(call: str, fix: str) -> NoReturn:
    """Raise the one-line error for the NeST call ``call`` (e.g. ``Interface.set_mode``)."""
    source, line = caller_location()
    raise TopologyError(f"NeST's {call}() is not supported by mptcpdock", source=source, line=line, fix=fix)


def unsupported_attribute(cls: str, name: str) -> Callable[..., NoReturn]:
    """For a class's ``__getattr__``: a callable raising the error for a NeST method we lack;
    AttributeError for any other name (so copy, pickle and hasattr behave)."""
    fix = UNSUPPORTED.get(cls, {}).get(name)
    if fix is None:
        raise AttributeError(f"{cls!r} object has no attribute {name!r}")

    def call(*args: Any, **kwargs: Any) -> NoReturn:
        unsupported(f"{cls}.{name}", fix)

    return call


class UnsupportedClass:
    """A NeST class the layer does not provide: constructing it raises the one-line error."""

    fix = "drop it"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        unsupported(type(self).__name__, self.fix)
