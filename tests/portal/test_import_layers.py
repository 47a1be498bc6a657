"""The import graph keeps its layers: no circle between apps, no lower layer importing a higher
one, `capacity` never importing `instances`, a node agent without Django.

An AST scan of apps/, provisioning/ and portal/. import-linter could check the same with a
layers contract; this needs no new dependency and keeps provisioning's three parts and portal's
two roles in one table below, with one rule for all. It reads every import, at module level and
inside functions (an import moved into a function to dodge a circle is still the same
dependency), and `if TYPE_CHECKING:` ones too.

The layers, lowest first; a unit may import only units of a lower rank:

    portal (db, live, api, …), provisioning (drivers, registry: no Django apps)  0
    provisioning.agent (the node agent: no Django, no apps, no portal)         0.5
    accounts 1 → catalog 2 → capacity 3 → instances 4 → billing 5, provisioning.tasks 5 → chargeback 6
    portal's project modules (settings, urls, routing, asgi, wsgi)               9

provisioning is three units, not one: its drivers are a Django-free library every app may ask
(the catalog shows only kinds a driver serves), its tasks are the executor that loads instances
and runs their services (above instances), and the agent is another process. As one unit it
would be in a circle by design (catalog → drivers, tasks → instances → catalog).
Apps above instances follow instances through apps.instances.hooks; instances enqueues
provisioning's tasks by their Celery name.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("apps", "provisioning", "portal")

RANKS: dict[str, float] = {
    "portal": 0,
    "provisioning": 0,
    "provisioning.agent": 0.5,
    "accounts": 1,
    "catalog": 2,
    "capacity": 3,
    "instances": 4,
    "billing": 5,
    "provisioning.tasks": 5,
    "chargeback": 6,
    "portal.project": 9,
}
PORTAL_PROJECT = ("portal.settings", "portal.urls", "portal.routing", "portal.asgi", "portal.wsgi")


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported module (the deepest that is a module of ours, else as written)
    where: str  # path:line
    in_function: bool

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}{' (inside a function)' if self.in_function else ''}"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path = ROOT) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports(tree: ast.AST, module: str, is_package: bool, root: Path):
    """(imported module, line, inside a function) for every import in `tree`."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - (child.level - 1)]
                    base = ".".join(package + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                for alias in child.names:
                    # `from provisioning import tasks` imports provisioning.tasks, not provisioning.
                    full = f"{base}.{alias.name}"
                    yield (full if _is_module(full, root) else base), child.lineno, in_function
            stack.append((child, nested))


def unit_of(module: str) -> str | None:
    """The layer unit a module belongs to; None for modules not ours (django, the stdlib, …)."""
    parts = module.split(".")
    if parts[0] == "apps" and len(parts) > 1:
        return parts[1]
    if parts[0] == "provisioning":
        if len(parts) > 1 and parts[1] in ("agent", "tasks"):
            return f"provisioning.{parts[1]}"
        return "provisioning"
    if parts[0] == "portal":
        return "portal.project" if module.startswith(PORTAL_PROJECT) else "portal"
    return None


def edges_scan(root: Path = ROOT) -> list[Edge]:
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            module = _module_name(path, root)
            tree = ast.parse(path.read_text(), filename=str(path))
            for target, line, in_function in _imports(tree, module, path.name == "__init__.py", root):
                found.append(Edge(module, target, f"{path.relative_to(root)}:{line}", in_function))
    return found


EDGES = edges_scan()


def _cross_unit(edges=EDGES) -> list[Edge]:
    return [e for e in edges if unit_of(e.target) is not None and unit_of(e.source) != unit_of(e.target)]


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one unit (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        graph[unit_of(e.source)].add(unit_of(e.target))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(unit: str) -> None:
        index[unit] = low[unit] = len(index)
        stack.append(unit)
        on_stack.add(unit)
        for nxt in sorted(graph[unit]):
            if nxt not in index:
                visit(nxt)
                low[unit] = min(low[unit], low[nxt])
            elif nxt in on_stack:
                low[unit] = min(low[unit], index[nxt])
        if low[unit] == index[unit]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == unit:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for unit in sorted(graph):
        if unit not in index:
            visit(unit)
    return components


def test_every_unit_has_a_layer():
    units = {unit_of(e.source) for e in EDGES} | {unit_of(e.target) for e in _cross_unit()}
    assert units - set(RANKS) == set(), "a new app or package needs its place in RANKS"


def test_no_circle_between_apps():
    edges = _cross_unit()
    cycles = _cycles(edges)
    detail = [
        str(e) for e in dict.fromkeys(edges) if any({unit_of(e.source), unit_of(e.target)} <= set(c) for c in cycles)
    ]
    assert cycles == [], "import circles between " + "; ".join(" ⇄ ".join(c) for c in cycles) + "\n" + "\n".join(detail)


def test_a_lower_layer_never_imports_a_higher_one():
    upward = [str(e) for e in _cross_unit() if RANKS[unit_of(e.target)] >= RANKS[unit_of(e.source)]]
    assert upward == []


def test_capacity_never_imports_instances():
    offending = [str(e) for e in EDGES if unit_of(e.source) == "capacity" and unit_of(e.target) == "instances"]
    assert offending == []


def test_the_node_agent_imports_no_django_apps_or_portal():
    offending = [
        str(e)
        for e in EDGES
        if unit_of(e.source) == "provisioning.agent"
        and (
            e.target.split(".")[0] in ("django", "apps", "portal", "celery")
            or unit_of(e.target) == "provisioning.tasks"
        )
    ]
    assert offending == []


def test_drivers_never_import_apps_or_portal():
    offending = [
        str(e)
        for e in EDGES
        if unit_of(e.source) == "provisioning"
        and unit_of(e.target) in set(RANKS) - {"provisioning", "provisioning.agent"}
    ]
    assert offending == []


# --- the scan itself can fail -------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    """A small tree with an import inside a function that closes a circle, and an upward one."""
    (tmp_path / "apps" / "capacity").mkdir(parents=True)
    (tmp_path / "apps" / "instances").mkdir(parents=True)
    for package in ("apps", "apps/capacity", "apps/instances"):
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "apps" / "capacity" / "views.py").write_text(
        "def view():\n    from apps.instances.selectors import instance_get\n    return instance_get\n"
    )
    (tmp_path / "apps" / "instances" / "selectors.py").write_text(
        "from ..capacity import views\n\ninstance_get = None\n"
    )
    for top in ("provisioning", "portal"):
        (tmp_path / top).mkdir()
    return tmp_path


def test_the_scan_sees_imports_inside_functions_and_relative_ones(tree):
    # given a tree where capacity imports instances inside a function and instances imports capacity
    # when it is scanned
    edges = _cross_unit(edges_scan(tree))
    # then both edges are seen, the circle is reported and so is the upward import
    assert {(e.source, e.target, e.in_function) for e in edges} == {
        ("apps.capacity.views", "apps.instances.selectors", True),
        ("apps.instances.selectors", "apps.capacity.views", False),
    }
    assert _cycles(edges) == [["capacity", "instances"]]
    assert [e.source for e in edges if RANKS[unit_of(e.target)] >= RANKS[unit_of(e.source)]] == ["apps.capacity.views"]
