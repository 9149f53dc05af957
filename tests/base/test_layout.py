"""The package's layout holds: no import cycle among the product's modules (imports inside
functions included), the deployed code never imports the local tooling, no product module
does two jobs by size (500 lines at most), and ``shared`` never imports ``azure.functions``."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.drivers import ROOT_DIR

ROOT = ROOT_DIR
PACKAGE = ROOT / "shared"
#: modules allowed over the size guide, and why
LARGE: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every ``shared`` module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            if base == "shared" or base.startswith("shared."):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("shared")}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = {t for t in imports(path) if t in modules}
        # importing a package runs its __init__ only; a submodule import is an edge to that module
        edges[name] = {t for t in targets if t != name and not name.startswith(t + ".")}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_no_module_imports_itself_through_others():
    assert cycles(graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_deployed_code_never_imports_the_local_tooling():
    deployed = [p for p in PACKAGE.rglob("*.py") if "tooling" not in p.parts and p.name != "__main__.py"]
    deployed += [
        p
        for folder in ("ingest_weather", "ingest_shipments", "ingest_demographics", "trigger_aml", "poll_aml_durable")
        for p in (ROOT / folder).rglob("*.py")
    ]
    deployed.append(ROOT / "function_app.py")
    offenders = {str(p.relative_to(ROOT)) for p in deployed if any(t.startswith("shared.tooling") for t in imports(p))}
    assert offenders == set()
    assert "shared/tooling" in (ROOT / ".funcignore").read_text().split()


def test_the_domain_core_never_imports_azure_functions():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {n for n in names if n == "azure.functions" or n.startswith("azure.functions.")}, path


def test_no_product_module_is_over_the_size_guide():
    big = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name for name, lines in big.items() if lines > 500} <= set(LARGE)


#: the packages' order (ARCHITECTURE.md): each imports only packages of a lower rank, or its own
ORDER = {
    "shared": 0,  # the base: settings, clock, http, lake, telemetry, health, sources (the registry)
    "shared.weeks": 1,  # weeks and batches: calendar, index, readiness, announce, batches/ layout
    "shared.ingestion": 2,
    "shared.aml": 2,
    "shared.watch": 3,
    "shared.mlops": 4,
    "shared.runtime": 5,
    "shared.tooling": 6,
    "shared.__main__": 7,  # the command line's entry point, over the tooling
}
BASE = {
    "shared.settings",
    "shared.clock",
    "shared.http",
    "shared.lake",
    "shared.blob_lake",
    "shared.lake_api",
    "shared.telemetry",
    "shared.health",
    "shared.sources",
}


def package_of(module: str) -> str:
    parts = module.split(".")
    head = ".".join(parts[:2])
    return "shared" if head in BASE or head == "shared" else head


def order_violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports that run up the house or sideways between two packages of one rank."""
    found = []
    for module, targets in sorted(edges.items()):
        here = package_of(module)
        for target in sorted(targets):
            there = package_of(target)
            if there == here:
                continue
            if ORDER[there] > ORDER[here] or (ORDER[there] == ORDER[here] and ORDER[here] > 0):
                found.append(f"{module} -> {target} ({here} may not import {there})")
    return found


def test_every_package_imports_only_the_packages_below_it():
    edges = graph()
    assert {package_of(m) for m in edges} <= set(ORDER), "a new package: give it its place in ORDER"
    assert order_violations(edges) == []


def test_the_order_check_finds_an_import_up_and_one_sideways():
    edges = {
        "shared.aml.request": {"shared.mlops.data_assets", "shared.lake"},
        "shared.aml.runs": {"shared.ingestion.weeks"},
        "shared.mlops.steps": {"shared.aml.runs", "shared.watch.loop"},
        "shared.weeks.ready": {"shared.ingestion.datasets", "shared.sources"},
        "shared.ingestion.reingest": {"shared.weeks.layout"},
    }
    assert order_violations(edges) == [
        "shared.aml.request -> shared.mlops.data_assets (shared.aml may not import shared.mlops)",
        "shared.aml.runs -> shared.ingestion.weeks (shared.aml may not import shared.ingestion)",
        "shared.weeks.ready -> shared.ingestion.datasets (shared.weeks may not import shared.ingestion)",
    ]


def test_every_public_type_and_function_of_shared_has_a_docstring():
    missing = [
        f"{p.relative_to(ROOT)}:{n.lineno} {n.name}"
        for p in sorted(PACKAGE.rglob("*.py"))
        for n in ast.parse(p.read_text(), str(p)).body
        if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and not n.name.startswith("_")
        and not ast.get_docstring(n)
    ]
    assert missing == []
