"""Imports point down only, and no import cycles between files or folders (README: Architecture).

A module may import its own layer and the layers below it. The check reads the sources with
`ast` (nothing is imported) and counts every import, also one inside a function or under
TYPE_CHECKING: a lazy import hides a cycle, it does not remove it.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "ingest", "ui")

# Top to bottom: (layer, the modules in it, why it sits there).
LAYERS: list[tuple[str, tuple[str, ...], str]] = [
    (
        "entry points",
        ("appliance.cli", "appliance.web", "appliance.__main__"),
        "start a process (CLI; FastAPI app with /v1, mounting ui/): nothing imports them",
    ),
    ("ui", ("ui",), "Gradio pages: what people see, built on the parts below"),
    ("services", ("appliance.services",), "the composition root: builds every part once"),
    (
        "features",
        (
            "appliance.rag",
            "appliance.answers",
            "appliance.chat",
            "appliance.conversation",
            "appliance.prompting",
            "appliance.verification",
            "appliance.evaluation",
            "appliance.finetune",
            "appliance.audit",
            "appliance.auth",
            "appliance.generation",
            "appliance.retrieval",
            "appliance.gate",
            "appliance.models",
            "appliance.remote_llm",
            "appliance.metrics",
        ),
        "what the appliance does: answer, chat, cite, audit, sign in, count, train",
    ),
    ("ingest", ("ingest",), "documents in: loaders, chunking, pipeline, watch, uploads"),
    (
        "storage",
        ("appliance.store", "appliance.embedding", "appliance.keywords", "appliance.manifest"),
        "where chunks, vectors and the ingest manifest are kept",
    ),
    (
        "base",
        (
            "appliance.domain",
            "appliance.errors",
            "appliance.settings",
            "appliance.offline",
            "appliance.private_files",
            "appliance.filehash",
            "appliance.sqlite_schema",
            "appliance.threads",
            "appliance",
        ),
        "types, errors, settings and small helpers that every layer shares",
    ),
]


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    path: Path
    line: int
    target: str  # the module imported (a package's __init__ when no submodule is named)

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line} imports {self.target}"


def module_files(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module `name` is, or is inside of (a class or function imported from it)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _named(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: from the module's own package upwards
        package = module.split(".")[: None if is_package else -1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    return [f"{base}.{alias.name}" for alias in node.names]


def imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[Import]:
    """Every import of one of `packages` by one of their modules."""
    modules = module_files(root, packages)
    found: dict[Import, None] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        nodes = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        for node in nodes:
            for imported in _named(node, name, path.name == "__init__.py"):
                target = _resolve(imported, modules)
                if target is not None and target != name:
                    found[Import(name, path, node.lineno, target)] = None  # once a line
    return list(found)


# A package whose modules sit in several layers (appliance) stands for its __init__ only.
SPLIT = {prefix.split(".")[0] for _, prefixes, _ in LAYERS for prefix in prefixes if "." in prefix}


def layer_of(module: str) -> int | None:
    best: tuple[int, int] | None = None  # (layer, length of the longest matching prefix)
    for number, (_, prefixes, _) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix not in SPLIT
            if (module == prefix or inside) and (best is None or len(prefix) > best[1]):
                best = (number, len(prefix))
    return None if best is None else best[0]


def upward_imports(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    problems = []
    for found in imports(root, packages):
        source, target = layer_of(found.source), layer_of(found.target)
        if source is not None and target is not None and target < source:
            problems.append(
                f"{found.where(root)}: {LAYERS[source][0]} may not import "
                f"{LAYERS[target][0]} (a higher layer)"
            )
    return problems


def unplaced_modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    return [name for name in module_files(root, packages) if layer_of(name) is None]


def folder_of(module: str) -> str:
    """A top-level package, a subpackage of appliance, or a module of appliance/ itself."""
    parts = module.split(".")
    if parts[0] != "appliance" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _a_cycle(start: str, graph: dict[str, set[str]], members: set[str]) -> list[str]:
    """A shortest way from `start` back to itself inside one component."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for other in sorted(graph.get(node, set()) & members):
            if other == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if other not in came_from:
                came_from[other] = node
                queue.append(other)
    return [start]


