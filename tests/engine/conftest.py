"""The engine tier: the whole engine in the test's process (``autoexec.testing``), on SQLite,
with the in-memory dispatcher and coordinator; no services, no worker processes.

- ``database``: a migrated SQLite file of the test's own (copied from one migrated per session).
- ``t``: a :class:`autoexec.testing.TestEngine` with the test blocks registered.
- ``make_engine(**settings)``: the same with settings overridden (one per test).

Nodes run in the test's main thread, where autoexec stops a node at its time limit with
SIGALRM: pytest-timeout watches these tests from a thread instead of with the same signal.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from autoexec import testing
from autoexec.store.migrate import upgrade_database
from tests.integration import blocks_for_tests

MakeEngine = Callable[..., testing.TestEngine]
ENGINE_DIR = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(ENGINE_DIR):
            item.add_marker(pytest.mark.timeout(method="thread"))


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("engine-tier") / "template.sqlite3"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def database(migrated_template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "autoexec.sqlite3"
    shutil.copyfile(migrated_template, path)
    return path


@pytest.fixture
def make_engine(database: Path) -> Iterator[MakeEngine]:
    with ExitStack() as stack:

        def make(**settings: Any) -> testing.TestEngine:
            return stack.enter_context(
                testing.engine(
                    blocks=[blocks_for_tests], settings_overrides=settings, database=database
                )
            )

        yield make


@pytest.fixture
def t(make_engine: MakeEngine) -> testing.TestEngine:
    return make_engine()
