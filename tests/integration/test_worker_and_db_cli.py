"""The worker lists autoexec's tasks and queues; `autoexec db upgrade` creates a database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, inspect, text

from autoexec.store.migrate import head_revision
from tests.integration.conftest import ROOT, Cluster

TASKS = ("autoexec.run_graph", "autoexec.advance_graph", "autoexec.execute_node")
AUTOEXEC = str(Path(sys.executable).parent / "autoexec")


def test_worker_banner_lists_tasks_and_queues(cluster: Cluster) -> None:
    log = cluster.worker_log()
    for task in (*TASKS, "autoexec.cancel_graph"):
        assert f". {task}" in log
    assert cluster.graph_queue in log
    assert cluster.node_queue in log


def test_inspect_registered_shows_the_tasks(cluster: Cluster) -> None:
    env = {**os.environ, "AUTOEXEC_DATABASE_URL": cluster.database_url}
    done = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "autoexec", "inspect", "registered", "-t", "10"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for task in TASKS:
        assert task in done.stdout


def test_db_upgrade_creates_a_missing_database_and_is_idempotent(new_pg_url: str) -> None:
    env = {**os.environ, "AUTOEXEC_DATABASE_URL": new_pg_url}
    for _ in range(2):
        done = subprocess.run(
            [AUTOEXEC, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert "up to date" in done.stdout
    engine = create_engine(new_pg_url)
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    assert {"graphs", "graph_executions", "node_executions", "node_execution_outputs"} <= tables
    assert revision == head_revision()
