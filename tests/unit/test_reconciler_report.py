"""What a reconciler pass prints: every count, by name, as text and as JSON-ready data."""

from __future__ import annotations

from autoexec.engine.reconciler import Report


def test_a_report_names_every_count() -> None:
    report = Report(republished_runs=2, resent_nodes=1, woken_runs=1)
    assert report.as_dict() == {
        "republished_runs": 2,
        "waiting_runs": 0,
        "resent_nodes": 1,
        "dispatched_nodes": 0,
        "woken_runs": 1,
        "owned_runs": 0,
        "terminated_nodes": 0,
    }
    assert "republished runs: 2" in report.lines()
    assert str(report).startswith("republished runs: 2, waiting runs: 0, resent nodes: 1")


def test_runs_left_waiting_for_a_slot_or_to_their_nodes_are_not_an_action() -> None:
    assert not Report(waiting_runs=3, owned_runs=2).acted
    assert Report(dispatched_nodes=1).acted
    assert Report(terminated_nodes=1).acted
