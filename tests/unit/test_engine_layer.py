"""The engine reaches the database only through store functions: no engine module imports
SQLAlchemy or the schema (issue 21: each layer keeps its tools)."""

from __future__ import annotations

import ast
from pathlib import Path

import autoexec.engine

ENGINE = Path(autoexec.engine.__file__).parent
# Owned by the runtime work of issue 21, which moves their statements into the store; the
# list empties as it does.
DATABASE_TOOLS = ("sqlalchemy", "autoexec.store.tables")


def imported_modules(source: str) -> set[str]:
    """Every module a module's source imports (at any depth, TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def uses_database_tools(module: str) -> bool:
    return any(module == tool or module.startswith(f"{tool}.") for tool in DATABASE_TOOLS)


def test_the_check_sees_each_form_of_import() -> None:
    source = "import sqlalchemy.orm\nfrom autoexec.store import tables\nfrom os import path\n"
    assert sorted(filter(uses_database_tools, imported_modules(source))) == [
        "autoexec.store.tables",
        "sqlalchemy.orm",
    ]


def test_no_engine_module_imports_sqlalchemy_or_the_schema() -> None:
    offenders = {
        str(path.relative_to(ENGINE)): sorted(
            filter(uses_database_tools, imported_modules(path.read_text()))
        )
        for path in sorted(ENGINE.rglob("*.py"))
    }
    assert {path: found for path, found in offenders.items() if found} == {}
