"""The ``mptcpdock`` group: every command of every family, and one way to fail."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import MptcpdockError
from ..runtime import docker_api
from .console import err, error
from .doctor import doctor
from .examples import examples_command
from .export import export_command
from .graph import graph_command
from .image import image
from .lab import down, exec_, plan, status, up
from .routes import routes_command
from .run import report_command, run_command
from .sweep import sweep_command
from .swarm import swarm


class Cli(click.Group):
    """Turns every mptcpdock error into one line on stderr and exit status 1; so too a lost
    engine that no step below explained (the steps that create things say what they left)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MptcpdockError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)
        except Exception as exc:
            if not docker_api.engine_gone(exc):
                raise
            fail(str(docker_api.gone_error(
                f"'mptcpdock {ctx.invoked_subcommand}'", exc, "what it had done so far stays as it was",
                "run it again once the engine answers ('mptcpdock status' lists the labs)")))


def fail(message: str) -> None:
    error(message)
    sys.exit(1)


@click.group(cls=Cli)
@click.version_option(__version__, prog_name="mptcpdock")
@click.option("--context", metavar="NAME",
              help="The Docker context whose engine to use (beats DOCKER_HOST, DOCKER_CONTEXT and the current "
                   "context, as with 'docker --context').")
def main(context: str | None) -> None:
    """Emulate networks out of Docker containers and run real MPTCP experiments.

    The Docker engine is the docker CLI's: --context NAME, else DOCKER_HOST (tcp://, ssh://, unix://;
    TLS from DOCKER_TLS_VERIFY / DOCKER_CERT_PATH), else DOCKER_CONTEXT, else the current context of
    ~/.docker/config.json, else the local socket. 'mptcpdock doctor' says which, and what it can do."""
    if context:
        docker_api.select_engine(context)


for command in (up, down, status, exec_, plan, image, export_command, run_command, report_command, sweep_command,
                routes_command, doctor, swarm, examples_command, graph_command):
    main.add_command(command)
