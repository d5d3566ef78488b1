"""``mptcpdock doctor [--json]``: whether labs can run on the engine mptcpdock talks to.

The facts and the rules are :mod:`mptcpdock.runtime.doctor`'s; this module prints them, as a
checklist on a terminal or as one JSON document (``"schema": 1``) on stdout, and exits with
the verdict: 0 labs run with impairments, 2 only without them (no netem), 1 not at all.
"""

from __future__ import annotations

import json
import sys

import click
from rich.markup import escape

from .. import NODE_IMAGE
from ..runtime.doctor import EXIT_NO_IMPAIRMENTS, EXIT_OK, MISSING, OK, Report, examine
from .console import out, steps

MARKS = {OK: "[green]ok     [/]", MISSING: "[bold red]MISSING[/]"}
VERDICT_STYLE = {EXIT_OK: "green", EXIT_NO_IMPAIRMENTS: "yellow"}


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (schema 1) on stdout; progress on stderr.")
@click.option("--image", default=NODE_IMAGE, show_default=True, help="The node image to probe the kernel from.")
def doctor(as_json: bool, image: str) -> None:
    """Check the Docker engine, its kernel and the node image.

    Exit 0: labs can run with delay/jitter/loss; 2: only without them (no netem); 1: not at all
    (no engine, no node image, no MPTCP, no htb)."""
    with steps("checking the Docker host") as progress:
        report = examine(image, progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        out.print(render(report), soft_wrap=True)
    sys.exit(report.exit_code)


def render(report: Report) -> str:
    """The checklist: one line per check, a fix line under what is missing or known bad."""
    width = max(len(check.name) for check in report.checks)
    lines = ["mptcpdock doctor: the Docker engine, its kernel and the node image", ""]
    for check in report.checks:
        mark = MARKS.get(check.status, "[dim]info   [/]")
        lines.append(f"  {mark}  {check.name:<{width}}  {escape(check.detail)}")
        if check.fix:
            lines.append(f"  {'':7}  {'':<{width}}  [cyan]fix:[/] {escape(check.fix)}")
    style = VERDICT_STYLE.get(report.exit_code, "bold red")
    lines += ["", f"[{style}]{escape(report.summary)}[/] (exit {report.exit_code})"]
    return "\n".join(lines)