def import_cycles(root: Path, packages: tuple[str, ...] = PACKAGES) -> list[str]:
    found = imports(root, packages)
    problems = []
    for kind, node_of in (("files", lambda m: m), ("folders", folder_of)):
        graph: dict[str, set[str]] = {}
        evidence: dict[tuple[str, str], Import] = {}
        for item in found:
            edge = (node_of(item.source), node_of(item.target))
            if edge[0] != edge[1]:
                graph.setdefault(edge[0], set()).add(edge[1])
                evidence.setdefault(edge, item)
        for component in _components(graph):
            cycle = _a_cycle(component[0], graph, set(component))
            steps = [evidence[edge].where(root) for edge in pairwise(cycle)]
            problems.append(f"cycle between {kind}: {' -> '.join(cycle)} ({'; '.join(steps)})")
    return problems


def test_imports_point_down_only() -> None:
    problems = upward_imports(ROOT)
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_files_or_folders() -> None:
    problems = import_cycles(ROOT)
    assert not problems, "\n".join(problems)


def test_every_module_has_a_layer() -> None:
    unplaced = unplaced_modules(ROOT)
    assert not unplaced, f"add these modules to LAYERS in {Path(__file__).name}: {unplaced}"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_checker_finds_an_upward_import_and_a_cycle(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "appliance/__init__.py": "",
            "appliance/settings.py": "def load():\n    from ui.page import build\n",
            "appliance/web/__init__.py": "",
            "appliance/web/app.py": "import ui.page\nfrom appliance import settings\n",
            "appliance/rag.py": "from appliance.audit.log import Log\n",
            "appliance/audit/__init__.py": "",
            "appliance/audit/log.py": "from . import records\nfrom ..rag import Assistant\n",
            "appliance/audit/records.py": "",
            "ui/__init__.py": "",
            "ui/page.py": "from appliance.web.app import app\nfrom appliance.settings import X\n",
        },
    )
    upward = upward_imports(root)
    assert upward == [
        "appliance/settings.py:2 imports ui.page: base may not import ui (a higher layer)",
        "ui/page.py:1 imports appliance.web.app: ui may not import entry points (a higher layer)",
    ]
    assert import_cycles(root) == [
        "cycle between files: appliance.audit.log -> appliance.rag -> appliance.audit.log "
        "(appliance/audit/log.py:2 imports appliance.rag; "
        "appliance/rag.py:1 imports appliance.audit.log)",
        "cycle between files: appliance.settings -> ui.page -> appliance.settings "
        "(appliance/settings.py:2 imports ui.page; ui/page.py:2 imports appliance.settings)",
        "cycle between folders: appliance.audit -> appliance.rag -> appliance.audit "
        "(appliance/audit/log.py:2 imports appliance.rag; "
        "appliance/rag.py:1 imports appliance.audit.log)",
        "cycle between folders: appliance.settings -> ui -> appliance.settings "
        "(appliance/settings.py:2 imports ui.page; ui/page.py:2 imports appliance.settings)",
    ]
    assert unplaced_modules(root) == []


def test_the_checker_passes_a_tree_whose_imports_point_down(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "appliance/__init__.py": "",
            "appliance/settings.py": "import json\n",
            "appliance/web/__init__.py": "",
            "appliance/web/app.py": "import ui.page\nfrom appliance.settings import X\n",
            "ui/__init__.py": "",
            "ui/page.py": "from appliance.settings import X\nfrom appliance.extra import Y\n",
            "appliance/extra.py": "",
        },
    )
    assert upward_imports(root) == []
    assert import_cycles(root) == []
    assert unplaced_modules(root) == ["appliance.extra"]
