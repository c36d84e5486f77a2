"""The terminal views of executions: times, durations, the runs table, one run's summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from autoexec.api import (
    CreditTransactionView,
    ExecutionRow,
    ExecutionView,
    NeverRanView,
    NodeExecutionView,
)
from autoexec.cli.views import (
    credit_history_table,
    credits_line,
    cut,
    execution_json,
    execution_summary,
    executions_table,
    format_duration,
    format_seconds,
    format_size,
    format_stat_seconds,
    format_time,
    graph_stats_lines,
    never_ran_lines,
    node_counts,
    node_stats_table,
)
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus
T0 = datetime(2026, 12, 1, 6, 50, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def node(
    node_exec_id: int,
    node_id: str,
    status: S,
    error: str | None = None,
    stats: dict[str, Any] | None = None,
) -> NodeExecutionView:
    return NodeExecutionView(
        id=node_exec_id, node_id=node_id, block_id="calculator", status=status, inputs={},
        outputs={}, stats=stats or {}, error=error, attempt=1, created_at=T0, queued_at=None,
        started_at=None, ended_at=None,
    )  # fmt: skip


def execution(**fields: Any) -> ExecutionView:
    base: dict[str, Any] = {
        "id": "e1", "graph_id": "g1", "graph_version": 2, "graph_name": "sums",
        "user_id": "u", "status": S.COMPLETED, "inputs": {}, "outputs": {}, "stats": {},
        "error": None, "parent_execution_id": None, "created_at": T0, "started_at": at(1),
        "ended_at": at(3.5), "node_executions": [], "never_ran": [],
    }  # fmt: skip
    return ExecutionView(**{**base, **fields})


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.123, "0.12s"), (9.994, "9.99s"), (12.34, "12.3s"), (245, "4m 05s"), (7390, "2h 03m")],
)
def test_format_seconds(seconds: float, shown: str) -> None:
    assert format_seconds(seconds) == shown


def test_format_time_is_utc_to_the_second_and_a_dash_when_missing() -> None:
    paris = timezone(timedelta(hours=1))
    assert format_time(datetime(2026, 12, 1, 7, 50, 1, 999, tzinfo=paris)) == (
        "2026-12-01 06:50:01 UTC"
    )
    assert format_time(None) == "-"


def test_format_duration_of_ended_running_and_queued_runs() -> None:
    assert format_duration(at(0), at(2.5), now=at(100)) == "2.50s"
    assert format_duration(at(0), None, now=at(75)) == "1m 15s so far"
    assert format_duration(None, None, now=at(75)) == "-"


def test_cut_keeps_short_text_and_marks_cut_text() -> None:
    assert cut("a: [1,\n 2]", 20) == "a: [1, 2]"
    assert cut("x" * 30, 10) == "x" * 9 + "…"


def test_executions_table_aligns_columns_under_a_header() -> None:
    rows = [
        ExecutionRow(
            id="e2", graph_id="g", graph_version=3, graph_name="long graph name",
            status=S.RUNNING, created_at=at(10), started_at=at(10), ended_at=None,
            node_executions=12,
        ),
        ExecutionRow(
            id="e1", graph_id="g", graph_version=1, graph_name="short", status=S.QUEUED,
            created_at=T0, started_at=None, ended_at=None, node_executions=0,
        ),
    ]  # fmt: skip
    assert executions_table(rows, now=at(40)) == [
        "ID  GRAPH               STATUS   STARTED                  DURATION      NODES",
        "e2  long graph name v3  RUNNING  2026-12-01 06:50:11 UTC  30.0s so far  12",
        "e1  short v1            QUEUED   -                        -             0",
    ]


def test_node_counts_by_status() -> None:
    nodes = [node(1, "a", S.COMPLETED), node(2, "b", S.FAILED), node(3, "c", S.COMPLETED)]
    assert node_counts(nodes) == "3 node executions: completed 2, failed 1"
    assert node_counts([]) == "0 node executions"


def test_summary_of_a_failed_run_shows_errors_cut_outputs_and_what_never_ran() -> None:
    view = execution(
        status=S.FAILED,
        error="boom: fix b",
        outputs={"total": [1], "long": ["y" * 200]},
        node_executions=[node(1, "a", S.COMPLETED), node(2, "b", S.FAILED, "boom: fix b")],
        never_ran=[
            NeverRanView(node_id="c", block_id="calculator", node_exec_id=3, reason="invalid a"),
            NeverRanView(node_id="out", block_id="agent_output", node_exec_id=None,
                         reason="no input arrived"),
        ],
    )  # fmt: skip
    assert execution_summary(view, now=at(60), width=70) == [
        "execution e1",
        "graph     sums v2 (g1)",
        "status    FAILED",
        "created   2026-12-01 06:50:01 UTC",
        "started   2026-12-01 06:50:02 UTC",
        "ended     2026-12-01 06:50:04 UTC",
        "duration  2.50s",
        "nodes     2 node executions: completed 1, failed 1",
        "outputs",
        "  total: [1]",
        '  long: ["' + "y" * 59 + "…",
        "error     boom: fix b",
        "failed nodes",
        "  b (calculator, node execution 2): boom: fix b",
        "never ran",
        "  c (calculator, node execution 3): invalid a",
        "  out (agent_output): no input arrived",
        "node executions",
        "  ID  NODE  BLOCK       STATUS     WALLTIME  CPUTIME  INPUT  OUTPUT",
        "  2   b     calculator  FAILED     -         -        -      -",
        "  1   a     calculator  COMPLETED  -         -        -      -",
    ]


def test_summary_of_a_clean_run_has_no_error_or_never_ran_sections() -> None:
    lines = execution_summary(execution(node_executions=[node(1, "a", S.COMPLETED)]), now=at(9))
    assert lines[-5:-3] == ["outputs", "  (none)"]
    assert lines[-3] == "node executions"
    assert never_ran_lines(execution()) == []


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.0034, "3.4ms"), (0.99949, "999.5ms"), (1.0, "1.00s"), (75, "1m 15s")]
)
def test_format_stat_seconds(seconds: float, shown: str) -> None:
    assert format_stat_seconds(seconds) == shown


@pytest.mark.parametrize(
    ("size", "shown"), [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024**2, "3.0 MiB")]
)
def test_format_size(size: int, shown: str) -> None:
    assert format_size(size) == shown


GRAPH_STATS = {
    "walltime": 2.5, "cputime": 0.012, "nodes_walltime": 0.3, "nodes_cputime": 0.012,
    "node_count": 4, "node_error_count": 1, "cost": 0, "error": "boom",
}  # fmt: skip


def test_graph_stats_are_one_line_once_the_run_ended() -> None:
    assert graph_stats_lines(GRAPH_STATS) == [
        "stats     walltime 2.50s, cputime 12.0ms, nodes walltime 300.0ms, "
        "nodes cputime 12.0ms, nodes run 4, failed 1, cost 0"
    ]
    assert graph_stats_lines({}) == []


def test_node_stats_table_shows_times_and_sizes_of_ended_nodes() -> None:
    ended = {"walltime": 0.0021, "cputime": 0.0019, "input_size": 40, "output_size": 2048}
    nodes = [node(1, "add", S.COMPLETED, stats=ended), node(2, "sum", S.QUEUED)]
    assert node_stats_table(nodes) == [
        "ID  NODE  BLOCK       STATUS     WALLTIME  CPUTIME  INPUT  OUTPUT",
        "1   add   calculator  COMPLETED  2.1ms     1.9ms    40 B   2.0 KiB",
        "2   sum   calculator  QUEUED     -         -        -      -",
    ]
    assert node_stats_table([]) == []


ENDED = {"walltime": 0.0021, "cputime": 0.0019, "input_size": 40, "output_size": 1}


def test_node_stats_table_shows_each_nodes_cost_when_metered() -> None:
    nodes = [
        node(1, "add", S.COMPLETED, stats={**ENDED, "cost": 3}),
        node(2, "x", S.COMPLETED, stats=ENDED),
        node(3, "sum", S.QUEUED),
    ]
    assert node_stats_table(nodes, metered=True) == [
        "ID  NODE  BLOCK       STATUS     WALLTIME  CPUTIME  INPUT  OUTPUT  COST",
        "1   add   calculator  COMPLETED  2.1ms     1.9ms    40 B   1 B     3",
        "2   x     calculator  COMPLETED  2.1ms     1.9ms    40 B   1 B     0",
        "3   sum   calculator  QUEUED     -         -        -      -       -",
    ]


def test_node_stats_table_shows_costs_when_a_node_has_one_even_unmetered() -> None:
    charged = [node(1, "add", S.COMPLETED, stats={**ENDED, "cost": 2})]
    assert node_stats_table(charged)[0].endswith("OUTPUT  COST")
    free = [node(1, "add", S.COMPLETED, stats={**ENDED, "cost": 0})]
    assert node_stats_table(free)[0].endswith("OUTPUT")


def test_summary_shows_the_credits_spent_and_the_budget() -> None:
    lines = execution_summary(execution(credits_spent=3, credit_budget=10), now=at(9))
    assert lines[8] == "credits   3 spent of a budget of 10"
    assert credits_line(0, None) == "0 spent"
    assert credits_line(4, 0) == "4 spent of a budget of 0"


def test_summary_shows_credits_when_metered_or_when_any_were_spent_or_budgeted() -> None:
    def credit_lines(view: ExecutionView, metered: bool) -> list[str]:
        lines = execution_summary(view, now=at(9), metered=metered)
        return [line for line in lines if line.startswith("credits")]

    assert credit_lines(execution(), metered=False) == []
    assert credit_lines(execution(), metered=True) == ["credits   0 spent"]
    assert credit_lines(execution(credits_spent=2), metered=False) == ["credits   2 spent"]
    assert credit_lines(execution(credit_budget=5), metered=False) == [
        "credits   0 spent of a budget of 5"
    ]


def transaction(
    row_id: int, kind: str, amount: int, after: int, reason: str
) -> CreditTransactionView:
    return CreditTransactionView(
        id=row_id, kind=kind, amount=amount, balance_after=after, reason=reason, details={},
        graph_exec_id=None, node_exec_id=None, created_at=at(row_id),
    )  # fmt: skip


def test_credit_history_table_signs_amounts_under_a_header() -> None:
    rows = [
        transaction(2, "CHARGE", -2, 98, "print run (node log)"),
        transaction(1, "TOP_UP", 100, 100, "top-up"),
    ]
    assert credit_history_table(rows) == [
        "TIME                     KIND    AMOUNT  BALANCE AFTER  REASON",
        "2026-12-01 06:50:03 UTC  CHARGE  -2      98             print run (node log)",
        "2026-12-01 06:50:02 UTC  TOP_UP  +100    100            top-up",
    ]


def big_failed_run(nodes: int = 1000, failed: int = 7) -> ExecutionView:
    """A run of ``nodes`` node executions whose last ``failed`` failed, with many outputs and
    nodes that never ran, and long texts everywhere."""
    statuses = [S.COMPLETED] * (nodes - failed) + [S.FAILED] * failed
    return execution(
        status=S.FAILED,
        error="x" * 300,
        credits_spent=5,
        stats={"walltime": 1, "cputime": 1, "nodes_walltime": 1, "nodes_cputime": 1,
               "node_count": nodes, "node_error_count": failed, "cost": 5},
        outputs={f"out{i}": ["v" * 500] for i in range(30)},
        node_executions=[
            node(i, f"n{i}", status, error="boom " * 100 if status is S.FAILED else None)
            for i, status in enumerate(statuses, 1)
        ],
        never_ran=[
            NeverRanView(node_id=f"late{i}", block_id="calculator", node_exec_id=None,
                         reason="no input arrived")
            for i in range(20)
        ],
    )  # fmt: skip


def test_the_summary_of_a_huge_run_fits_in_40_lines_of_the_width() -> None:
    lines = execution_summary(big_failed_run(), now=at(9), width=80, metered=True)
    assert len(lines) <= 40
    errors = lines[lines.index("failed nodes") - 1 : lines.index("never ran")]
    assert max(len(line) for line in errors) <= 10 + 300  # the reason matters more than width
    too_long = [line for line in lines if len(line) > 80 and line not in errors]
    assert too_long == [lines[9]]  # the stats line is short enough to keep whole
    assert lines[9].startswith("stats")
    assert "nodes     1000 node executions: completed 993, failed 7" in lines


def test_the_summary_lists_failed_node_executions_first_then_says_how_many_more() -> None:
    lines = execution_summary(big_failed_run(), now=at(9))
    table = lines[lines.index("node executions") + 2 :]
    assert [row.split()[3] for row in table[:7]] == ["FAILED"] * 7
    assert table[-1] == "  … 992 more (--nodes for all)"
    assert "  … 26 more (--nodes for all)" in lines  # the outputs
    assert "  … 3 more (--nodes for all)" in lines  # the failed nodes' errors


def test_the_summary_with_all_rows_lists_every_node_execution_and_output() -> None:
    lines = execution_summary(big_failed_run(), now=at(9), rows=None)
    table = lines[lines.index("node executions") + 2 :]
    assert len(table) == 1000
    assert sorted(int(row.split()[0]) for row in table) == list(range(1, 1001))
    assert sum(line.startswith("  out") for line in lines) == 30
    assert not any("more (--nodes for all)" in line for line in lines)


def test_the_json_of_an_execution_holds_every_node_execution() -> None:
    view = big_failed_run()
    assert ExecutionView.model_validate(json.loads(execution_json(view))) == view
