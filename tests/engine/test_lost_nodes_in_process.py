"""The reconciler ends RUNNING node executions whose task is gone (issue 22): an engine error
that ended the task with the node still RUNNING, or a lost message. In a run still going the
node is taken over as a re-delivered message would (a lost worker counted, failed past
AUTOEXEC_MAX_WORKER_LOSSES); in an ended run it ends TERMINATED. A node whose task is alive
(it renews its mark) is left to it."""

from __future__ import annotations

from autoexec.engine.node_execution import NodeJob, claim
from autoexec.engine.reconciler import LOST_IN_ENDED_RUN, Report, reconcile
from autoexec.statuses import ExecutionStatus
from autoexec.store.transitions import start_queued_node
from autoexec.testing import TestEngine
from tests.engine.conftest import MakeEngine
from tests.graphs import graph, node

S = ExecutionStatus

MULTIPLY = graph(
    [
        node("a", "agent_input", name="a"),
        node("calc", "calculator", operation="multiply", b=3),
        node("out", "agent_output", name="product"),
    ],
    [("a", "result", "calc", "a"), ("calc", "result", "out", "value")],
)


def queued_calc(t: TestEngine) -> tuple[str, int]:
    """A run whose ``calc`` task was sent and taken off the queue, not run: the run's id and
    the node execution's."""
    graph_exec_id = t.submit(t.save_graph(MULTIPLY), {"a": 2})
    while not any(task.node_id == "calc" for task in t.dispatcher.nodes()):
        assert t.step() is not None, "calc was never sent"
    (task,) = [task for task in t.dispatcher.nodes() if task.node_id == "calc"]
    t.dispatcher.discard(lambda job: job.node_id != "calc")
    return graph_exec_id, task.node_exec_id


def started_by_a_task_now_gone(t: TestEngine) -> tuple[str, int]:
    """``calc`` claimed RUNNING by a task that then ended without recording it (as a task
    that raised an engine error did, its message acknowledged)."""
    graph_exec_id, node_exec_id = queued_calc(t)
    with t.engine.db.single_statement() as session:
        assert start_queued_node(session, node_exec_id) is not None
    return graph_exec_id, node_exec_id


def calc_of(t: TestEngine, graph_exec_id: str) -> tuple[ExecutionStatus, int, str | None]:
    (calc,) = [n for n in t.execution(graph_exec_id).node_executions if n.node_id == "calc"]
    return calc.status, calc.attempt, calc.error


def test_a_running_node_whose_task_is_gone_is_run_again(t: TestEngine) -> None:
    graph_exec_id, _ = started_by_a_task_now_gone(t)
    assert t.drain() == 0  # nothing would ever move it on

    assert reconcile(t.engine, older_than_seconds=0) == Report(lost_nodes_resent=1)
    t.drain()

    view = t.execution(graph_exec_id)
    assert (view.status, view.outputs) == (S.COMPLETED, {"product": [6]})
    assert calc_of(t, graph_exec_id) == (S.COMPLETED, 2, None)
    assert reconcile(t.engine, older_than_seconds=0) == Report()


def test_a_node_lost_too_often_fails_and_its_run_ends(make_engine: MakeEngine) -> None:
    t = make_engine(max_worker_losses=1)
    graph_exec_id, _ = started_by_a_task_now_gone(t)

    assert reconcile(t.engine, older_than_seconds=0) == Report(lost_nodes_resent=1)
    t.drain()

    status, _, error = calc_of(t, graph_exec_id)
    assert status is S.FAILED
    assert error is not None and "was lost 1 times" in error
    assert t.execution(graph_exec_id).status is S.FAILED


def test_a_running_node_of_a_cancelled_run_whose_task_is_gone_ends_terminated(
    t: TestEngine,
) -> None:
    graph_exec_id, _ = started_by_a_task_now_gone(t)
    t.cancel(graph_exec_id)
    assert calc_of(t, graph_exec_id)[0] is S.RUNNING

    assert reconcile(t.engine, older_than_seconds=0) == Report(lost_nodes_terminated=1)

    assert calc_of(t, graph_exec_id) == (S.TERMINATED, 1, LOST_IN_ENDED_RUN)
    assert t.execution(graph_exec_id).status is S.TERMINATED


def test_a_running_node_whose_task_is_alive_is_left_to_it(t: TestEngine) -> None:
    graph_exec_id, node_exec_id = queued_calc(t)
    claimed = claim(t.engine, node_exec_id, rerun=False, graph_exec_id=graph_exec_id)
    assert isinstance(claimed, NodeJob)

    assert reconcile(t.engine, older_than_seconds=0) == Report(owned_runs=1)
    assert calc_of(t, graph_exec_id) == (S.RUNNING, 1, None)
    assert t.dispatcher.nodes() == []
