"""The ``mptcpdock`` command line."""

from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from typing import Iterator

import click
from rich.console import Console
from tabulate import tabulate

from . import __version__
from .runtime import lab as lab_api
from .errors import MptcpdockError
from .topology.loader import load_topology

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


@contextmanager
def steps(title: str, quiet: bool = False) -> Iterator:
    """A spinner showing the current step; yields the progress callback."""
    if quiet or not err.is_terminal:
        yield (lambda message: None) if quiet else (lambda message: err.print(f"  {message}"))
        return
    with err.status(title) as status:
        yield lambda message: status.update(f"{title}: {message}")


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


def _warn(state) -> None:
    warning = state.warning()
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


@main.command()
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("--name", help="Lab name (default: the topology's 'name').")
@click.option("--allow-no-impairments", is_flag=True,
              help="Where the kernel has no netem, proceed with rates only (recorded and warned about).")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no table.")
def up(topology: str, name: str | None, allow_no_impairments: bool, quiet: bool) -> None:
    """Bring up the lab a TOPOLOGY file describes."""
    model = load_topology(topology, name=name)
    lab_api.prepare(model)  # every input error before Docker is touched
    lab_api.docker_reachable()
    with steps(f"bringing up {model.name}", quiet) as progress:
        result = lab_api.bring_up(model, allow_no_impairments=allow_no_impairments, progress=progress)
    if not quiet:
        click.echo(lab_api.interface_table(result.plan))
        out.print(f"\nlab [bold]{model.name}[/] is up: {len(result.plan.nodes)} nodes, {len(result.plan.links)} links "
                  f"in {result.timings['total']:.2f} s (kernel {result.probe.kernel}, netem "
                  f"{'yes' if result.probe.netem else 'no'}); trace: {lab_api.trace_path(model.name)}")
    _warn(result.state)


@main.command()
@click.argument("target", required=False)
@click.option("-q", "--quiet", is_flag=True)
def down(target: str | None, quiet: bool) -> None:
    """Remove a lab (by name or topology file; the only one when omitted). Idempotent."""
    with steps("tearing down", quiet) as progress:
        lab, containers, networks = lab_api.tear_down(target, progress)
    if not quiet:
        out.print(f"lab {lab}: removed {containers} containers and {networks} networks")


@main.command()
@click.argument("lab", required=False)
def status(lab: str | None) -> None:
    """List labs, or show one lab's interfaces."""
    if lab is None:
        rows = lab_api.status_rows()
        if not rows:
            out.print("no labs are up")
            return
        click.echo(tabulate(rows, headers=["lab", "topology", "nodes", "links", "containers", "notes"]))
        return
    state = lab_api.current_state(lab)
    click.echo(lab_api.interface_table(state))
    _warn(state)


@main.command(name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--lab", "lab_name", help="The lab (default: the only one that is up).")
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def exec_(lab_name: str | None, node: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in NODE (a shell when no command is given)."""
    state = lab_api.current_state(lab_name)
    container = state.container(node)
    _warn(state)  # on stderr: the command's own output stays clean
    if command[:1] == ("--",):  # 'exec NODE -- CMD': click keeps the separator after NODE
        command = command[1:]
    if not command:
        docker = shutil.which("docker")
        if not docker:
            raise MptcpdockError("an interactive shell needs the docker CLI; give a command instead")
        os.execv(docker, [docker, "exec", "-it", container, "bash"])
    from .runtime.docker_api import run_exec
    result = run_exec(container, list(command))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.exit_code)


@main.command()
@click.argument("topology", type=click.Path(dir_okay=False))
@click.option("--no-impairments", is_flag=True, help="Plan as on a kernel without netem.")
def plan(topology: str, no_impairments: bool) -> None:
    """Print the commands 'up' would run in each node (no Docker needed)."""
    from .plan.commands import make_plan
    from .topology.validate import validate
    made = make_plan(validate(load_topology(topology)), drop_impairments=no_impairments)
    for node, line in made.trace_lines():
        out.print(f"[dim]{node:>8}[/]  {line}", soft_wrap=True)


@main.group()
def image() -> None:
    """Build, save and load the node image."""


@image.command("build")
@click.option("--tag", default=None, help="Image tag (default: the node image of this version).")
@click.option("--create-base", type=click.Choice(["auto", "always", "never"]), default="auto",
              help="Create debian:bookworm-slim locally (debootstrap) when it cannot be pulled.")
def image_build(tag: str | None, create_base: str) -> None:
    from . import NODE_IMAGE
    from .runtime.image import build_node_image
    build_node_image(None, tag or NODE_IMAGE, create_base=create_base, log=lambda line: err.print(line, markup=False))  # type: ignore[arg-type]
    out.print(f"built {tag or NODE_IMAGE}")


@image.command("save")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--tag", default=None)
def image_save(path: str, tag: str | None) -> None:
    from . import NODE_IMAGE
    from .runtime.image import save_image
    out.print(f"saved to {save_image(None, tag or NODE_IMAGE, path)}")


@image.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def image_load(path: str) -> None:
    from .runtime.image import load_image
    for loaded in load_image(None, path):
        out.print(f"loaded {', '.join(loaded.tags) or loaded.id}")


from .export import export_command  # noqa: E402

main.add_command(export_command)

from .experiment.runner import report_command, run_command  # noqa: E402 - registered after the group exists

main.add_command(run_command)
main.add_command(report_command)

from .routes_command import routes_command  # noqa: E402

main.add_command(routes_command)

if __name__ == "__main__":
    main()
