"""Live view of an execution, fed by its events (``api.subscribe``): on a terminal, a progress
line over a table of the running and most recent node executions; else a line per change of the
run's status and at most one line a second for the rest (a 1,000-node run stays readable)."""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from autoexec import api
from autoexec.api import ExecutionView
from autoexec.cli.views import NO_VALUE, cut, format_seconds
from autoexec.observability.live import Event, GraphEvent, NodeEvent
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus
TABLE_ROWS = 15
OUTPUTS_WIDTH = 40
# The four counts of the progress line, by node execution status.
COUNTED = {
    S.COMPLETED: "done", S.RUNNING: "running", S.REVIEW: "running", S.WAITING: "running",
    S.QUEUED: "queued", S.INCOMPLETE: "queued", S.FAILED: "failed", S.TERMINATED: "failed",
}  # fmt: skip
COUNTS = ("done", "running", "queued", "failed")
PIPED_INTERVAL = 1.0  # seconds between two lines into a pipe, but for the run's own changes


class Board:
    """What the view shows, updated one event at a time."""

    def __init__(self, graph_exec_id: str) -> None:
        self.graph_exec_id = graph_exec_id
        self.status: ExecutionStatus | None = None
        self.started = time.monotonic()
        self.ended: float | None = None
        self.statuses: dict[int, ExecutionStatus] = {}
        self.counts: Counter[str] = Counter()
        self.ended_live = 0  # node executions that ended while watching, for the rate
        self.running: dict[int, NodeEvent] = {}
        self.recent: deque[NodeEvent] = deque(maxlen=TABLE_ROWS)

    def update(self, event: Event) -> None:
        if isinstance(event, GraphEvent):
            self.status = event.status
            if event.is_final:
                self.ended = time.monotonic()
            return
        self._count(event)
        self.running.pop(event.node_exec_id, None)
        if COUNTED[event.status] == "running":
            self.running[event.node_exec_id] = event
        elif event.status in (S.COMPLETED, S.FAILED, S.TERMINATED):
            self.recent.append(event)

    def _count(self, event: NodeEvent) -> None:
        before = self.statuses.get(event.node_exec_id)
        if before is not None:
            self.counts[COUNTED[before]] -= 1
        self.statuses[event.node_exec_id] = event.status
        self.counts[COUNTED[event.status]] += 1
        ended = before != event.status and COUNTED[event.status] in ("done", "failed")
        self.ended_live += ended and not event.replayed

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def counts_text(self) -> str:
        return ", ".join(f"{name} {self.counts[name]}" for name in COUNTS)

    def progress_line(self) -> str:
        rate = self.ended_live / self.elapsed if self.elapsed > 0 else 0.0
        status = self.status.value if self.status else NO_VALUE
        return (
            f"{status} · {self.counts_text()} · {format_seconds(self.elapsed)} · {rate:.1f} nodes/s"
        )

    def rows(self) -> list[NodeEvent]:
        """The running node executions (latest first), then the most recently ended."""
        running = list(self.running.values())[::-1][:TABLE_ROWS]
        return running + list(self.recent)[::-1][: TABLE_ROWS - len(running)]

    def __rich__(self) -> Group:
        table = Table(title=f"execution {self.graph_exec_id}", title_justify="left")
        for column in ("node", "block", "status", "outputs", "duration"):
            table.add_column(column, no_wrap=True)
        now = time.time()
        for event in self.rows():
            table.add_row(
                event.node_id, event.block_id, event.status.value, outputs_text(event),
                duration_text(event, now),
            )  # fmt: skip
        return Group(Text(self.progress_line(), style="bold"), table)


def outputs_text(event: NodeEvent, width: int = OUTPUTS_WIDTH) -> str:
    """``pin=last value`` for each pin, with ``[n]`` when the pin yielded n > 1 values."""
    parts = []
    for pin, values in event.outputs.items():
        count = f"[{len(values)}]" if len(values) > 1 else ""
        parts.append(f"{pin}{count}={_json(values[-1])}")
    return cut(" ".join(parts), width) if parts else ""


