"""Human review (SPEC §8.2): a ``human_review`` node suspends in REVIEW holding no worker; the
run shows REVIEW once nothing else can run; a decision resumes it where it was."""

from __future__ import annotations

import pytest

from autoexec import api
from autoexec.engine.reconciler import reconcile
from autoexec.errors import InvalidTransitionError, NotFoundError
from autoexec.statuses import ExecutionStatus
from autoexec.testing import Job, TestEngine
from tests.engine.conftest import MakeEngine
from tests.graphs import ADD_ONE, graph, node, user

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


def node_status(view: api.ExecutionView, node_id: str) -> S:
    return next(n.status for n in view.node_executions if n.node_id == node_id)


@pytest.mark.parametrize("approved", [True, False], ids=["approved", "rejected"])
def test_a_decided_review_resumes_the_run(t: TestEngine, approved: bool) -> None:
    owner = user()
    view = t.run(t.save_graph(REVIEWED, owner), {"x": {"to": "alice"}}, owner)
    assert view.status is S.REVIEW
    # The other branch ran to its end; the review node waits, with nothing queued.
    assert node_status(view, "review") is S.REVIEW
    assert node_status(view, "side_out") is S.COMPLETED
    assert t.dispatcher.queued == type(t.dispatcher.queued)()
    [pending] = t.reviews(owner)
    assert (pending.graph_exec_id, pending.status) == (view.id, "PENDING")
    assert (pending.data, pending.message) == ({"to": "alice"}, "Send this?")
    with pytest.raises(NotFoundError):
        t.approve(pending.id, user())
    if approved:
        decided = t.approve(pending.id, owner, data={"to": "bob"})
        assert (decided.status, decided.decided_data) == ("APPROVED", {"to": "bob"})
    else:
        decided = t.reject(pending.id, "wrong person", owner)
        assert (decided.status, decided.reason) == ("REJECTED", "wrong person")
    with pytest.raises(InvalidTransitionError, match="already"):
        t.approve(pending.id, owner)
    assert t.reviews(owner) == []
    final = t.execution(view.id, owner)
    assert final.status is S.COMPLETED
    if approved:
        assert final.outputs == {"approved": [{"to": "bob"}], "side": [{"to": "alice"}]}
    else:
        assert final.outputs == {"rejected": ["wrong person"], "side": [{"to": "alice"}]}


def test_a_rejection_needs_a_reason(t: TestEngine) -> None:
    view = t.run(t.save_graph(REVIEWED), {"x": 1})
    [pending] = t.reviews()
    with pytest.raises(Exception, match="needs a reason"):
        t.reject(pending.id, "")
    assert t.execution(view.id).status is S.REVIEW


def test_a_run_in_review_holds_its_slot_and_a_cancel_ends_it(make_engine: MakeEngine) -> None:
    t = make_engine(max_concurrent_runs_per_user=2)
    owner = user()
    reviewed = t.run(t.save_graph(REVIEWED, owner), {"x": 1}, owner)
    assert reviewed.status is S.REVIEW
    # Another run completes meanwhile: no worker is held by the review.
    assert t.run(t.save_graph(ADD_ONE, owner), {"x": 1}, owner).status is S.COMPLETED
    [pending] = t.reviews(owner)
    assert "cancelled" in t.cancel(reviewed.id, owner)
    view = t.execution(reviewed.id, owner)
    assert view.status is S.TERMINATED
    assert node_status(view, "review") is S.TERMINATED
    assert t.reviews(owner) == []
    with pytest.raises(InvalidTransitionError, match="cancelled"):
        t.approve(pending.id, owner)


def test_an_approval_while_the_broker_is_down_returns_the_decision_and_the_run_goes_on(
    t: TestEngine,
) -> None:
    owner = user()
    view = t.run(t.save_graph(REVIEWED, owner), {"x": 1}, owner)
    [pending] = t.reviews(owner)

    def broker_down(job: Job) -> None:
        raise ConnectionError("the broker is down")

    t.dispatcher.on_send = broker_down
    decided = t.approve(pending.id, owner)  # committed: no error for the caller
    assert decided.status == "APPROVED"
    t.dispatcher.on_send = None
    assert t.execution(view.id, owner).status is S.RUNNING  # its successor's message is lost

    reconcile(t.engine, older_than_seconds=0)  # the broker is back
    t.drain()
    final = t.execution(view.id, owner)
    assert (final.status, final.outputs) == (S.COMPLETED, {"approved": [1], "side": [1]})
