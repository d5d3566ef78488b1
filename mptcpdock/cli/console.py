"""What every command prints through: the two consoles, styled lines, progress, lab warnings.

Nothing a user reads is interpreted as markup: both consoles are made with ``markup=False``
and ``emoji=False``, so ``[signal]`` or ``:smile:`` in a message, a table or a checklist line
prints as written. Styles are applied only through :func:`styled` (rich ``Text`` objects), and
rich drops them when the stream is not a terminal (or ``NO_COLOR`` is set): colours appear
only on a terminal.
"""

from __future__ import annotations

import json
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..runtime.progress import Step
from ..runtime.state import LabState

err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)


def styled(*parts: str | tuple[str, str]) -> Text:
    """One line from plain strings and (text, style) pairs; no markup is parsed in either."""
    return Text.assemble(*parts)


def error(message: str) -> None:
    """``error: MESSAGE`` on stderr, the word in bold red on a terminal."""
    err.print(styled(("error:", "bold red"), " ", message))


def warning(message: str) -> None:
    """``warning: MESSAGE`` on stderr."""
    err.print(styled(("warning:", "yellow"), " ", message))


def warn(state: LabState) -> None:
    """The lab's standing warning (impairments dropped), on stderr."""
    text = state.warning()
    if text:
        warning(text)


# -- progress ---------------------------------------------------------------------------------------

class Reporter:
    """The ``Progress`` callback of one command: a bar per phase (:class:`Step` messages) and
    plain messages as lines, on a terminal; off a terminal (a log, CI, a pipe) one line per
    phase, printed when the phase finishes, and every plain message as a line. Always on stderr."""

    def __init__(self, quiet: bool = False, terminal: bool | None = None) -> None:
        self.quiet = quiet
        self.terminal = err.is_terminal if terminal is None else terminal
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._pending: dict[str, tuple[Step, float]] = {}  # off a terminal: phase -> (last step, started)

    def __enter__(self) -> "Reporter":
        if self.terminal and not self.quiet:
            self._bars = Progress(TextColumn("{task.description}", markup=False), BarColumn(bar_width=30),
                                  TextColumn("{task.fields[count]}", markup=False), TimeElapsedColumn(),
                                  TextColumn("{task.fields[detail]}", markup=False), console=err)
            self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.stop()
        for step, started in self._pending.values():  # phases that never finished (a failure, Ctrl-C)
            err.print(f"  {step} (stopped after {time.monotonic() - started:.1f} s)")
        self._pending.clear()

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        if not isinstance(message, Step):
            (self._bars.console if self._bars else err).print(styled(("  " + message, "dim")))
        elif self._bars is not None:
            self._bar(message)
        else:
            self._line(message)

    def _bar(self, step: Step) -> None:
        assert self._bars is not None
        count = f"{step.done:.0f}/{step.total:.0f}" + (f" {step.unit}" if step.unit else "")
        fields = {"count": count, "detail": step.detail}
        if step.phase not in self._tasks:
            self._tasks[step.phase] = self._bars.add_task(step.phase, total=max(step.total, 1e-9), **fields)
        self._bars.update(self._tasks[step.phase], completed=step.done, total=max(step.total, 1e-9), **fields)

    def _line(self, step: Step) -> None:
        started = self._pending.get(step.phase, (step, time.monotonic()))[1]
        if step.finished:
            self._pending.pop(step.phase, None)
            err.print(f"  {step} ({time.monotonic() - started:.1f} s)")
        else:
            self._pending[step.phase] = (step, started)


def reporter(quiet: bool = False) -> Reporter:
    """``with reporter(quiet) as progress: ...``: the callback to hand to up, down and run."""
    return Reporter(quiet)


# -- the checklist ----------------------------------------------------------------------------------

#: Words of the checklist coloured on a terminal (the text itself is never changed).
CHECKLIST_STYLES = {"[PASS]": "green", "[FAIL]": "bold red", "[expected]": "green", "[not expected]": "yellow",
                    "as expected": "green", "fewer than expected": "bold red", "MORE than expected": "yellow",
                    "missing:": "bold red", "! ": "yellow"}


def checklist_text(text: str) -> Text:
    """The checklist (or its after-run part) as it reads in checklist.txt, coloured on a terminal."""
    rendered = Text(text.rstrip("\n"))
    for word, style in CHECKLIST_STYLES.items():
        rendered.highlight_words([word], style)
    return rendered


# -- --json -----------------------------------------------------------------------------------------

def print_json(document: dict) -> None:
    """The one JSON document a ``--json`` command writes to stdout (see docs/json.md): an
    object whose first key is ``schema``, the version of that document's layout."""
    assert next(iter(document), None) == "schema", "a --json document starts with its schema version"
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()
