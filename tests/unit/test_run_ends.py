"""Every way a run ends goes through one end (``engine.lifecycle.end_run``): its last node
(finalize), a cancel, a run limit, a refusal at admission, a run message that could not be
published and the reconciler. Each test goes through one path and checks what a user sees:
the run's status, its node executions', the balance (charges of what never started come
back), the reviews and the slot handed to the next run.

And metering is an interface the engine is given: a metering written here, in the test file
alone, is called by a real run.

In-process on SQLite (and on PostgreSQL: tests/integration/test_run_ends_on_postgres.py) and
the in-memory Redis stand-in, with the credit ledger on; node tasks are run here, in the order
they were sent."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from sqlalchemy.orm import Session

from autoexec import api
from autoexec.billing.charges import metering_for
from autoexec.blocks.base import Block, BlockCost, BlockInput, BlockOutput, RunContext
from autoexec.blocks.registry import load_registry
from autoexec.coordination import make_coordinator
from autoexec.engine.admission import start_run
from autoexec.engine.context import Engine
from autoexec.engine.node_execution import execute_node
from autoexec.engine.reconciler import ENDED_WITH_NODES_LEFT, Report, reconcile
from autoexec.engine.submission import RunRequest, create_execution
from autoexec.errors import AutoexecError
from autoexec.metering import DispatchMeter, Metering
from autoexec.settings import load_settings
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.credits import NodeCharge
from autoexec.store.db import Database
from autoexec.store.executions import NodeTask
from autoexec.store.tables import GraphExecution
from autoexec.store.transitions import transition_graph

S = ExecutionStatus
PRICE = 2


class PricedInput(BlockInput):
    text: Any = ""


class PricedOutput(BlockOutput):
    text: Any = ""


class PricedBlock(Block[PricedInput]):
    """Costs ``PRICE`` credits a run; echoes ``text``."""

    id = "lifecycle_priced"
    name = "Priced (lifecycle tests)"
    description = "A RUN cost."
    Input = PricedInput
    Output = PricedOutput
    costs = (BlockCost(PRICE),)

    def run(self, data: PricedInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "text", data.text


class Sent:
    """Records what the engine sends; the test runs the node tasks."""

    unavailable = (ConnectionError,)

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.nodes: list[NodeTask] = []
        self.broker_down = False

    def run_graph(self, graph_exec_id: str) -> None:
        if self.broker_down:
            raise ConnectionError("the broker is down")
        self.runs.append(graph_exec_id)

    def advance_graph(self, graph_exec_id: str, countdown: float | None = None) -> None:
        pass

    def execute_node(self, task: NodeTask) -> None:
        self.nodes.append(task)

    def revoke(self, task_ids: list[str]) -> None:
        pass

    def fan_out(self, node_exec_id: int, graph_exec_id: str, elements: int) -> None:
        pass


def node(node_id: str, block_id: str, **defaults: Any) -> dict[str, Any]:
    return {"id": node_id, "block_id": block_id, "input_default": defaults}


def graph(nodes: list[dict[str, Any]], links: list[tuple[str, str, str, str]]) -> dict[str, Any]:
    return {
        "name": "lifecycle",
        "nodes": nodes,
        "links": [
            {"source_id": a, "source_name": b, "sink_id": c, "sink_name": d} for a, b, c, d in links
        ],
    }


PRICED = graph(
    [node("p", PricedBlock.id, text="hi"), node("out", "agent_output", name="text")],
    [("p", "text", "out", "value")],
)
REVIEWED = graph(
    [node("review", "human_review", data="hi", message="ok?"), node("p", PricedBlock.id)],
    [],
)
# Three node executions: the limit of two stops the run as it queues the third.
LOOPING = graph(
    [node("x", "agent_input", name="x", value="hi"), node("p", PricedBlock.id)],
    [("x", "result", "p", "text")],
)


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    return sqlite_url  # tests/integration/test_run_ends_on_postgres.py: on PostgreSQL


@pytest.fixture
def make_engine(database_url: str, sent: Sent) -> Iterator[Callable[..., Engine]]:
    databases: list[Database] = []

    def make(metering: Metering | None = None, **overrides: Any) -> Engine:
        redis_url = f"memory://lifecycle-{uuid.uuid4().hex}"
        settings = load_settings(
            database_url=database_url,
            redis_url=redis_url,
            max_concurrent_runs_per_user=1,
            billing_enabled=True,
            execution_cost_per_threshold=0,
            **overrides,
        )
        registry = load_registry()
        registry.register(PricedBlock)
        coordinator = make_coordinator(redis_url)
        databases.append(Database(database_url))
        chosen = metering or metering_for(settings, registry, coordinator)
        return Engine(settings, databases[-1], coordinator, registry, sent, chosen)

    yield make
    for database in databases:
        database.dispose()


@pytest.fixture
def engine(make_engine: Callable[..., Engine]) -> Engine:
    return make_engine()


def owner_with(engine: Engine, credits: int) -> str:
    owner = f"payer-{uuid.uuid4().hex[:8]}"
    api.top_up(owner, credits, engine=engine)
    return owner


def submit(engine: Engine, owner: str, definition: dict[str, Any]) -> str:
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    return api.execute_graph(graph_id, owner, engine=engine)


def run_sent_nodes(engine: Engine, sent: Sent, graph_exec_id: str) -> None:
    """Run the run's node tasks sent so far, and those they send."""
    while mine := [t for t in sent.nodes if t.graph_exec_id == graph_exec_id]:
        sent.nodes = [t for t in sent.nodes if t.graph_exec_id != graph_exec_id]
        for task in mine:
            execute_node(engine, task.node_exec_id)


