"""No import circle inside ``grokwatch/``, read from the modules' own ``import`` statements.

Every import counts: at module level, inside functions (a lazy import is still a dependency)
and under ``if TYPE_CHECKING:``. ``from package import name`` is an edge to
``package.name`` when that is a module, else to ``package``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import grokwatch

ROOT = Path(grokwatch.__file__).parent


def module_names(root: Path = ROOT) -> dict[str, Path]:
    names = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that the source of ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            targets = [t for t in targets[:-1] if t in modules] or [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` names module a.b.c
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    names = module_names(root)
    return {name: imports_of(name, path, set(names)) for name, path in names.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or ``None`` (depth-first search)."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack = [(start, iter(sorted(graph[start])))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, edges = stack[-1]
            for nxt in edges:
                if nxt in on_path:
                    return [*path[path.index(nxt) :], nxt]
                if nxt not in done:
                    stack.append((nxt, iter(sorted(graph[nxt]))))
                    path.append(nxt)
                    on_path.add(nxt)
                    break
            else:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
    return None


def test_the_package_has_no_import_circle() -> None:
    graph = import_graph()
    assert len(graph) > 40, sorted(graph)  # the walk found the package's modules
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_client_side_never_imports_the_service() -> None:
    graph = import_graph()
    seen, todo = set(), ["grokwatch"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    assert not {n for n in seen if n.startswith("grokwatch.service")}


LAZY = "def f():\n    from pkg.a import x"
TYPING = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b"


@pytest.mark.parametrize(
    ("sources", "cycle"),
    [
        ({"a": "import pkg.b", "b": "from pkg import c", "c": ""}, None),
        ({"a": "import pkg.b", "b": LAZY, "c": ""}, ["a", "b"]),
        (
            {"a": "from . import b", "b": "from .c import y", "c": "from .a import z"},
            ["a", "b", "c"],
        ),
        ({"a": TYPING, "b": "import pkg.a", "c": ""}, ["a", "b"]),
    ],
)
def test_the_cycle_finder_sees_lazy_relative_and_typing_imports(
    tmp_path: Path, sources: dict[str, str], cycle: list[str] | None
) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in sources.items():
        (pkg / f"{name}.py").write_text(text + "\n")
    found = find_cycle(import_graph(pkg))
    if cycle is None:
        assert found is None
    else:
        assert found is not None
        assert sorted(set(found)) == [f"pkg.{n}" for n in cycle]
