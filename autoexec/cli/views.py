"""Plain-text views of executions for the terminal: the list of runs, one run's summary, and the
nodes that never ran. Pure functions of API views; the CLI prints what they return."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from autoexec.api import (
    CreditTransactionView,
    ExecutionRow,
    ExecutionView,
    NeverRanView,
    NodeExecutionView,
)
from autoexec.statuses import ExecutionStatus

OUTPUT_WIDTH = 100
NO_VALUE = "-"
LABEL_WIDTH = 10
TABLE_HEADER = ("ID", "GRAPH", "STATUS", "STARTED", "DURATION", "NODES")
NODE_TABLE_HEADER = ("ID", "NODE", "BLOCK", "STATUS", "WALLTIME", "CPUTIME", "INPUT", "OUTPUT")
CREDITS_TABLE_HEADER = ("TIME", "KIND", "AMOUNT", "BALANCE AFTER", "REASON")
# ``autoexec status`` shows this many outputs, failed nodes and nodes that never ran, and
# twice as many node executions: at most 40 lines whatever the run's size.
SUMMARY_ROWS = 4
MORE_HINT = "(--nodes for all)"
INDENT = "  "  # of the lines of a section
ERROR_CHARS = 300  # an error's line in the summary is cut there (a few lines of a terminal)
FAILED_STATUSES = (ExecutionStatus.FAILED, ExecutionStatus.TERMINATED)


def format_time(moment: datetime | None) -> str:
    if moment is None:
        return NO_VALUE
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_seconds(seconds: float) -> str:
    """``0.42s``, ``12.3s``, ``4m 05s``, ``2h 03m``."""
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_stat_seconds(seconds: float) -> str:
    """A measured time: ``3.4ms`` under a second, else as :func:`format_seconds`."""
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else format_seconds(seconds)


def format_size(size: int) -> str:
    """``40 B``, ``1.5 KiB``, ``2.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    return f"{size / 1024:.1f} KiB" if size < 1024**2 else f"{size / 1024**2:.1f} MiB"


def format_duration(started: datetime | None, ended: datetime | None, now: datetime) -> str:
    """The run time, or the time so far for a run that has not ended."""
    if started is None:
        return NO_VALUE
    if ended is None:
        return f"{format_seconds((now - started).total_seconds())} so far"
    return format_seconds((ended - started).total_seconds())


def cut(text: str, width: int) -> str:
    """``text`` on one line of at most ``width`` characters, ending in "…" if cut."""
    return clip(" ".join(text.split()), width)


def clip(line: str, width: int) -> str:
    """``line`` as it is if it has at most ``width`` characters, else cut and ending in "…"."""
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


# --- autoexec executions ----------------------------------------------------------------------


def executions_table(rows: Sequence[ExecutionRow], now: datetime) -> list[str]:
    """Aligned columns, one line per execution, under a header line."""
    return aligned([TABLE_HEADER, *(_row_cells(row, now) for row in rows)])


def aligned(cells: Sequence[Sequence[str]]) -> list[str]:
    """Rows of cells in left-aligned columns two spaces apart."""
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    ]


def _row_cells(row: ExecutionRow, now: datetime) -> tuple[str, ...]:
    return (
        row.id,
        f"{row.graph_name} v{row.graph_version}",
        row.status.value,
        format_time(row.started_at),
        format_duration(row.started_at, row.ended_at, now),
        str(row.node_executions),
    )


# --- autoexec status ---------------------------------------------------------------------------


def execution_summary(
    view: ExecutionView,
    now: datetime,
    width: int = OUTPUT_WIDTH,
    metered: bool = False,
    rows: int | None = SUMMARY_ROWS,
) -> list[str]:
    """What a user asks first about a run: status, times, node counts, credits, stats,
    outputs, errors, what never ran, then the node executions (failed first) with their stats.
    Each list shows at most ``rows`` items (the node executions twice as many) and then
    "… N more", so the summary stays short whatever the run's size; ``rows=None`` shows all.
    Credits are shown when ``metered`` (metering is on) or the run has a budget or spent any."""
    failed_first = sorted(view.node_executions, key=lambda node: not _failed(node))
    node_rows = None if rows is None else 2 * rows
    inner = width - len(INDENT)  # the width of a section's indented lines
    return [
        *_header(view, now, metered),
        *graph_stats_lines(view.stats),
        *_outputs(view.outputs, inner, rows),
        *_errors(view, rows),
        *_section(
            "never ran", _at_most(rows, [cut(never_ran_line(n), inner) for n in view.never_ran])
        ),
        *_section("node executions", node_stats_table(failed_first, metered, node_rows, inner)),
    ]


def execution_json(view: ExecutionView) -> str:
    """The whole execution, every node execution included, as indented JSON."""
    return json.dumps(view.model_dump(mode="json"), indent=2, ensure_ascii=False)


def _failed(node: NodeExecutionView) -> bool:
    return node.status in FAILED_STATUSES


def _at_most(rows: int | None, lines: list[str]) -> list[str]:
    """The first ``rows`` lines, then ``… N more (--nodes for all)`` for the rest."""
    if rows is None or len(lines) <= rows:
        return lines
    return [*lines[:rows], f"… {len(lines) - rows} more {MORE_HINT}"]


def _header(view: ExecutionView, now: datetime, metered: bool) -> list[str]:
    fields = {
        "execution": view.id,
        "graph": f"{view.graph_name} v{view.graph_version} ({view.graph_id})",
        "status": view.status.value,
        "created": format_time(view.created_at),
        "started": format_time(view.started_at),
        "ended": format_time(view.ended_at),
        "duration": format_duration(view.started_at, view.ended_at, now),
        "nodes": node_counts(view.node_executions),
    }
    if metered or view.credits_spent or view.credit_budget is not None:
        fields["credits"] = credits_line(view.credits_spent, view.credit_budget)
    return [f"{label.ljust(LABEL_WIDTH)}{value}" for label, value in fields.items()]


