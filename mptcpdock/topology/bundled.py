"""The topologies that ship with mptcpdock, reachable by name (``mptcpdock up ex1``).

Each bundled topology file is known by its lab ``name:`` (``ex1``) and by its file name
without ``.yaml`` (``mptcp-default-configuration``, ``simult-flows/balanced-bwidth``); its
description is its ``description:`` or else the first line of its leading comment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import bundled_dir
from ..errors import TopologyError


@dataclass(frozen=True)
class Bundled:
    name: str  # the lab name the file gives
    path: Path
    key: str  # the file, relative to the bundled folder, without .yaml
    description: str


def bundled_topologies() -> list[Bundled]:
    """Every bundled topology, in file order (subfolders after the top-level files)."""
    root = bundled_dir("topologies")
    paths = sorted(root.rglob("*.yaml"), key=lambda path: (len(path.relative_to(root).parts), str(path)))
    return [_describe(root, path) for path in paths]


def _describe(root: Path, path: Path) -> Bundled:
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    data = data if isinstance(data, dict) else {}
    comment = next((line.lstrip("#").strip() for line in text.splitlines()
                    if line.startswith("#") and line.lstrip("#").strip()), "")
    described = " ".join(str(data.get("description") or "").split())  # folded or not, one line
    return Bundled(name=str(data.get("name") or path.stem), path=path,
                   key=path.relative_to(root).with_suffix("").as_posix(), description=described or comment or "-")


def find_bundled(name: str) -> Bundled | None:
    """The bundled topology called ``name`` (its lab name or its file name), or None."""
    wanted = name.removesuffix(".yaml")
    for item in bundled_topologies():
        if wanted in (item.name, item.key):
            return item
    return None


def resolve_topology_path(target: str | Path) -> Path:
    """``target`` as a file: the path itself when it exists, else the bundled topology it
    names (``ex1``, ``mptcp-default-configuration``, or the repository path
    ``topologies/mptcp-default-configuration.yaml`` read from anywhere); TopologyError naming
    the bundled topologies when it is none of them."""
    path = Path(target)
    if path.exists():
        return path
    key = path.as_posix()
    key = key.split("topologies/", 1)[1] if "topologies/" in key else key
    found = find_bundled(key)
    if found is not None:
        return found.path
    names = ", ".join(item.name for item in bundled_topologies())
    raise TopologyError("no such file, and no bundled topology has that name",
                        source=str(target), fix=f"give the path of a YAML file, or one of: {names} "
                                                "('mptcpdock examples' describes them)")
