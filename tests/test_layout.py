"""The layout rule: mptcpdock's stage packages import only downward (pure: reads source, no Docker).

The check reads every module with :mod:`ast` and lists

* imports between stages that point up or sideways in :data:`LAYERS`,
* import cycles between modules (imports under ``if TYPE_CHECKING:`` do not run, so they
  may point anywhere allowed but never close a cycle),
* imports inside functions (late imports hide a dependency, usually to dodge a cycle),
  except the few slow optional libraries in :data:`LAZY`,
* third-party libraries used outside the stage that owns them (:data:`ONLY_IN`).

The last tests run the same check on a copy of the tree with the old ``api -> compat``
import put back, and show that it fails.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "mptcpdock"
SOURCE = Path(__file__).resolve().parent.parent / PACKAGE

#: Top to bottom; a stage may import only the stages below it. A set holds siblings, which
#: may not import each other. "" is the package root (``mptcpdock/__init__.py``: the version
#: and the node image's name).
LAYERS: list[set[str]] = [
    {"cli"},
    {"compat"},
    {"api"},
    {"experiment"},
    {"report", "runtime"},
    {"plan"},
    {"topology"},
    {"errors", ""},
]

#: Libraries a function may import late, and why.
LAZY = {"matplotlib": "slow to import, and only the plots need it"}

#: Third-party libraries only one stage may import.
ONLY_IN = {"click": {"cli"}, "docker": {"runtime"}, "requests": {"runtime"}, "matplotlib": {"report"},
           "graphviz": {"report"}}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module (an mptcpdock module) or top-level library name
    path: Path
    line: int
    local: bool  # inside a function
    type_only: bool  # under ``if TYPE_CHECKING:``

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


# -- reading the tree -------------------------------------------------------------------------------

def modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file, for every module of the package under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """Every import statement of one module, with where it sits."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.Import | ast.ImportFrom, bool, bool]] = []
        self._functions = 0
        self._type_checking = 0

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._type_checking += 1
        for child in node.body:
            self.visit(child)
        self._type_checking -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._functions > 0, self._type_checking > 0))

    visit_ImportFrom = visit_Import  # type: ignore[assignment]


def _base(module: str, is_package: bool, level: int) -> str:
    """The package a relative import of ``level`` dots starts from."""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    return ".".join(parts[: len(parts) - level + 1])


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        base = _base(module, is_package, node.level) + (f".{node.module}" if node.module else "")
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


def imports(root: Path) -> list[Import]:
    """Every import of every module under ``root`` (mptcpdock modules by dotted name,
    libraries by their top-level name)."""
    known = modules(root)
    out = []
    for module, path in known.items():
        collector = _Collector()
        collector.visit(ast.parse(path.read_text(), str(path)))
        for node, local, type_only in collector.found:
            for target in _targets(node, module, path.name == "__init__.py", known):
                if target != PACKAGE and not target.startswith(PACKAGE + "."):
                    target = target.split(".")[0]
                if target != "__future__":
                    out.append(Import(module, target, path, node.lineno, local, type_only))
    return out


# -- the rules ---------------------------------------------------------------------------------------

