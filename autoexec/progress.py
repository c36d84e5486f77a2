"""Live progress of an execution in the terminal: a rich display on a TTY, plain lines else."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator

from rich.console import Console
from rich.live import Live
from rich.table import Table

from autoexec import api
from autoexec.api import ExecutionView

REFRESH_SECONDS = 0.2


def status_counts(view: ExecutionView) -> Counter[str]:
    return Counter(node.status.value for node in view.node_executions)


def summary_line(view: ExecutionView) -> str:
    counts = status_counts(view)
    parts = ", ".join(f"{status.lower()} {n}" for status, n in sorted(counts.items()))
    return f"{view.status.value}: {len(view.node_executions)} node executions ({parts})"


def render(view: ExecutionView) -> Table:
    table = Table(title=f"execution {view.id} — {view.status.value}")
    table.add_column("node")
    table.add_column("block")
    table.add_column("status")
    for node in view.node_executions[-20:]:
        table.add_row(node.node_id, node.block_id, node.status.value)
    table.caption = summary_line(view)
    return table


def follow(graph_exec_id: str, user_id: str, timeout: float) -> ExecutionView:
    """Show progress until the execution ends or ``timeout`` passes (``TimeoutError``)."""
    if sys.stderr.isatty():
        return _follow_live(graph_exec_id, user_id, timeout)
    return _follow_plain(graph_exec_id, user_id, timeout)


def _views(graph_exec_id: str, user_id: str, timeout: float) -> Iterator[ExecutionView]:
    deadline = time.monotonic() + timeout
    while True:
        view = api.get_execution(graph_exec_id, user_id)
        yield view
        if view.is_finished:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"execution {graph_exec_id} still {view.status.value}")
        time.sleep(REFRESH_SECONDS)


def _follow_live(graph_exec_id: str, user_id: str, timeout: float) -> ExecutionView:
    console = Console(stderr=True)
    view = api.get_execution(graph_exec_id, user_id)
    with Live(render(view), console=console, refresh_per_second=8) as live:
        for view in _views(graph_exec_id, user_id, timeout):
            live.update(render(view))
    return view


def _follow_plain(graph_exec_id: str, user_id: str, timeout: float) -> ExecutionView:
    last = ""
    view = None
    for view in _views(graph_exec_id, user_id, timeout):
        line = summary_line(view)
        if line != last:
            print(line, file=sys.stderr, flush=True)
            last = line
    assert view is not None
    return view
