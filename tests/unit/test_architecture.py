"""The package's import graph against the layer list of docs/architecture.md.

Every import of an ``amqpq`` module counts: at module level, inside a function,
under ``TYPE_CHECKING``. The layer list in the doc is the single source: each
line of its "Layers" block names one layer (modules separated by commas, a name
ending in ``/`` standing for a whole package), lower layers first; a module may
import its own layer and the ones above it in the list, never one below.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "amqpq"
DOC = ROOT / "docs" / "architecture.md"


def module_names() -> dict[str, Path]:
    """``amqpq.x.y`` -> its file, for every module of the package (``amqpq`` is __init__)."""
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = module_names()


def imports_of(name: str, path: Path) -> set[str]:
    """The package's modules ``name`` imports, wherever the import statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else source)
    return {target for target in found if target in MODULES and target != name}


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def layer_entries() -> list[list[str]]:
    """The layers of docs/architecture.md, lowest first: the names on each line."""
    text = DOC.read_text()
    section = re.search(r"^## Layers.*?^```\n(.*?)^```", text, re.S | re.M)
    assert section, "docs/architecture.md has no ``` block under a '## Layers' heading"
    layers = []
    for line in section.group(1).splitlines():
        if not line.strip() or line[0].isspace():
            continue  # a description continued from the line above
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        layers.append([n.strip() for n in names.split(",") if n.strip()])
    return layers


LAYERS = layer_entries()


def covers(entry: str, module: str) -> bool:
    if entry == "__init__":
        return module == "amqpq"
    if entry.endswith("/"):
        package = "amqpq." + entry.rstrip("/").replace("/", ".")
        return module == package or module.startswith(package + ".")
    return module == "amqpq." + entry.replace("/", ".")


def layer_of(module: str) -> int | None:
    """A module's layer: the line naming it, else the line of its deepest package entry."""
    for index, entries in enumerate(LAYERS):
        if any(not e.endswith("/") and covers(e, module) for e in entries):
            return index
    packages = [
        (len(entry), index)
        for index, entries in enumerate(LAYERS)
        for entry in entries
        if entry.endswith("/") and covers(entry, module)
    ]
    return max(packages)[1] if packages else None


def cycles() -> Iterator[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                yield from visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                yield sorted(component)

    for node in sorted(GRAPH):
        if node not in index:
            yield from visit(node)


def test_the_package_has_no_import_cycle() -> None:
    assert list(cycles()) == []


def test_every_module_of_the_package_is_in_the_layer_list() -> None:
    missing = sorted(m for m in MODULES if layer_of(m) is None)
    assert missing == [], f"add these to the Layers list of docs/architecture.md: {missing}"


def test_every_entry_of_the_layer_list_names_a_module_of_the_package() -> None:
    stale = sorted(
        entry
        for entries in LAYERS
        for entry in entries
        if not any(covers(entry, module) for module in MODULES)
    )
    assert stale == [], f"docs/architecture.md lists modules that do not exist: {stale}"


def test_imports_point_downward_only() -> None:
    upward = [
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})"
        for source, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if (layer_of(source) or 0) < (layer_of(target) or 0)
    ]
    assert upward == []


def test_nothing_below_the_app_imports_it() -> None:
    app_layer = layer_of("amqpq.app")
    assert app_layer is not None
    below = sorted(
        source
        for source, targets in GRAPH.items()
        if "amqpq.app" in targets and (layer_of(source) or 0) <= app_layer
    )
    assert below == []


@pytest.mark.parametrize(
    ("rule", "graph", "expected"),
    [
        ("a cycle", {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ("no cycle", {"a": {"b"}, "b": set(), "c": {"a", "b"}}, []),
    ],
)
def test_the_cycle_finder_finds_cycles_and_only_cycles(
    monkeypatch: pytest.MonkeyPatch, rule: str, graph: dict[str, set[str]], expected: list[str]
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "GRAPH", graph)
    assert list(cycles()) == expected, rule


def loaded_by(modules: str, libraries: tuple[str, ...]) -> list[str]:
    """Which of ``libraries`` a fresh interpreter has loaded after importing ``modules``."""
    code = f"import sys, {modules}\nprint(sorted(m for m in {libraries!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return list(ast.literal_eval(out.strip()))


def test_importing_the_app_and_the_worker_loads_no_sync_client_http_or_yaml() -> None:
    # docs/architecture.md "Start-up": the worker does not import what it does not use.
    modules = "amqpq.app, amqpq.worker.main, amqpq.worker.supervisor"
    assert loaded_by(modules, ("pika", "httpx", "yaml")) == []


def test_a_worker_does_not_import_the_producers_results_or_events() -> None:
    # A worker never sends: the App builds its send context on first use.
    modules = "amqpq.app, amqpq.worker.main, amqpq.worker.supervisor"
    assert loaded_by(modules, ("amqpq.producer", "amqpq.rpc", "amqpq.events")) == []


def test_importing_the_app_loads_no_amqp_client_library() -> None:
    # Each producer loads its client library on first use.
    assert loaded_by("amqpq.app", ("pika", "aio_pika", "aiormq")) == []