def duration_text(event: NodeEvent, now: float) -> str:
    if event.started_at is None:
        return NO_VALUE
    return format_seconds(max((event.ended_at or now) - event.started_at, 0.0))


def event_line(board: Board, event: Event, others: int = 0) -> str:
    """One event as one line, with the counts after it and how many ``others`` events it
    stands for."""
    if isinstance(event, GraphEvent):
        what = f"execution {event.graph_exec_id} {event.status.value}"
        if event.error:
            what += f": {event.error}"
    else:
        what = f"{event.node_id} ({event.block_id}) #{event.node_exec_id} {event.status.value}"
        what += "".join(f" {o.pin}={cut(_json(o.value), OUTPUTS_WIDTH)}" for o in event.new_outputs)
    more = f" (+{others} more events)" if others else ""
    return f"{format_seconds(board.elapsed):>7}  {what} | {board.counts_text()}{more}"


class PipedLines:
    """Progress into a pipe: a line at once for each change of the run's status; for the other
    events at most one line per ``interval``, the latest event's with the counts of all. An
    event held back is printed once the interval has passed (``print_due``), even if no other
    event comes. Thread-safe: a timer may call ``print_due`` while events come."""

    def __init__(
        self,
        board: Board,
        out: TextIO,
        interval: float = PIPED_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board, self.out, self.interval, self.clock = board, out, interval, clock
        self.lock = threading.Lock()
        self.held: Event | None = None
        self.held_count = 0
        self.printed_at = -math.inf

    def add(self, event: Event) -> None:
        with self.lock:
            run_changed = isinstance(event, GraphEvent) and event.status is not self.board.status
            self.board.update(event)
            if run_changed:
                self._print_held()
                self._print(event)
                return
            self.held, self.held_count = event, self.held_count + 1
            self._print_held_if_due()

    def print_due(self) -> None:
        with self.lock:
            self._print_held_if_due()

    def print_held(self) -> None:
        with self.lock:
            self._print_held()

    def _print_held_if_due(self) -> None:
        if self.clock() - self.printed_at >= self.interval:
            self._print_held()

    def _print_held(self) -> None:
        if self.held is not None:
            self._print(self.held, self.held_count - 1)
            self.held, self.held_count = None, 0

    def _print(self, event: Event, others: int = 0) -> None:
        print(event_line(self.board, event, others), file=self.out, flush=True)
        self.printed_at = self.clock()


@contextmanager
def printing_held_lines(lines: PipedLines) -> Iterator[None]:
    """A timer that prints the event ``lines`` holds back once it is due, while events are
    awaited."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(lines.interval / 4):
            lines.print_due()

    timer = threading.Thread(target=tick, name="autoexec-progress", daemon=True)
    timer.start()
    try:
        yield
    finally:
        stop.set()
        timer.join()
    lines.print_held()


def _json(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def show(events: Iterable[Event], board: Board, out: TextIO) -> None:
    """Show ``events`` as they come: live on a terminal, else as :class:`PipedLines`."""
    if out.isatty():
        with Live(board, console=Console(file=out), refresh_per_second=8):
            for event in events:
                board.update(event)
        return
    lines = PipedLines(board, out)
    with printing_held_lines(lines):
        for event in events:
            lines.add(event)


def watch(
    graph_exec_id: str,
    user_id: str,
    out: TextIO,
    timeout: float | None = None,
    engine_api: Any = api,
) -> Board:
    """Show an execution until its final event; the board as it ended. ``engine_api`` is
    ``autoexec.api`` or the embedded engine's, served by another process."""
    board = Board(graph_exec_id)
    with engine_api.subscribe(graph_exec_id, user_id, timeout=timeout) as events:
        show(events, board, out)
    return board


def follow(
    graph_exec_id: str, user_id: str, timeout: float, engine_api: Any = api
) -> ExecutionView:
    """Show progress on stderr until the execution ends (or ``timeout`` passes:
    ``TimeoutError``); the ended execution."""
    watch(graph_exec_id, user_id, sys.stderr, timeout, engine_api)
    result: ExecutionView = engine_api.get_execution(graph_exec_id, user_id)
    return result
