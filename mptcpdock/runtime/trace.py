"""The trace of every command mptcpdock runs, written as a replayable ``commands.sh``.

NeST's ``log_level: trace`` lists the commands it ran; ours lists Docker commands (as the
equivalent ``docker`` CLI lines) and every command run inside a node, in order, with the
node it ran on.
"""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TraceEntry:
    time: float
    node: str | None  # None: a command against the Docker engine itself
    argv: tuple[str, ...]
    container: str | None = None
    comment: str | None = None

    def shell(self) -> str:
        line = " ".join(shlex.quote(arg) for arg in self.argv)
        if self.container:
            line = f"docker exec {shlex.quote(self.container)} {line}"
        return line


@dataclass
class Trace:
    entries: list[TraceEntry] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def docker(self, *argv: str, comment: str | None = None) -> None:
        self._add(TraceEntry(time.time(), None, ("docker", *argv), comment=comment))

    def node(self, node: str, container: str, argv: list[str] | tuple[str, ...], comment: str | None = None) -> None:
        self._add(TraceEntry(time.time(), node, tuple(argv), container=container, comment=comment))

    def comment(self, text: str) -> None:
        self._add(TraceEntry(time.time(), None, (), comment=text))

    def _add(self, entry: TraceEntry) -> None:
        with self._lock:
            self.entries.append(entry)

    def extend(self, other: "Trace") -> None:
        with self._lock:
            self.entries.extend(other.entries)

    def render(self) -> str:
        lines = [
            "#!/bin/sh",
            "# Every command mptcpdock ran, in order (trace). Commands inside a node are shown",
            "# as `docker exec CONTAINER ...`; mptcpdock sent each node's lines of one phase",
            "# as a single `ip -batch -` / `tc -batch -` exec.",
            "set -e",
        ]
        for entry in sorted(self.entries, key=lambda e: e.time):
            if entry.comment:
                lines.append(f"# {entry.comment}")
            if entry.argv:
                lines.append(entry.shell())
        return "\n".join(lines) + "\n"

    def write(self, path: Path) -> Path:
        path.write_text(self.render())
        path.chmod(0o755)
        return path
