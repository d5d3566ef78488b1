"""The ``--json`` documents of ``plan``, ``up``, ``status``, ``routes`` and ``down``, built from
the same plans and states the tables are printed from (docs/json.md describes every key).

``run --json`` and ``report --json`` write the run's summary (:class:`mptcpdock.report.records.Summary`,
the content of summary.json); ``doctor --json``, ``examples --json`` and ``image ... --json``
build theirs in their own modules. Each document is an object whose first key is
``schema``: the version of that document's layout, raised only when a key changes meaning
or goes away (a new key keeps it).
"""

from __future__ import annotations

from typing import Any

from ..plan.commands import Plan, make_plan
from ..plan.events import EventPlan, plan_events
from ..plan.routing import NodeRouting
from ..plan.shaping import without_impairments
from ..runtime.kernel_routes import KernelRouting, differences
from ..runtime.state import LabState
from ..topology.model import Shaping

#: The version of each document's layout (docs/json.md).
SCHEMAS = {"plan": 1, "lab": 1, "labs": 1, "routes": 1, "down": 1}


def planned(plan_or_state: Plan | LabState) -> Plan:
    """The plan of a lab; a state is planned again (pure) with the impairments it dropped."""
    if isinstance(plan_or_state, LabState):
        return make_plan(plan_or_state.topology(), drop_impairments=plan_or_state.impairments_dropped)
    return plan_or_state


def shaping_dict(shaping: Shaping) -> dict[str, Any]:
    return {"rate_bps": shaping.rate, "delay_us": shaping.delay, "jitter_us": shaping.jitter,
            "loss_percent": shaping.loss}


def interfaces(made: Plan) -> list[dict[str, Any]]:
    """One entry per link end: the rows of the interface table ``up`` and ``status`` print."""
    topology, dropped = made.topology, made.impairments_dropped
    out = []
    for name in topology.nodes:
        for link in topology.links_of(name):
            end, peer = link.end(name), link.peer(name)
            asked = link.shaping_from(name)
            applied = without_impairments(asked) if dropped else asked
            queue = made.nodes[name].shaping[end.interface or ""].queue
            out.append({
                "node": name, "interface": end.interface, "address": end.address,
                "prefix_length": int(link.subnet.split("/")[1]) if link.subnet else None,
                "link": link.name, "peer_node": peer.node, "peer_interface": peer.interface,
                "shaping": shaping_dict(applied), "asked": shaping_dict(asked),
                "queue": {"packets": queue.packets, "reason": queue.reason} if queue else None,
                "engine": topology.nodes[name].engine,
                "network": "overlay" if topology.is_overlay(link) else "bridge",
                "mtu": topology.mtu,
            })
    return out


def plan_document(made: Plan) -> dict[str, Any]:
    """``plan --json``: per node, the commands ``up`` would run, in order."""
    commands: dict[str, list[str]] = {name: [] for name in made.nodes}
    for node, line in made.trace_lines():
        commands.setdefault(node, []).append(line)
    return {
        "schema": SCHEMAS["plan"],
        "lab": made.lab,
        "source": made.topology.source,
        "impairments_dropped": made.impairments_dropped,
        "placement": made.placement_lines(),
        "nodes": {name: {"kind": made.topology.nodes[name].kind, "image": node.image, "commands": commands[name]}
                  for name, node in made.nodes.items()},
        "interfaces": interfaces(made),
        "schedule": schedule_document(plan_events(made.topology, made)),
    }


def schedule_document(events: EventPlan) -> dict[str, Any]:
    """What each node's event agent does during runs (empty without events or traces): its
    steps before t0, at t seconds after t0 (events, trace steps), and after the run."""
    out: dict[str, Any] = {}
    for node, schedule in events.schedules.items():
        if schedule.empty:
            continue
        out[node] = {
            "setup": [step.line() for step in schedule.setup],
            "steps": [{"t": step.t, "id": step.id, "kind": step.kind, "command": step.line()}
                      for step in schedule.steps if step.kind != "snap"],
            "restore": [step.line() for step in schedule.restore],
        }
    return out


def lab_document(state: LabState, made: Plan | None = None) -> dict[str, Any]:
    """``up --json`` and ``status LAB --json``: one running lab."""
    engine = getattr(state, "engine", None)
    return {
        "schema": SCHEMAS["lab"],
        "lab": state.lab,
        "source": state.source,
        "created": state.created,
        "impairments_dropped": state.impairments_dropped,
        "dropped_links": state.dropped_links,
        "warnings": [state.warning()] if state.warning() else [],
        "engine": engine.to_dict() if engine is not None else None,
        "image": state.image,
        "kernel": state.probe,
        "timings": state.timings,
        "nodes": {name: {"container": node.container, "container_id": node.container_id,
                         "interfaces": node.interfaces} for name, node in state.nodes.items()},
        "networks": state.networks,
        "interfaces": interfaces(made or planned(state)),
    }


def labs_document(rows: list[list[object]]) -> dict[str, Any]:
    """``status --json``: every lab the state directory or Docker knows."""
    return {"schema": SCHEMAS["labs"], "labs": [
        {"lab": lab, "source": None if source == "-" else source, "nodes": nodes,
         "links": None if links == "?" else links, "containers": containers,
         "notes": [note for note in str(notes).split("; ") if note]}
        for lab, source, nodes, links, containers, notes in rows]}


def routes_document(lab: str | None, source: str | None, routing: dict[str, NodeRouting],
                    kernels: dict[str, KernelRouting]) -> dict[str, Any]:
    """``routes --json``: the computed rules and routes per node, and the kernel's where the lab runs."""
    nodes = {}
    for name, node in routing.items():
        entry: dict[str, Any] = {
            "rules": [{"priority": rule.priority, "from": rule.src, "table": rule.table} for rule in node.rules],
            "routes": [{"table": "main" if route.table is None else route.table, "to": route.to, "via": route.via,
                        "dev": route.dev, "src": route.src, "metric": route.metric, "origin": route.origin,
                        "cost": route.cost} for route in node.routes],
            "kernel": None,
        }
        if name in kernels:
            diff = differences(node, kernels[name])
            entry["kernel"] = {"matches": not diff, "differences": diff, "text": kernels[name].text}
        nodes[name] = entry
    return {"schema": SCHEMAS["routes"], "lab": lab, "source": source, "nodes": nodes}


def down_document(lab: str, containers: int, networks: int) -> dict[str, Any]:
    return {"schema": SCHEMAS["down"], "lab": lab, "removed": {"containers": containers, "networks": networks}}
