"""The shape of autoexec's imports (ARCHITECTURE.md, "Layers and layout"): no import cycle among
its modules or its packages, deferred (function-level) imports included; Redis only through
``autoexec.coordination``; Celery only in the app and task modules; the pure core loads no
Celery, Redis or database driver."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Mapping

import grimp
import pytest

PACKAGE = "autoexec"

REDIS_MODULES = frozenset({"autoexec.coordination"})
CELERY_MODULES = frozenset(
    {
        "autoexec.celery_app",
        "autoexec.tasks",
        # A Celery Request class for run_graph's messages: part of the task module.
        "autoexec.task_requests",
        # The worker's consumer class (``worker_consumer``), which dead-letters bad messages.
        "autoexec.poison",
        # The embedded stack's in-memory broker (a kombu transport).
        "autoexec.embedded_broker",
        # The worker's metrics: Celery's worker signals and its pool's state.
        "autoexec.observability.worker_metrics",
    }
)

PURE_MODULES = (
    "autoexec.graph",
    "autoexec.dataflow",
    "autoexec.blocks",
    "autoexec.pins",
    "autoexec.errors",
    "autoexec.settings",
)
SERVICE_LIBRARIES = ("celery", "kombu", "redis", "fakeredis", "sqlalchemy", "psycopg2")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, include_external_packages=True, cache_dir=None)


def internal_imports(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    modules = {module for module in graph.modules if module.split(".")[0] == PACKAGE}
    return {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if imported in modules
        }
        for module in modules
    }


def package_of(module: str) -> str:
    """``autoexec.engine.finalize`` -> ``autoexec.engine``; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


def package_imports(imports: Mapping[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, imported in imports.items():
        targets = {package_of(target) for target in imported} - {package_of(module)}
        packages.setdefault(package_of(module), set()).update(targets)
    return packages


def cycles(imports: Mapping[str, Iterable[str]]) -> list[frozenset[str]]:
    """The strongly connected groups of more than one node (Tarjan's algorithm)."""
    return _Tarjan(imports).groups


class _Tarjan:
    def __init__(self, imports: Mapping[str, Iterable[str]]) -> None:
        self.imports = imports
        self.index: dict[str, int] = {}
        self.low: dict[str, int] = {}
        self.stack: list[str] = []
        self.groups: list[frozenset[str]] = []
        for node in sorted(imports):
            if node not in self.index:
                self.visit(node)

    def visit(self, node: str) -> None:
        self.index[node] = self.low[node] = len(self.index)
        self.stack.append(node)
        for target in sorted(self.imports.get(node, ())):
            if target not in self.index:
                self.visit(target)
                self.low[node] = min(self.low[node], self.low[target])
            elif target in self.stack:
                self.low[node] = min(self.low[node], self.index[target])
        if self.low[node] == self.index[node]:
            self.pop_group(node)

    def pop_group(self, root: str) -> None:
        group = {self.stack.pop()}
        while root not in group:
            group.add(self.stack.pop())
        if len(group) > 1:
            self.groups.append(frozenset(group))


def test_deferred_imports_are_part_of_the_graph(graph: grimp.ImportGraph) -> None:
    # autoexec/__init__.py imports the Celery app inside ``__getattr__`` only.
    assert graph.direct_import_exists(importer="autoexec", imported="autoexec.celery_app")


def test_no_import_cycle_among_modules(graph: grimp.ImportGraph) -> None:
    found = cycles(internal_imports(graph))
    assert [sorted(cycle) for cycle in found] == [], "import cycles: break them"


def test_no_import_cycle_among_packages(graph: grimp.ImportGraph) -> None:
    found = cycles(package_imports(internal_imports(graph)))
    assert [sorted(cycle) for cycle in found] == [], "package cycles: break them"


def test_the_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    imports = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(imports) == [frozenset({"a", "b", "c"})]


def importers(graph: grimp.ImportGraph, *libraries: str) -> set[str]:
    return {
        module for name in libraries for module in graph.find_modules_that_directly_import(name)
    }


def test_only_the_coordination_module_imports_redis(graph: grimp.ImportGraph) -> None:
    assert importers(graph, "redis", "fakeredis") - REDIS_MODULES == set()


def test_only_the_app_and_task_modules_import_celery(graph: grimp.ImportGraph) -> None:
    assert importers(graph, "celery", "kombu") - CELERY_MODULES == set()


def loaded_after(modules: Iterable[str], watched: Iterable[str]) -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded after importing ``modules``."""
    code = (
        f"import sys, {', '.join(modules)}\n"
        f"print(' '.join(name for name in {tuple(watched)!r} if name in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return run.stdout.split()


def test_importing_the_pure_core_loads_no_celery_redis_or_database_driver() -> None:
    assert loaded_after(PURE_MODULES, SERVICE_LIBRARIES) == []


def test_importing_the_app_and_its_tasks_creates_no_metric() -> None:
    # A worker picks prometheus_client's multiprocess mode after importing the app and before
    # its pool forks: a metric created before that would count outside what it serves.
    assert loaded_after(["autoexec.tasks"], ["autoexec.observability.metrics"]) == []