def nodes_of(engine: Engine, graph_exec_id: str) -> dict[str, S]:
    with engine.db.session() as session:
        return {n.node_id: n.status for n in repo.node_executions(session, graph_exec_id)}


def run_of(engine: Engine, graph_exec_id: str) -> GraphExecution:
    with engine.db.session() as session:
        execution = repo.get_graph_execution(session, graph_exec_id)
        session.expunge(execution)
        return execution


def balance(engine: Engine, owner: str) -> int:
    return api.get_balance(owner, engine=engine)


def test_the_last_node_ends_the_run_and_hands_its_slot_on(engine: Engine, sent: Sent) -> None:
    owner = owner_with(engine, 10)
    first, second = submit(engine, owner, PRICED), submit(engine, owner, PRICED)
    assert balance(engine, owner) == 10 - 2 * PRICE  # each start node charged at submission
    assert [start_run(engine, run) for run in (first, second)] == [False, False]

    run_sent_nodes(engine, sent, first)

    assert run_of(engine, first).status is S.COMPLETED
    assert nodes_of(engine, first) == {"p": S.COMPLETED, "out": S.COMPLETED}
    assert run_of(engine, first).stats["cost"] == PRICE
    # The end's commit started the next run: its node was sent from it.
    assert run_of(engine, second).status is S.RUNNING
    assert [t.node_id for t in sent.nodes if t.graph_exec_id == second] == ["p"]
    assert balance(engine, owner) == 10 - 2 * PRICE


def test_a_cancel_ends_what_is_left_refunds_it_closes_reviews_and_hands_the_slot_on(
    engine: Engine, sent: Sent
) -> None:
    owner = owner_with(engine, 10)
    first, second = submit(engine, owner, REVIEWED), submit(engine, owner, PRICED)
    assert [start_run(engine, run) for run in (first, second)] == [False, False]
    [review] = [t for t in sent.nodes if t.node_id == "review"]
    execute_node(engine, review.node_exec_id)  # suspends in REVIEW; "p" stays QUEUED
    [pending] = api.list_reviews(owner, engine=engine)
    assert balance(engine, owner) == 10 - 2 * PRICE

    assert "cancelled" in api.cancel(first, owner, engine=engine)

    ended = run_of(engine, first)
    assert (ended.status, ended.error) == (S.TERMINATED, "cancelled")
    assert nodes_of(engine, first) == {"review": S.TERMINATED, "p": S.TERMINATED}
    assert balance(engine, owner) == 10 - PRICE  # "p" never started: its charge came back
    assert ended.stats["cost"] == 0
    assert api.list_reviews(owner, engine=engine) == []
    with pytest.raises(AutoexecError, match="cancelled"):
        api.approve(pending.id, owner, engine=engine)
    assert run_of(engine, second).status is S.RUNNING


def test_a_run_limit_ends_the_run_failed_refunds_what_never_started_and_hands_the_slot_on(
    make_engine: Callable[..., Engine], sent: Sent
) -> None:
    engine = make_engine(max_node_executions_per_run=1)
    owner = owner_with(engine, 10)
    first, second = submit(engine, owner, LOOPING), submit(engine, owner, PRICED)
    assert [start_run(engine, run) for run in (first, second)] == [False, False]

    run_sent_nodes(engine, sent, first)  # "x" queues "p" (charged): one execution too many

    ended = run_of(engine, first)
    assert ended.status is S.FAILED
    assert ended.error is not None and "AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN=1" in ended.error
    assert nodes_of(engine, first) == {"x": S.COMPLETED, "p": S.TERMINATED}
    assert balance(engine, owner) == 10 - PRICE  # only the second run's start node
    assert run_of(engine, second).status is S.RUNNING


