"""Progress messages that carry counts.

Every long operation (``up``, ``down``, ``run``) reports through a ``Progress`` callback
taking one string, so ``print`` is a valid callback. A :class:`Step` is such a string that
also says which phase it belongs to and how far that phase is (``done`` of ``total``, in
``unit``): the command line draws a bar per phase from it on a terminal, and one line per
phase elsewhere; a plain callback just prints the text.
"""

from __future__ import annotations

from typing import Callable

Progress = Callable[[str], None]


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() or value >= 10 else f"{value:.1f}"


class Step(str):
    """``PHASE: DONE of TOTAL UNIT[; DETAIL]``, with those parts kept as attributes."""

    phase: str
    done: float
    total: float
    unit: str
    detail: str

    def __new__(cls, phase: str, done: float, total: float, unit: str = "", detail: str = "") -> "Step":
        text = f"{phase}: {_number(done)} of {_number(total)}" + (f" {unit}" if unit else "")
        self = super().__new__(cls, text + (f"; {detail}" if detail else ""))
        self.phase, self.done, self.total, self.unit, self.detail = phase, done, total, unit, detail
        return self

    @property
    def finished(self) -> bool:
        return self.done >= self.total


def quiet(_message: str) -> None:
    """The callback that reports nothing."""


def phase_lines(write: Callable[[str], None]) -> Progress:
    """A callback for logs: every plain message, and a :class:`Step` only once its phase has
    finished (one line per phase instead of one per count)."""

    def progress(message: str) -> None:
        if not isinstance(message, Step) or message.finished:
            write(message)

    return progress
