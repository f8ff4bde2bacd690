"""The package's import graph, read from the source (the `ast` of every module): one direction only.

- no cycle of any length between modules, lazy and type-checking imports included;
- `lib/` is shared machinery: it imports nothing of the service's domains;
- within a domain, imports go one way: controllers → services → repositories/stores.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import memanto_server

PACKAGE = Path(memanto_server.__file__).resolve().parent
NAME = PACKAGE.name
DOMAINS = ("auth", "sessions", "agents", "memories", "embeddings", "mcp", "compat", "ops", "cli", "client")
# A module of a lower layer must not import one of a higher layer (names as their module's last part).
LAYERS = {"controller": 3, "service": 2, "repository": 1, "store": 1}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> Iterator[str]:
    """Every module of the package that `path` imports, wherever the import statement stands."""
    this = module_name(path)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in candidates:
            if candidate in modules and candidate != this:
                yield candidate


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): set(imported_modules(path, modules)) for path in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every set of modules that import one another round a loop, and every module importing itself."""
    found = []
    seen: set[str] = set()
    for node in sorted(graph):
        if node in seen:
            continue
        component = reachable(graph, node) & {n for n in graph if node in reachable(graph, n)}
        seen |= component
        if len(component) > 1 or node in graph[node]:
            found.append(sorted(component | {node}))
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules `start` imports, directly or through others (itself only if round a loop)."""
    found: set[str] = set()
    frontier = list(graph[start])
    while frontier:
        node = frontier.pop()
        if node not in found:
            found.add(node)
            frontier.extend(graph.get(node, ()))
    return found


def test_the_graph_is_read_from_the_source() -> None:
    graph = import_graph()
    assert f"{NAME}.main" in graph
    assert f"{NAME}.settings" in graph[f"{NAME}.sessions.tokens"]


def test_a_cycle_is_found_when_there_is_one() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_lib_knows_no_domain() -> None:
    domain_prefixes = tuple(f"{NAME}.{domain}" for domain in DOMAINS)
    offending = {
        module: sorted(target for target in targets if target.startswith(domain_prefixes))
        for module, targets in import_graph().items()
        if module.startswith(f"{NAME}.lib")
    }
    assert {module: targets for module, targets in offending.items() if targets} == {}


def test_imports_go_from_controllers_to_services_to_repositories() -> None:
    def layer(module: str) -> int | None:
        return LAYERS.get(module.rpartition(".")[2])

    upward = [
        (module, target)
        for module, targets in import_graph().items()
        for target in targets
        if (low := layer(module)) is not None and (high := layer(target)) is not None and high > low
    ]
    assert upward == []
