"""The import graph of ``pipeline/``, read from the source (nothing is imported): no cycle, and the
layering ARCHITECTURE.md states (no stage imports another stage; no module below the stages
imports one).

Every import statement counts, at the top of a module or inside a function (a lazy import is still
an edge: it runs whenever the function does), except those under ``if TYPE_CHECKING:``, which never
run. ``from pipeline.x import y`` is an edge to ``pipeline.x.y`` when that is a module, else to
``pipeline.x``. Importing a submodule also runs its package's ``__init__``, but that implicit edge
is not counted: a package whose ``__init__`` imports its submodules (a registry filled by them) is
a cycle only when a submodule imports the package back by name.
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

from tests.conftest import REPO

STAGES = ("pipeline.ingest", "pipeline.train", "pipeline.generate", "pipeline.score", "pipeline.publish")
ABOVE_STAGES = ("pipeline.stages", "pipeline.__main__")  # the stage table and the CLI (flows/ is outside)


def modules(root: Path, package: str = "pipeline") -> dict[str, Path]:
    """Every module of ``package`` under ``root`` by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom in the tree, at any depth, but not under ``if TYPE_CHECKING:``."""
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _type_checking(node.test):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` (its source at ``path``) imports."""
    out = set()
    is_package = path.name == "__init__.py"
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:  # relative: from its package (a package's __init__ is its own package)
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for target in targets:
            # ``import pipeline.a.b`` of a name that is not a module still reaches the module above it
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph(root: Path = REPO, package: str = "pipeline") -> dict[str, set[str]]:
    known = modules(root, package)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The shortest cycle through each module that lies on one, each cycle once (starting at its
    smallest name): what to read to break them."""
    found = set()
    for start in sorted(graph):
        back = _shortest_path(graph, start)
        if back is not None:
            i = back.index(min(back))
            found.add(tuple(back[i:] + back[:i]))
    return [list(c) for c in sorted(found, key=lambda c: (len(c), c))]


def _shortest_path(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """The shortest path start -> ... -> start (without the last start), or None."""
    came: dict[str, str] = {}
    todo = deque([start])
    while todo:
        node = todo.popleft()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(came[path[-1]])
                return path[::-1]
            if nxt not in came:
                came[nxt] = node
                todo.append(nxt)
    return None


def _shown(cycle: list[str]) -> str:
    return " -> ".join(cycle + cycle[:1])


# ---------------------------------------------------------------------------------------------
# The rules


def test_pipeline_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and sum(map(len, graph.values())) > 100  # the graph was read
    found = cycles(graph)
    assert not found, "import cycles in pipeline/ (break each one):\n" + "\n".join(_shown(c) for c in found)


def stage_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import of a stage by a module that is not above the stages (a stage included)."""
    return sorted(f"{name} imports {target}" for name, targets in graph.items() for target in targets
                  if target in STAGES and name not in ABOVE_STAGES)


def test_no_stage_imports_another_stage_nor_a_module_below_the_stages():
    wrong = stage_imports(import_graph())
    assert not wrong, ("a stage reads what another wrote through pipeline.artifacts, never by importing it; "
                       "below the stages nothing imports one:\n" + "\n".join(wrong))


# ---------------------------------------------------------------------------------------------
# The reader of the graph itself, on a made-up package


def _package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_graph_counts_lazy_and_relative_imports_and_resolves_submodules(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.sub import leaf\n",
        "pkg/b.py": "def later():\n    import pkg.a\n",
        "pkg/c.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\nelse:\n"
                     "    from . import a\n"),
        "pkg/sub/__init__.py": "from .leaf import x\n",
        "pkg/sub/leaf.py": "import os\nfrom pkg.b import later\nx = 1\n",
        "pkg/d.py": "import pkg.sub.leaf.x\nfrom pkg.sub import leaf, helper\n",
    })
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.leaf"}
    assert graph["pkg.d"] == {"pkg.sub.leaf", "pkg.sub"}  # leaf is a module, helper a name in pkg.sub
    assert graph["pkg.b"] == {"pkg.a"}  # inside a function
    assert graph["pkg.c"] == {"pkg.a"}  # relative; the TYPE_CHECKING branch never runs
    assert graph["pkg.sub"] == {"pkg.sub.leaf"}
    assert graph["pkg.sub.leaf"] == {"pkg.b"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.leaf", "pkg.b"]]


def test_cycles_are_each_found_once_and_shortest_first():
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"b"}, "e": {"a"}}
    assert cycles(graph) == [["a", "b"], ["b", "c", "d"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


def test_a_stage_imported_below_the_table_of_stages_is_found():
    graph = {"pipeline.stages": {"pipeline.train"}, "pipeline.generate": {"pipeline.train", "pipeline.sampling"},
             "pipeline.shards": {"pipeline.score"}, "pipeline.sampling": set()}
    assert stage_imports(graph) == ["pipeline.generate imports pipeline.train",
                                    "pipeline.shards imports pipeline.score"]
