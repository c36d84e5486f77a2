"""Credits (SPEC §6) with metering on: exact balances, charges made once, refused charges,
budgets, refunds."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from autoexec import api
from autoexec.errors import InputValidationError, InsufficientBalanceError
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import CreditTransaction, GraphExecution
from autoexec.testing import TestEngine
from tests.engine.conftest import MakeEngine
from tests.graphs import fanned_out, graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus

# Every 4th node execution of a user costs 10 more credits.
METERED = {
    "billing_enabled": True,
    "execution_cost_count_threshold": 4,
    "execution_cost_per_threshold": 10,
    "low_balance_threshold": 50,
}
FLAT_RATE = {**METERED, "execution_cost_per_threshold": 0}  # block costs only


@pytest.fixture
def metered(make_engine: MakeEngine) -> TestEngine:
    return make_engine(**METERED)


@pytest.fixture
def flat_rate(make_engine: MakeEngine) -> TestEngine:
    return make_engine(**FLAT_RATE)


def ledger_of(t: TestEngine, owner: str) -> list[CreditTransaction]:
    with t.engine.db.session() as session:
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


def test_a_mixed_graph_leaves_the_exact_balance(metered: TestEngine) -> None:
    owner = user()
    assert metered.top_up(owner, 100) == 100
    view = metered.run(metered.save_graph(MIXED, owner), {}, owner)
    assert view.status is S.COMPLETED, view.error
    # 5 + 2 + 7 + 6 for the blocks, and 10 for the 4th of the user's 6 node executions.
    assert metered.balance(owner) == 100 - 30
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
    assert [row.kind for row in metered.transactions(owner, limit=1)] == ["CHARGE"]


def test_a_submission_with_no_credits_is_refused_and_queues_nothing(metered: TestEngine) -> None:
    owner = user()
    graph_id = metered.save_graph(MIXED, owner)
    with pytest.raises(InsufficientBalanceError, match="balance of 0"):
        metered.submit(graph_id, {}, owner)
    with metered.engine.db.session() as session:
        runs = session.scalar(
            select(func.count()).select_from(GraphExecution).where(GraphExecution.user_id == owner)
        )
    assert runs == 0
    assert metered.dispatcher.sent == []


def fan(width: int) -> dict[str, Any]:
    """One input feeding ``width`` nodes that cost 2 credits each."""
    return graph(
        [node("x", "agent_input", name="x", value="go")]
        + [node(f"p{i}", "test_priced_run") for i in range(width)],
        [("x", "result", f"p{i}", "text") for i in range(width)],
    )


def test_a_refused_charge_fails_its_node_and_stops_the_run(flat_rate: TestEngine) -> None:
    owner = user()
    flat_rate.top_up(owner, 15)  # 7 nodes at 2 credits, and 1 left over
    view = flat_rate.run(flat_rate.save_graph(fan(20), owner), {}, owner)
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
    assert flat_rate.balance(owner) == 1
    assert view.stats["cost"] == 14


def test_runs_of_one_user_never_overdraw(flat_rate: TestEngine) -> None:
    owner = user()
    flat_rate.top_up(owner, 25)  # 12 nodes at 2 credits across all runs
    graph_id = flat_rate.save_graph(fan(10), owner)
    runs = [flat_rate.submit(graph_id, {}, owner) for _ in range(3)]
    flat_rate.drain()
    views = [flat_rate.execution(r, owner) for r in runs]
    ran = [n for v in views for n in v.node_executions if n.status is S.COMPLETED]
    assert len([n for n in ran if n.node_id != "x"]) == 12
    assert flat_rate.balance(owner) == 1
    assert sum(v.stats["cost"] for v in views) == 24
    for view in views:
        stopped = any(n.status is S.FAILED for n in view.node_executions)
        assert view.status is (S.FAILED if stopped else S.COMPLETED)


CHAIN = graph(
    [node("x", "agent_input", name="x", value="go")]
    + [node(f"p{i}", "test_priced_run") for i in range(1, 5)]
    + [node("out", "agent_output", name="text")],
    [("x", "result", "p1", "text")]
    + [(f"p{i}", "text", f"p{i + 1}", "text") for i in range(1, 4)]
    + [("p4", "text", "out", "value")],
)


def test_a_budget_stops_the_run_at_the_node_that_would_pass_it(flat_rate: TestEngine) -> None:
    owner = user()
    flat_rate.top_up(owner, 100)
    view = flat_rate.run(flat_rate.save_graph(CHAIN, owner), {}, owner, credit_budget=5)
    assert view.status is S.FAILED
    assert view.error is not None and "BudgetExceededError" in view.error
    statuses = {n.node_id: n.status for n in view.node_executions}
    assert statuses == {"x": S.COMPLETED, "p1": S.COMPLETED, "p2": S.COMPLETED, "p3": S.FAILED}
    p3 = next(n for n in view.node_executions if n.node_id == "p3")
    assert "credit_budget of 5" in p3.outputs["error"][0]
    assert view.stats["cost"] == 4
    assert flat_rate.balance(owner) == 96
    # A rerun with a higher budget goes all the way.
    again = api.rerun(view.id, owner, engine=flat_rate.engine, credit_budget=8)
    flat_rate.drain()
    assert flat_rate.execution(again, owner).status is S.COMPLETED
    assert flat_rate.balance(owner) == 88


def test_a_budget_needs_metering_on(t: TestEngine) -> None:
    graph_id = t.save_graph(CHAIN)
    with pytest.raises(InputValidationError, match="AUTOEXEC_BILLING_ENABLED"):
        t.submit(graph_id, {}, credit_budget=5)


HELD = graph(
    [
        node("hold", "test_yield_then_wait", seconds=60),  # runs until the cancel
        node("p1", "test_priced_run"),
        node("p2", "test_priced_run"),
    ],
    [("hold", "item", "p1", "text"), ("hold", "item", "p2", "text")],
)


def test_a_cancel_refunds_the_nodes_charged_but_never_started(flat_rate: TestEngine) -> None:
    owner = user()
    flat_rate.top_up(owner, 10)
    exec_id = flat_rate.submit(flat_rate.save_graph(HELD, owner), {}, owner)
    worker = threading.Thread(target=flat_rate.drain)  # ``hold`` runs until the cancel
    worker.start()
    try:
        wait_until(lambda: flat_rate.balance(owner) == 6, "p1 and p2 queued and charged")
        api.cancel(exec_id, owner, engine=flat_rate.engine)
    finally:
        worker.join()
    flat_rate.drain()
    view = flat_rate.execution(exec_id, owner)
    assert view.status is S.TERMINATED
    assert {n.node_id: n.status for n in view.node_executions if n.node_id != "hold"} == {
        "p1": S.TERMINATED,
        "p2": S.TERMINATED,
    }
    assert flat_rate.balance(owner) == 10
    refunds = [row for row in ledger_of(flat_rate, owner) if row.kind == "REFUND"]
    assert sorted(row.amount for row in refunds) == [2, 2]
    assert view.stats["cost"] == 0


def test_a_copy_of_every_message_charges_nothing_twice(flat_rate: TestEngine) -> None:
    owner = user()
    flat_rate.top_up(owner, 100)
    view = flat_rate.run(flat_rate.save_graph(CHAIN, owner), {}, owner)
    assert view.status is S.COMPLETED
    before = [(row.key, row.amount) for row in ledger_of(flat_rate, owner)]
    for job in list(flat_rate.dispatcher.sent):  # every message of the run, again
        flat_rate.dispatcher.put(job)
    flat_rate.drain()
    assert [(row.key, row.amount) for row in ledger_of(flat_rate, owner)] == before
    assert flat_rate.balance(owner) == 92
    assert flat_rate.execution(view.id, owner).stats["cost"] == 8


FANNED = graph(
    [
        node("x", "agent_input", name="tiers", value=["basic", "premium", "basic"]),
        fanned_out(node("p", "test_priced_run", text="hi"), "tier"),
        node("out", "agent_output", name="texts"),
    ],
    [("x", "result", "p", "tier"), ("p", "text", "out", "value")],
)


def test_a_fan_out_node_pays_for_each_run_of_its_block(flat_rate: TestEngine) -> None:
    owner = user()
    flat_rate.top_up(owner, 100)
    view = flat_rate.run(flat_rate.save_graph(FANNED, owner), {}, owner)
    assert view.status is S.COMPLETED, view.error
    assert view.outputs["texts"] == [["hi", "hi", "hi"]]
    assert flat_rate.balance(owner) == 100 - (2 + 5 + 2)
    fanned = next(n for n in view.node_executions if n.node_id == "p")
    assert fanned.stats["cost"] == 9


PRICED_CHILD = graph(
    [node("x", "agent_input", name="x")] + [node(f"p{i}", "test_priced_run") for i in range(1, 5)],
    [("x", "result", "p1", "text")] + [(f"p{i}", "text", f"p{i + 1}", "text") for i in range(1, 4)],
)


def test_a_budget_covers_the_runs_sub_graphs(flat_rate: TestEngine) -> None:
    owner = user()
    flat_rate.top_up(owner, 100)
    child_id = flat_rate.save_graph(PRICED_CHILD, owner)
    parent = graph(
        [
            node("x", "agent_input", name="x", value="go"),
            node("child", "agent_executor", graph_id=child_id),
        ],
        [("x", "result", "child", "inputs_#_x")],
    )
    view = flat_rate.run(flat_rate.save_graph(parent, owner), {}, owner, credit_budget=5)
    assert view.status is S.FAILED
    assert view.error is not None and "credit_budget of 5" in view.error
    assert view.stats["cost"] == 4  # the child's two nodes, counted in its parent's spend
    assert flat_rate.balance(owner) == 96


def test_a_top_up_key_is_the_users_own(metered: TestEngine) -> None:
    first, second = user(), user()
    assert metered.top_up(first, 10, key="invoice-1") == 10
    assert metered.top_up(first, 10, key="invoice-1") == 10  # a repeat
    assert metered.top_up(second, 7, key="invoice-1") == 7  # not the first's
    with pytest.raises(InputValidationError, match="top-up key"):
        metered.top_up(second, 7, key="k" * 61)
