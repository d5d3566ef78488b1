"""Errors that reach the user as one clear line: where, what, and how to fix it.

The shared leaf of the package: it imports nothing of mptcpdock, and every layer may import it."""

from __future__ import annotations


class MptcpdockError(Exception):
    """Base class for every error mptcpdock reports to a user."""


class TopologyError(MptcpdockError):
    """A topology (YAML file or Python model) that cannot be built.

    ``field`` is a dotted path such as ``links[2].rate`` or ``nodes.h1.mptcp.limits``;
    ``source`` is the file it came from (if any) and ``line`` the line of that field.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        fix: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ) -> None:
        self.message = message
        self.field = field
        self.fix = fix
        self.source = source
        self.line = line
        super().__init__(self.render())

    def located(self, source: str | None, line: int | None) -> "TopologyError":
        """Return the same error, placed in ``source`` at ``line`` (when not already placed)."""
        return TopologyError(
            self.message,
            field=self.field,
            fix=self.fix,
            source=self.source or source,
            line=self.line or line,
        )

    def render(self) -> str:
        where = self.source or "<topology>"
        if self.line:
            where += f":{self.line}"
        parts = [where]
        if self.field:
            parts.append(self.field)
        text = ": ".join(parts) + ": " + self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class KernelFeatureError(MptcpdockError):
    """The Docker host's kernel lacks something the topology needs."""


class RuntimeFailure(MptcpdockError):
    """Docker or a command inside a node failed while building or running a lab."""


class LabNotFound(MptcpdockError):
    """A command names a lab that is not running."""
