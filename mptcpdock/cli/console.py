"""What every command prints through: the two consoles, the progress spinner, lab warnings."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console

from ..runtime.state import LabState

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


def warn(state: LabState) -> None:
    """The lab's standing warning (impairments dropped), on stderr."""
    warning = state.warning()
    if warning:
        err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
