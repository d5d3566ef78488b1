"""``mptcpdock swarm init|join|status|leave``: the engine's swarm, for overlay links."""

from __future__ import annotations

import click

from ..runtime import swarm as swarm_api
from .console import out


@click.group("swarm")
def swarm() -> None:
    """The engine's Docker swarm (overlay links need a manager; see docs/multi-host.md)."""


@swarm.command("init")
@click.option("--advertise", default=swarm_api.LOOPBACK, show_default=True,
              help="The only address swarm listens on and carries VXLAN from.")
def init(advertise: str) -> None:
    """Make this engine a swarm manager (a one-node swarm on loopback by default)."""
    changed = swarm_api.init(advertise)
    out.print("swarm initialised" if changed else "already a swarm manager; nothing changed")
    for line in swarm_api.status().lines():
        out.print(line)


@swarm.command("token")
def token() -> None:
    """Print the worker join token of this engine's swarm (for 'swarm join' on another engine)."""
    click.echo(swarm_api.worker_token())


@swarm.command("join")
@click.argument("manager")
@click.option("--token", "join_token", required=True, help="The manager's worker token ('mptcpdock swarm token').")
@click.option("--advertise", required=True, help="This engine's address on the private link to the manager.")
def join(manager: str, join_token: str, advertise: str) -> None:
    """Join this engine (e.g. --context vm) to MANAGER (ADDR:2377) as a worker."""
    swarm_api.join(manager, join_token, advertise)
    for line in swarm_api.status().lines():
        out.print(line)


@swarm.command("status")
def status() -> None:
    """This engine's swarm role, its nodes and the labs' overlay networks."""
    for line in swarm_api.status().lines():
        out.print(line)


@swarm.command("leave")
def leave() -> None:
    """Leave the swarm (refused while a lab has overlays here)."""
    out.print("left the swarm" if swarm_api.leave() else "in no swarm; nothing changed")
