"""What a subscriber's tracker (autoexec.observability.live) yields of a run's status events:
each change once, a resumed run's return to RUNNING included."""

from __future__ import annotations

from autoexec.observability.events import GRAPH_EVENT
from autoexec.observability.live import GraphEvent, Tracker
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus


def graph_wire(status: S) -> dict[str, object]:
    return {"type": GRAPH_EVENT, "graph_exec_id": "g", "user_id": "u", "status": status.value}


def statuses_yielded(*statuses: S) -> list[S]:
    tracker = Tracker()
    yielded = [tracker.apply(graph_wire(status)) for status in statuses]
    return [event.status for event in yielded if isinstance(event, GraphEvent)]


def test_a_run_resumed_from_review_goes_back_to_running_once() -> None:
    run = (S.RUNNING, S.RUNNING, S.REVIEW, S.REVIEW, S.RUNNING, S.RUNNING, S.COMPLETED)
    assert statuses_yielded(*run) == [S.RUNNING, S.REVIEW, S.RUNNING, S.COMPLETED]


def test_a_run_waiting_for_a_child_resumes_and_no_status_comes_after_the_end() -> None:
    run = (S.QUEUED, S.RUNNING, S.WAITING, S.RUNNING, S.TERMINATED, S.RUNNING, S.QUEUED)
    assert statuses_yielded(*run) == [S.QUEUED, S.RUNNING, S.WAITING, S.RUNNING, S.TERMINATED]
