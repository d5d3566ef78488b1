"""``mptcpdock plan``, ``up``, ``status``, ``exec`` and ``down``: a lab's life cycle, and the
interface table ``up`` and ``status`` end with."""

from __future__ import annotations

import os
import shutil
import sys

import click
from tabulate import tabulate

from ..errors import MptcpdockError
from ..plan.events import EventPlan, plan_events
from ..plan.commands import NodePlan, Plan, make_plan
from ..runtime import docker_api, lab as lab_api
from ..runtime.docker_api import run_exec
from ..runtime.state import LabState
from ..topology.loader import load_topology
from ..topology.units import format_rate, format_time_us
from ..topology.validate import validate
from .console import out, print_json, reporter, styled, warn
from .documents import down_document, interfaces, lab_document, labs_document, plan_document, planned

JSON_HELP = "One JSON document on stdout (docs/json.md); progress and warnings on stderr."


@click.command("up")
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("--name", help="Lab name (default: the topology's 'name').")
@click.option("--allow-no-impairments", is_flag=True,
              help="Where the kernel has no netem, proceed with rates only (recorded and warned about).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no table.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def up(topology: str, name: str | None, allow_no_impairments: bool, quiet: bool, as_json: bool) -> None:
    """Bring up the lab a TOPOLOGY file (or bundled topology: 'mptcpdock examples') describes."""
    model = load_topology(topology, name=name)
    lab_api.prepare(model)  # every input error before Docker is touched
    lab_api.docker_reachable()
    with reporter(quiet) as progress:
        result = lab_api.bring_up(model, allow_no_impairments=allow_no_impairments, progress=progress)
    if as_json:
        print_json(lab_document(result.state, result.plan))
    elif not quiet:
        click.echo(interface_table(result.plan))
        out.print(styled("\nlab ", (model.name, "bold"), f" is up: {len(result.plan.nodes)} nodes, "
                         f"{len(result.plan.links)} links in {result.timings['total']:.2f} s (kernel "
                         f"{result.probe.kernel}, netem {'yes' if result.probe.netem else 'no'}); trace: "
                         f"{lab_api.trace_path(model.name)}"))
        for engine, entry in result.state.engines.items():  # a lab on several engines: each one's kernel
            nodes = [name for name, node in result.state.nodes.items() if node.engine == engine]
            out.print(f"  engine {engine} ({entry['identity']['host']}): {len(nodes)} nodes, kernel "
                      f"{entry['probe']['kernel']}, netem {'yes' if entry['probe']['netem'] else 'no'}"
                      + (", swarm manager (overlays)" if entry.get("manager") else ""))
    warn(result.state)


@click.command("down")
@click.argument("target", required=False)
@click.option("-q", "--quiet", is_flag=True, help="No progress and no summary line.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def down(target: str | None, quiet: bool, as_json: bool) -> None:
    """Remove a lab (by name or topology file; the only one when omitted). Idempotent."""
    with reporter(quiet) as progress:
        lab, containers, networks = lab_api.tear_down(target, progress)
    if as_json:
        print_json(down_document(lab, containers, networks))
    elif not quiet:
        out.print(f"lab {lab}: removed {containers} containers and {networks} networks")


@click.command("status")
@click.argument("lab", required=False)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def status(lab: str | None, as_json: bool) -> None:
    """List labs, or show one lab's interfaces."""
    if lab is None:
        rows = lab_api.status_rows()
        if as_json:
            print_json(labs_document(rows))
            return
        if not rows:
            out.print("no labs are up")
            return
        click.echo(tabulate(rows, headers=["lab", "topology", "nodes", "links", "containers", "notes"]))
        return
    state = lab_api.current_state(lab)
    if as_json:
        print_json(lab_document(state))
    else:
        click.echo(interface_table(state))
    warn(state)


@click.command(name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--lab", "lab_name", help="The lab (default: the only one that is up).")
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def exec_(lab_name: str | None, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in NODE (a shell when no command is given)."""
    state = lab_api.current_state(lab_name)
    container = state.container(node)
    warn(state)  # on stderr: the command's own output stays clean
    if command[:1] == ("--",):  # 'exec NODE -- CMD': click keeps the separator after NODE
        command = command[1:]
    if not command:
        docker = shutil.which("docker")
        if not docker:
            raise MptcpdockError("an interactive shell needs the docker CLI; give a command instead")
        target = getattr(container, "engine", None) or docker_api.engine()  # the node's own engine
        os.execv(docker, [docker, *target.cli_args(), "exec", "-it", container, "bash"])
    result = run_exec(container, list(command))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.exit_code)


@click.command("plan")
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("--no-impairments", is_flag=True, help="Plan as on a kernel without netem.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout (docs/json.md).")
def plan(topology: str, no_impairments: bool, as_json: bool) -> None:
    """Print the commands 'up' would run in each node (no Docker needed)."""
    made = make_plan(validate(load_topology(topology)), drop_impairments=no_impairments)
    if as_json:
        print_json(plan_document(made))
        return
    for line in made.placement_lines():
        out.print(styled((line, "dim")))
    noted: set[str] = set()
    for node, line in made.trace_lines():
        if node not in noted:
            noted.add(node)
            for note in queue_notes(made.nodes[node]):
                out.print(styled((f"{node:>8}  # {note}", "dim")))
        out.print(styled((f"{node:>8}", "dim"), f"  {line}"))
    for line in schedule_lines(plan_events(made.topology, made)):
        out.print(line)


def schedule_lines(events: EventPlan) -> list[str]:
    """What each node's agent will do during runs: 't=T node command' (trace steps summed up)."""
    if events.empty:
        return []
    lines = ["", "# during runs (each node's agent; t in seconds after t0):"]
    for node, schedule in events.schedules.items():
        lines += [f"{'before':>8}  {node}  {step.line()}" for step in schedule.setup]
        lines += [f"{step.t:8.3f}  {node}  {step.line()}" for step in schedule.steps if step.kind == "event"]
    for (node, interface), points in events.traced.items():
        rates = sorted({rate for _, rate in points})
        lines.append(f"{'trace':>8}  {node}  tc class change dev {interface} ... every 0.1 s: {len(points)} steps, "
                     f"{rates[0] / 1e6:g}..{rates[-1] / 1e6:g} Mbit/s")
    for node, schedule in events.schedules.items():
        lines += [f"{'after':>8}  {node}  {step.line()}" for step in schedule.restore]
    return lines


def queue_notes(node: NodePlan) -> list[str]:
    """'IF: queue N packets, REASON' for every shaped interface of ``node``."""
    return [f"{dev}: queue {planned.queue.packets} packets, {planned.queue.reason}"
            for dev, planned in node.shaping.items() if planned.queue]


# -- the interface table ---------------------------------------------------------------------------

def interface_table(plan_or_state: Plan | LabState) -> str:
    """node, interface, address, link, peer, shaping, queue: the table ``up`` ends with.
    A lab's state is planned again (pure) to show the queues it was given, and why."""
    made = planned(plan_or_state)
    topology = made.topology
    multi = bool(topology.engines) or topology.mtu is not None
    rows = []
    for row in interfaces(made):
        cells = [row["node"], row["interface"], f"{row['address']}/{row['prefix_length'] or '?'}", row["link"],
                 f"{row['peer_node']}:{row['peer_interface']}", describe_shaping(row["shaping"], row["asked"]),
                 f"{row['queue']['packets']} ({row['queue']['reason']})" if row["queue"] else "-"]
        if multi:
            cells[1:1] = [row["engine"] or "-"]
            cells[5:5] = [row["network"], row["mtu"] or "-"]
        rows.append(cells)
    headers = ["node", "interface", "address", "link", "peer", "egress shaping", "queue"]
    if multi:  # engines or overlays: where each node runs, what each link is, the pinned MTU
        headers[1:1] = ["engine"]
        headers[5:5] = ["network", "mtu"]
    return tabulate(rows, headers=headers)


def describe_shaping(applied: dict, asked: dict) -> str:
    """'10 Mbit/s, delay 10 ms DROPPED': what is applied, and what was asked and dropped."""
    parts = []
    if applied["rate_bps"]:
        parts.append(format_rate(applied["rate_bps"]))
    for key in ("delay", "jitter"):
        if asked[f"{key}_us"]:
            text = format_time_us(asked[f"{key}_us"])
            parts.append(f"{key} {text}" if applied[f"{key}_us"] else f"{key} {text} DROPPED")
    if asked["loss_percent"]:
        parts.append(f"loss {asked['loss_percent']:g}%" + ("" if applied["loss_percent"] else " DROPPED"))
    return ", ".join(parts) or "-"
