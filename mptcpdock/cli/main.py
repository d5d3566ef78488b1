"""The ``mptcpdock`` group: every command of every family, and one way to fail."""

from __future__ import annotations

import sys

import click

from .. import __version__
from ..errors import MptcpdockError
from .console import err
from .export import export_command
from .image import image
from .lab import down, exec_, plan, status, up
from .routes import routes_command
from .run import report_command, run_command


class Cli(click.Group):
    """Turns every mptcpdock error into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MptcpdockError as exc:
            err.print(f"[bold red]error:[/] {exc}", soft_wrap=True)
            sys.exit(1)
        except KeyboardInterrupt:
            err.print("interrupted")
            sys.exit(130)


@click.group(cls=Cli)
@click.version_option(__version__, prog_name="mptcpdock")
def main() -> None:
    """Emulate networks out of Docker containers and run real MPTCP experiments."""


for command in (up, down, status, exec_, plan, image, export_command, run_command, report_command, routes_command):
    main.add_command(command)