def stage(module: str) -> str:
    """'mptcpdock.plan.routing' -> 'plan'; 'mptcpdock.api' -> 'api'; 'mptcpdock' -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def rank(name: str) -> int:
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    raise AssertionError(f"stage {name!r} is in no layer of LAYERS: add it there")


def _own(found: list[Import]) -> list[Import]:
    return [item for item in found if item.target.split(".")[0] == PACKAGE]


def direction_problems(found: list[Import]) -> list[str]:
    """Imports from one stage into another that is not below it."""
    problems = []
    for item in _own(found):
        here, there = stage(item.source), stage(item.target)
        if here == there or rank(there) > rank(here):
            continue
        way = "sideways, into a sibling" if rank(there) == rank(here) else "upward"
        problems.append(f"{item.where}: {item.source} imports {item.target} ({way}: {here or 'root'} -> {there})")
    return problems


def cycles(found: list[Import]) -> list[list[str]]:
    """Groups of modules that import each other, directly or round a loop (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for item in _own(found):
        if not item.type_only and item.target != item.source:
            graph.setdefault(item.source, set()).add(item.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for peer in sorted(graph.get(node, ())):
            if peer not in index:
                visit(peer)
                low[node] = min(low[node], low[peer])
            elif peer in stack:
                low[node] = min(low[node], index[peer])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def late_imports(found: list[Import]) -> list[str]:
    """Imports inside functions, but for the libraries in LAZY."""
    return [f"{item.where}: {item.source} imports {item.target} inside a function"
            for item in found if item.local and item.target.split(".")[0] not in LAZY]


def misplaced_libraries(found: list[Import]) -> list[str]:
    return [f"{item.where}: {item.source} imports {item.target} (only {', '.join(sorted(ONLY_IN[item.target]))} may)"
            for item in found if item.target in ONLY_IN and stage(item.source) not in ONLY_IN[item.target]]


def layout_problems(root: Path) -> list[str]:
    found = imports(root)
    return (direction_problems(found) + [" <-> ".join(group) + ": an import cycle" for group in cycles(found)]
            + late_imports(found) + misplaced_libraries(found))


# -- the tree as it is -------------------------------------------------------------------------------

def test_imports_point_only_down() -> None:
    found = imports(SOURCE)
    assert direction_problems(found) == []
    assert _own(found), "the check found no imports at all: is SOURCE right?"


def test_no_import_cycles() -> None:
    assert cycles(imports(SOURCE)) == []


def test_no_late_imports() -> None:
    assert late_imports(imports(SOURCE)) == []


def test_libraries_stay_in_their_stage() -> None:
    assert misplaced_libraries(imports(SOURCE)) == []


def test_every_stage_is_in_a_layer_and_says_what_it_holds() -> None:
    packages = [path.parent for path in SOURCE.rglob("__init__.py")]
    for path in packages:
        assert ast.get_docstring(ast.parse((path / "__init__.py").read_text())), f"{path}/__init__.py has no docstring"
    for name in {stage(module) for module in modules(SOURCE)}:
        rank(name)


# -- the check catches what it is for -----------------------------------------------------------------

@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package to break."""
    root = tmp_path / PACKAGE
    shutil.copytree(SOURCE, root, ignore=shutil.ignore_patterns("__pycache__"))
    assert layout_problems(root) == []
    return root


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + "\n" + text)


def test_check_fails_on_api_importing_compat_again(tree: Path) -> None:
    _append(tree / "api.py", "from .compat.nest import _session\n")
    problems = layout_problems(tree)
    assert any("mptcpdock.api imports mptcpdock.compat.nest._session (upward: api -> compat)" in p for p in problems)
    assert any(p.endswith(": an import cycle") and "mptcpdock.api" in p and "mptcpdock.compat.nest._session" in p
               for p in problems), problems


def test_check_fails_on_the_old_late_import_of_compat(tree: Path) -> None:
    """The shape api.py had: the reset hook imported inside a function to dodge the cycle."""
    _append(tree / "api.py", "def _fresh_nest_session():\n    from .compat.nest import _session\n    _session.reset()\n")
    problems = layout_problems(tree)
    assert any("upward: api -> compat" in p for p in problems)
    assert any("mptcpdock.api imports mptcpdock.compat.nest._session inside a function" in p for p in problems)


def test_check_fails_on_siblings_and_stray_libraries(tree: Path) -> None:
    _append(tree / "report" / "summary.py", "from ..runtime.state import load_state\nimport click\n")
    problems = layout_problems(tree)
    assert any("sideways, into a sibling: report -> runtime" in p for p in problems)
    assert any("imports click (only cli may)" in p for p in problems)


def test_type_checking_imports_count_for_direction_but_close_no_cycle(tree: Path) -> None:
    _append(tree / "plan" / "routing.py", "if TYPE_CHECKING:\n    from ..runtime.state import LabState\n")
    found = imports(tree)
    assert cycles(found) == []
    assert any("upward: plan -> runtime" in p for p in direction_problems(found))
