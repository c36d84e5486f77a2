"""Credits (SPEC §6) on a metered worker: exact balances, charges made once whatever
happens to the run, refused charges, budgets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from autoexec.store.executions import NodeTask
from autoexec.store.tables import CreditTransaction
from autoexec.tasks import run_graph
from tests.integration.conftest import Cluster, billing_worker
from tests.integration.test_engine import graph, node
from tests.waiting import wait_for_text

S = ExecutionStatus
NO_EXECUTION_COST = {"AUTOEXEC_EXECUTION_COST_PER_THRESHOLD": "0"}


def user() -> str:
    return f"payer-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def metered(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A metered worker: every 4th node execution of a user costs 10 more credits."""
    log = tmp_path_factory.mktemp("metered") / "worker.log"
    with billing_worker(cluster, log) as (engine, _):
        yield engine


def run(
    engine: Engine, owner: str, definition: dict[str, Any], **options: Any
) -> api.ExecutionView:
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(graph_id, owner, {}, engine=engine, **options)
    return api.wait(exec_id, owner, timeout=60, engine=engine)


def ledger_of(engine: Engine, owner: str) -> list[CreditTransaction]:
    with engine.db.session() as session:
        rows = session.scalars(
            select(CreditTransaction)
            .where(CreditTransaction.user_id == owner)
            .order_by(CreditTransaction.id)
        )
        return list(rows)


MIXED = graph(
    [
        node("x", "agent_input", name="x", value="hello"),
        node("premium", "test_priced_run", tier="premium"),  # RUN 5 (its filter matches)
        node("basic", "test_priced_run"),  # RUN 2
        node("bytes", "test_priced_bytes"),  # BYTE 1 per byte: '"hello"' is 7 bytes
        node("seconds", "test_priced_seconds", seconds=1.1),  # SECOND 3: 2 seconds begun
        node("out", "agent_output", name="text"),
    ],
    [
        ("x", "result", "premium", "text"),
        ("x", "result", "basic", "text"),
        ("premium", "text", "bytes", "text"),
        ("bytes", "text", "out", "value"),
    ],
)


def test_a_mixed_graph_leaves_the_exact_balance(metered: Engine) -> None:
    owner = user()
    assert api.top_up(owner, 100, engine=metered) == 100
    view = run(metered, owner, MIXED)
    assert view.status is S.COMPLETED, view.error
    # 5 + 2 + 7 + 6 for the blocks, and 10 for the 4th of the user's 6 node executions.
    assert api.get_balance(owner, engine=metered) == 100 - 30
    assert view.stats["cost"] == 30
    charges = [row for row in ledger_of(metered, owner) if row.kind == "CHARGE"]
    assert sum(row.amount for row in charges) == -30
    assert min(row.balance_after for row in charges) == 70
    every_fourth = [row for row in charges if row.details.get("execution_cost") == 10]
    assert len(every_fourth) == 1
    block_costs = {"premium": 5, "basic": 2, "bytes": 7, "seconds": 6, "x": 0, "out": 0}
    block_costs[every_fourth[0].details["node_id"]] += 10
    assert {n.node_id: n.stats.get("cost", 0) for n in view.node_executions} == block_costs
    premium = next(row for row in charges if row.details["node_id"] == "premium")
    assert premium.amount == -5
    assert premium.details["matched_inputs"] == {"tier": "premium"}
    assert premium.details["graph_exec_id"] == view.id
    usage = {row.details["node_id"]: -row.amount for row in charges if row.key.endswith(":usage")}
    assert usage == {"bytes": 7, "seconds": 6}


