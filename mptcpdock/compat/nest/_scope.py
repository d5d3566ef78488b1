"""State the NeST layer keeps per script run, where NeST keeps it per process."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from ...api import ScriptRun, current_script

T = TypeVar("T")


class PerScript(Generic[T]):
    """A value made afresh for each script :func:`mptcpdock.api.topology_of_script` runs
    (and once for the code outside any script run): an exported script starts from nothing
    and leaves nothing behind, without the core knowing this layer exists."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self._script: ScriptRun | None = None

    def get(self) -> T:
        script = current_script()
        if self._value is None or self._script is not script:
            self._value, self._script = self._make(), script
        return self._value

    def clear(self) -> None:
        """Forget the value: the next :meth:`get` makes a new one."""
        self._value = None
