"""``mptcpdock doctor [--json]``: whether labs can run on the engine mptcpdock talks to.

The facts and the rules are :mod:`mptcpdock.runtime.doctor`'s; this module prints them, as a
checklist on a terminal or as one JSON document (``"schema": 1``) on stdout, and exits with
the verdict: 0 labs run with impairments, 2 only without them (no netem), 1 not at all.
"""

from __future__ import annotations

import sys

import click
from rich.text import Text

from .. import NODE_IMAGE
from ..runtime.doctor import EXIT_NO_IMPAIRMENTS, EXIT_OK, MISSING, OK, Report, examine
from .console import out, print_json, reporter, styled

MARKS = {OK: ("ok     ", "green"), MISSING: ("MISSING", "bold red")}
VERDICT_STYLE = {EXIT_OK: "green", EXIT_NO_IMPAIRMENTS: "yellow"}


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (schema 1) on stdout; progress on stderr.")
@click.option("--image", default=NODE_IMAGE, show_default=True, help="The node image to probe the kernel from.")
def doctor(as_json: bool, image: str) -> None:
    """Check the Docker engine, its kernel and the node image.

    Exit 0: labs can run with delay/jitter/loss; 2: only without them (no netem); 1: not at all
    (no engine, no node image, no MPTCP, no htb)."""
    with reporter() as progress:
        report = examine(image, progress)
    if as_json:
        print_json(report.to_dict())
    else:
        out.print(render(report))
    sys.exit(report.exit_code)


def render(report: Report) -> Text:
    """The checklist: one line per check, a fix line under what is missing or known bad
    (styled on a terminal only; no text is read as markup)."""
    width = max(len(check.name) for check in report.checks)
    lines = [styled("mptcpdock doctor: the Docker engine, its kernel and the node image"), styled("")]
    for check in report.checks:
        mark = MARKS.get(check.status, ("info   ", "dim"))
        lines.append(styled("  ", mark, f"  {check.name:<{width}}  {check.detail}"))
        if check.fix:
            lines.append(styled(f"  {'':7}  {'':<{width}}  ", ("fix:", "cyan"), f" {check.fix}"))
    style = VERDICT_STYLE.get(report.exit_code, "bold red")
    lines += [styled(""), styled((report.summary, style), f" (exit {report.exit_code})")]
    return Text("\n").join(lines)