@pytest.fixture(scope="module")
def flat_rate(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A metered worker with block costs only (no execution cost), four slots."""
    log = tmp_path_factory.mktemp("flat-rate") / "worker.log"
    with billing_worker(cluster, log, concurrency=4, extra=NO_EXECUTION_COST) as (engine, _):
        yield engine


def fan(width: int) -> dict[str, Any]:
    """One input feeding ``width`` nodes that cost 2 credits each."""
    return graph(
        [node("x", "agent_input", name="x", value="go")]
        + [node(f"p{i}", "test_priced_run") for i in range(width)],
        [("x", "result", f"p{i}", "text") for i in range(width)],
    )


def test_nodes_racing_for_the_last_credits_run_only_the_affordable_ones(flat_rate: Engine) -> None:
    owner = user()
    api.top_up(owner, 15, engine=flat_rate)  # 7 nodes at 2 credits, and 1 left over
    view = run(flat_rate, owner, fan(20))
    assert view.status is S.FAILED
    assert view.error is not None and "InsufficientBalanceError" in view.error
    priced = [n for n in view.node_executions if n.node_id != "x"]
    completed = [n for n in priced if n.status is S.COMPLETED]
    failed = [n for n in priced if n.status is S.FAILED]
    assert len(completed) == 7
    assert all(n.outputs["text"] == ["go"] for n in completed)
    assert len(failed) == 1
    assert "InsufficientBalanceError" in failed[0].outputs["error"][0]
    assert all(n.status is S.TERMINATED for n in priced if n not in completed + failed)
    assert api.get_balance(owner, engine=flat_rate) == 1
    assert view.stats["cost"] == 14


def test_concurrent_runs_of_one_user_never_overdraw(flat_rate: Engine) -> None:
    owner = user()
    api.top_up(owner, 25, engine=flat_rate)  # 12 nodes at 2 credits across all runs
    graph_id, _ = api.save_graph(fan(10), owner, engine=flat_rate)
    runs = [api.execute_graph(graph_id, owner, {}, engine=flat_rate) for _ in range(3)]
    views = [api.wait(r, owner, timeout=60, engine=flat_rate) for r in runs]
    ran = [n for v in views for n in v.node_executions if n.status is S.COMPLETED]
    assert len([n for n in ran if n.node_id != "x"]) == 12
    assert api.get_balance(owner, engine=flat_rate) == 1
    assert sum(v.stats["cost"] for v in views) == 24
    for view in views:
        stopped = any(n.status is S.FAILED for n in view.node_executions)
        assert view.status is (S.FAILED if stopped else S.COMPLETED)


KILLED_ONCE = graph(
    [
        node("x", "agent_input", name="x", value="hello"),
        node("doomed", "test_priced_kill_once"),  # RUN 4; kills its worker the first time
        node("bytes", "test_priced_bytes"),  # BYTE 7 for '"hello"'
        node("out", "agent_output", name="text"),
    ],
    [
        ("x", "result", "bytes", "text"),
        ("bytes", "text", "out", "value"),
    ],
)


def wait_for_log(log: Path, pattern: str, timeout: float = 30) -> None:
    wait_for_text(lambda: log.read_text(errors="replace"), pattern, "the worker log", 0, timeout)


def test_a_kill_9_mid_node_and_duplicated_messages_charge_nothing_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    definition = {**KILLED_ONCE}
    definition["nodes"][1]["input_default"]["marker"] = str(tmp_path / "killed")
    log = tmp_path / "worker.log"
    with billing_worker(cluster, log, extra=NO_EXECUTION_COST) as (engine, _):
        api.top_up(owner, 100, engine=engine)
        view = run(engine, owner, definition)
        assert view.status is S.COMPLETED, view.error
        assert (tmp_path / "killed").exists()  # the first run of "doomed" was killed
        doomed = next(n for n in view.node_executions if n.node_id == "doomed")
        assert doomed.attempt == 2
        assert api.get_balance(owner, engine=engine) == 100 - 4 - 7
        before = [(row.key, row.amount) for row in ledger_of(engine, owner)]

        # The run's messages again: its run_graph, and every node's execute_node.
        assert run_graph.apply_async(kwargs={"graph_exec_id": view.id}).get(timeout=30)
        copies = [
            NodeTask(n.id, view.id, str(uuid.uuid4()), n.node_id, n.block_id)
            for n in view.node_executions
        ]
        for task in copies:
            engine.dispatcher.execute_node(task)
        for task in copies:  # refused: a node task returns a status only when it ran
            wait_for_log(log, rf"execute_node\[{task.task_id}\] succeeded in \S+s: None")
    assert [(row.key, row.amount) for row in ledger_of(engine, owner)] == before
    assert api.get_balance(owner, engine=engine) == 89
    assert api.get_execution(view.id, owner, engine=engine).stats["cost"] == 11
