"""Progress into a pipe: every change of the run's status, and at most one line a second for
the node events in between (the latest, saying how many it stands for)."""

from __future__ import annotations

import io

from autoexec.cli.progress import Board, PipedLines
from autoexec.observability.live import GraphEvent, NodeEvent
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_event(status: S) -> GraphEvent:
    return GraphEvent(graph_exec_id="e1", user_id="u", status=status)


def node_event(node_exec_id: int, status: S) -> NodeEvent:
    return NodeEvent(
        graph_exec_id="e1", user_id="u", node_exec_id=node_exec_id, node_id=f"n{node_exec_id}",
        block_id="calculator", status=status,
    )  # fmt: skip


def piped(clock: FakeClock) -> tuple[PipedLines, io.StringIO]:
    out = io.StringIO()
    return PipedLines(Board("e1"), out, interval=1.0, clock=clock), out


def test_node_events_within_a_second_make_one_line_and_each_run_change_its_own() -> None:
    clock = FakeClock()
    lines, out = piped(clock)
    lines.add(run_event(S.QUEUED))
    lines.add(run_event(S.RUNNING))
    for node_exec_id in range(1, 1001):  # 3,000 events in 0.3 s
        for status in (S.QUEUED, S.RUNNING, S.COMPLETED):
            lines.add(node_event(node_exec_id, status))
        clock.now += 0.0003
    lines.add(run_event(S.COMPLETED))

    printed = out.getvalue().splitlines()
    assert len(printed) == 4
    assert "execution e1 QUEUED | " in printed[0]
    assert "execution e1 RUNNING | " in printed[1]
    assert "n1000 (calculator) #1000 COMPLETED | done 1000, running 0" in printed[2]
    assert printed[2].endswith("(+2999 more events)")
    assert "execution e1 COMPLETED | done 1000" in printed[3]


def test_a_node_event_is_printed_at_once_a_second_after_the_last_line() -> None:
    clock = FakeClock()
    lines, out = piped(clock)
    lines.add(run_event(S.RUNNING))
    clock.now = 1.0
    lines.add(node_event(1, S.RUNNING))
    last = out.getvalue().splitlines()[-1]
    assert last.endswith("n1 (calculator) #1 RUNNING | done 0, running 1, queued 0, failed 0")


def test_a_held_event_is_printed_once_due_even_if_no_other_event_comes() -> None:
    clock = FakeClock()
    lines, out = piped(clock)
    lines.add(run_event(S.RUNNING))
    lines.add(node_event(1, S.QUEUED))
    lines.add(node_event(1, S.RUNNING))
    lines.print_due()
    assert len(out.getvalue().splitlines()) == 1  # not yet due
    clock.now = 1.5
    lines.print_due()
    lines.print_due()
    printed = out.getvalue().splitlines()
    assert len(printed) == 2
    assert "n1 (calculator) #1 RUNNING | " in printed[1] and printed[1].endswith("(+1 more events)")