def credits_line(spent: int, budget: int | None) -> str:
    """``12 spent`` or ``12 spent of a budget of 50``."""
    return f"{spent} spent" + ("" if budget is None else f" of a budget of {budget}")


def node_counts(nodes: Sequence[NodeExecutionView]) -> str:
    """``5 node executions: completed 4, failed 1`` (statuses in alphabetical order)."""
    counts = Counter(node.status.value.lower() for node in nodes)
    by_status = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
    return f"{len(nodes)} node executions" + (f": {by_status}" if by_status else "")


def graph_stats_lines(stats: dict[str, Any]) -> list[str]:
    """The stats of an ended run (SPEC §11) on one line; none before it ends."""
    if "walltime" not in stats:
        return []
    shown = ", ".join(
        [
            f"walltime {format_stat_seconds(stats['walltime'])}",
            f"cputime {format_stat_seconds(stats['cputime'])}",
            f"nodes walltime {format_stat_seconds(stats['nodes_walltime'])}",
            f"nodes cputime {format_stat_seconds(stats['nodes_cputime'])}",
            f"nodes run {stats['node_count']}",
            f"failed {stats['node_error_count']}",
            f"cost {stats['cost']}",
        ]
    )
    return [f"{'stats'.ljust(LABEL_WIDTH)}{shown}"]


def node_stats_table(
    nodes: Sequence[NodeExecutionView],
    metered: bool = False,
    rows: int | None = None,
    width: int | None = None,
) -> list[str]:
    """Each node execution's time and sizes, as its end recorded them (``-`` before), and
    the credits charged for it when ``metered`` or any node was charged; the first ``rows``
    of them (then "… N more") with lines cut to ``width``."""
    if not nodes:
        return []
    with_cost = metered or any(node_cost(node) for node in nodes)
    header = (*NODE_TABLE_HEADER, "COST") if with_cost else NODE_TABLE_HEADER
    shown = nodes if rows is None else nodes[:rows]
    table = aligned([header, *(_node_cells(node, with_cost) for node in shown)])
    if width is not None:
        table = [clip(line, width) for line in table]
    hidden = len(nodes) - len(shown)
    return [*table, f"… {hidden} more {MORE_HINT}"] if hidden else table


def node_cost(node: NodeExecutionView) -> int:
    """The credits charged for a node execution: its run cost and what its run used (its
    end records them)."""
    return int(node.stats.get("cost", 0))


def _node_cells(node: NodeExecutionView, with_cost: bool) -> tuple[str, ...]:
    stats = node.stats
    measured = "walltime" in stats
    cells = (
        str(node.id),
        node.node_id,
        node.block_id,
        node.status.value,
        format_stat_seconds(stats["walltime"]) if measured else NO_VALUE,
        format_stat_seconds(stats["cputime"]) if measured else NO_VALUE,
        format_size(stats["input_size"]) if measured else NO_VALUE,
        format_size(stats["output_size"]) if measured else NO_VALUE,
    )
    if not with_cost:
        return cells
    return (*cells, str(node_cost(node)) if measured or "cost" in stats else NO_VALUE)


def _outputs(outputs: dict[str, list[Any]], width: int, rows: int | None) -> list[str]:
    lines = [cut(f"{name}: {_json(values)}", width) for name, values in outputs.items()]
    return _section("outputs", _at_most(rows, lines) or ["(none)"])


def _errors(view: ExecutionView, rows: int | None) -> list[str]:
    """The run's error and each failed node's, on one line each: cut at ``ERROR_CHARS``, not
    at the width, because the reason is what the user came for."""
    limit = ERROR_CHARS if rows is not None else None
    lines = [f"{'error'.ljust(LABEL_WIDTH)}{_one_line(view.error, limit)}"] if view.error else []
    failed = [
        _one_line(
            f"{node.node_id} ({node.block_id}, node execution {node.id}): {node.error}", limit
        )
        for node in view.node_executions
        if node.status is ExecutionStatus.FAILED
    ]
    return lines + _section("failed nodes", _at_most(rows, failed))


def _one_line(text: str, limit: int | None) -> str:
    return " ".join(text.split()) if limit is None else cut(text, limit)


def _section(title: str, lines: list[str]) -> list[str]:
    return [title, *(f"{INDENT}{line}" for line in lines)] if lines else []


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


# --- autoexec credits history ------------------------------------------------------------------


def credit_history_table(rows: Sequence[CreditTransactionView]) -> list[str]:
    """One line per ledger row under a header: a charge's amount is negative, a top-up's
    positive (``+500``)."""
    return aligned([CREDITS_TABLE_HEADER, *(_credit_cells(row) for row in rows)])


def _credit_cells(row: CreditTransactionView) -> tuple[str, ...]:
    return (
        format_time(row.created_at),
        row.kind,
        f"{row.amount:+d}",
        str(row.balance_after),
        row.reason or NO_VALUE,
    )


# --- the end of a run --------------------------------------------------------------------------


def never_ran_line(item: NeverRanView) -> str:
    where = f"{item.block_id}, node execution {item.node_exec_id}"
    if item.node_exec_id is None:
        where = item.block_id
    return f"{item.node_id} ({where}): {item.reason}"


def never_ran_lines(view: ExecutionView) -> list[str]:
    """``never ran: <node> (<block>…): <reason>`` for each node of an ended run that did not
    run; none when every node ran."""
    return [f"never ran: {never_ran_line(item)}" for item in view.never_ran]
