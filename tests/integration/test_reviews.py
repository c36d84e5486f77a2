"""Human review (SPEC §8.2): a ``human_review`` node suspends in REVIEW holding no worker; the
run shows REVIEW once nothing else can run; a decision made from another process, while no
worker runs, resumes it where it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.errors import InvalidTransitionError, NotFoundError
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_for_status

S = ExecutionStatus

REVIEWED = graph(
    [
        node("x", "agent_input", name="x"),
        node("review", "human_review", message="Send this?"),
        node("ok", "agent_output", name="approved"),
        node("no", "agent_output", name="rejected"),
        node("side", "store_value"),
        node("side_out", "agent_output", name="side"),
    ],
    [
        ("x", "result", "review", "data"),
        ("review", "approved_data", "ok", "value"),
        ("review", "rejected", "no", "value"),
        ("x", "result", "side", "input"),
        ("side", "output", "side_out", "value"),
    ],
)


def start_reviewed_run(engine: Engine, owner: str, value: Any) -> str:
    graph_id, _ = api.save_graph(REVIEWED, owner, engine=engine)
    return api.execute_graph(graph_id, owner, {"x": value}, engine=engine)


def node_status(view: api.ExecutionView, node_id: str) -> S:
    return next(n.status for n in view.node_executions if n.node_id == node_id)


@pytest.mark.parametrize("approved", [True, False], ids=["approved", "rejected"])
def test_a_decided_review_resumes_the_run_from_another_process_after_a_worker_restart(
    cluster: Cluster, tmp_path: Path, approved: bool
) -> None:
    owner = user()
    with private_queues(cluster) as queues:
        engine = queues.engine
        with worker_process(queues.env, 1, tmp_path / "a.log", "review-a"):
            exec_id = start_reviewed_run(engine, owner, {"to": "alice"})
            view = wait_for_status(engine, exec_id, owner, S.REVIEW)
            # The other branch ran to its end; the review node waits with no worker.
            assert node_status(view, "review") is S.REVIEW
            assert node_status(view, "side_out") is S.COMPLETED
        # No worker runs now: the decision is made here, in the test's process.
        [pending] = api.list_reviews(owner, engine=engine)
        assert (pending.graph_exec_id, pending.status) == (exec_id, "PENDING")
        assert (pending.data, pending.message) == ({"to": "alice"}, "Send this?")
        with pytest.raises(NotFoundError):
            api.approve(pending.id, user(), engine=engine)
        if approved:
            decided = api.approve(pending.id, owner, data={"to": "bob"}, engine=engine)
            assert (decided.status, decided.decided_data) == ("APPROVED", {"to": "bob"})
        else:
            decided = api.reject(pending.id, owner, "wrong person", engine=engine)
            assert (decided.status, decided.reason) == ("REJECTED", "wrong person")
        with pytest.raises(InvalidTransitionError, match="already"):
            api.approve(pending.id, owner, engine=engine)
        assert api.list_reviews(owner, engine=engine) == []
        with worker_process(queues.env, 1, tmp_path / "b.log", "review-b"):
            final = api.wait(exec_id, owner, timeout=60, engine=engine)
    assert final.status is S.COMPLETED
    if approved:
        assert final.outputs == {"approved": [{"to": "bob"}], "side": [{"to": "alice"}]}
    else:
        assert final.outputs == {"rejected": ["wrong person"], "side": [{"to": "alice"}]}