def test_a_run_refused_at_admission_ends_its_start_nodes_and_refunds_them(
    engine: Engine, sent: Sent
) -> None:
    owner = owner_with(engine, 10)
    parent = submit(engine, owner, PRICED)
    api.cancel(parent, owner, engine=engine)
    graph_id = run_of(engine, parent).graph_id
    orphan = create_execution(engine, RunRequest(graph_id, owner, parent_execution_id=parent))
    assert balance(engine, owner) == 10 - PRICE  # the parent's charge came back with its cancel

    assert start_run(engine, orphan) is False

    refused = run_of(engine, orphan)
    assert (refused.status, refused.error) == (S.TERMINATED, "its parent execution was terminated")
    assert nodes_of(engine, orphan) == {"p": S.TERMINATED}
    assert balance(engine, owner) == 10
    assert [t for t in sent.nodes if t.graph_exec_id == orphan] == []


def test_a_run_whose_message_cannot_be_published_fails_and_refunds_its_start_nodes(
    engine: Engine, sent: Sent
) -> None:
    owner = owner_with(engine, 10)
    sent.broker_down = True
    with pytest.raises(AutoexecError, match="could not publish the run message"):
        submit(engine, owner, PRICED)
    [failed] = api.list_executions(owner, engine=engine)

    assert failed.status is S.FAILED
    assert nodes_of(engine, failed.id) == {"p": S.TERMINATED}
    assert balance(engine, owner) == 10


def test_the_reconciler_ends_and_refunds_the_queued_nodes_an_ended_run_left(
    engine: Engine,
) -> None:
    owner = owner_with(engine, 10)
    run = submit(engine, owner, PRICED)
    with engine.db.session() as session:  # as a run ended by a process that died after it
        assert transition_graph(session, run, S.FAILED, error="ended elsewhere")

    assert reconcile(engine, older_than_seconds=300) == Report(terminated_nodes=1)

    assert run_of(engine, run).status is S.FAILED
    assert nodes_of(engine, run) == {"p": S.TERMINATED}
    with engine.db.session() as session:
        assert [n.error for n in repo.node_executions(session, run)] == [ENDED_WITH_NODES_LEFT]
    assert balance(engine, owner) == 10
    assert reconcile(engine, older_than_seconds=0) == Report()


class RecordingMetering:
    """A metering of this file alone: every node costs one unit, and every call is noted."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def check_budget(self, credit_budget: int | None) -> None:
        self.calls.append(("check_budget", str(credit_budget)))

    def check_can_start(self, session: Session, user_id: str) -> None:
        self.calls.append(("check_can_start", user_id))

    def dispatch_meter(
        self, session: Session, graph_exec_id: str, loaded: GraphExecution | None = None
    ) -> DispatchMeter:
        return self

    def before_dispatch(self, node: Callable[[], NodeCharge]) -> int | None:
        self.calls.append(("before_dispatch", node().node_id))
        return 1

    def charge_usage(
        self, session: Session, graph_exec_id: str, node: NodeCharge, stats: Mapping[str, Any]
    ) -> int:
        self.calls.append(("charge_usage", node.node_id))
        return 0

    def refund_unstarted(self, session: Session, graph_exec_id: str) -> int:
        self.calls.append(("refund_unstarted", graph_exec_id))
        return 0

    def child_budget(self, session: Session, parent_exec_id: str) -> int | None:
        return None

    def add_child_spend(self, session: Session, parent_exec_id: str, child_exec_id: str) -> None:
        pass


def test_the_engine_meters_a_run_with_the_metering_it_is_given(
    make_engine: Callable[..., Engine], sent: Sent
) -> None:
    metering = RecordingMetering()
    engine = make_engine(metering)
    owner = "ada"  # no credits: the credit ledger is not asked

    run = submit(engine, owner, PRICED)
    assert start_run(engine, run) is False
    run_sent_nodes(engine, sent, run)

    assert run_of(engine, run).status is S.COMPLETED
    assert metering.calls == [
        ("check_budget", "None"),
        ("check_can_start", owner),
        ("before_dispatch", "p"),
        ("charge_usage", "p"),
        ("before_dispatch", "out"),
        ("charge_usage", "out"),
    ]
    with engine.db.session() as session:
        costs = [n.stats.get("cost") for n in repo.node_executions(session, run)]
    assert costs == [1, 1]

    cancelled = submit(engine, owner, PRICED)
    api.cancel(cancelled, owner, engine=engine)
    assert metering.calls[-1] == ("refund_unstarted", cancelled)
