"""Bounds on a run that would never end: AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN and the run's
own ``max_run_seconds`` (counted from when it started RUNNING).

Every orchestrator step checks both. So that the deadline fires even when nothing else
happens (a node blocking for an hour), a step that finds no timer pending schedules one more
step for the deadline; a timer waits at most ``MAX_TIMER_SECONDS`` and re-arms, so no message
sits unacknowledged past the broker's consumer timeout.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Protocol

from autoexec.clock import utcnow
from autoexec.engine.cancellation import Stop
from autoexec.engine.context import Engine
from autoexec.errors import InputValidationError
from autoexec.statuses import ExecutionStatus
from autoexec.store.executions import ExecutionState

MAX_TIMER_SECONDS = 300.0
# Ten years: a longer deadline is no deadline, and would overflow a timestamp.
LONGEST_RUN_SECONDS = 10 * 365 * 24 * 3600
# The timer step runs this much after the deadline, so it never finds it a hair early.
TIMER_SLACK_SECONDS = 0.05


def check_max_run_seconds(value: object) -> float | None:
    """The run deadline a caller asked for, or an error naming the bad value."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InputValidationError(
            f"max_run_seconds must be a number of seconds greater than 0, got {value!r}"
        )
    if not math.isfinite(value) or value > LONGEST_RUN_SECONDS:
        raise InputValidationError(
            f"max_run_seconds must be at most {LONGEST_RUN_SECONDS} (ten years), got {value!r}"
        )
    return float(value)


class RunClock(Protocol):
    """What a deadline is computed from (a graph execution, or a claim's view of it)."""

    @property
    def max_run_seconds(self) -> float | None: ...

    @property
    def started_at(self) -> datetime | None: ...


def deadline_of(execution: RunClock) -> datetime | None:
    if execution.max_run_seconds is None or execution.started_at is None:
        return None
    return execution.started_at + timedelta(seconds=execution.max_run_seconds)


def limit_stop(
    execution: ExecutionState, max_node_executions: int, now: datetime | None = None
) -> Stop | None:
    """Why a RUNNING execution must stop now, if it is past one of its limits."""
    if execution.node_execution_count > max_node_executions:
        return Stop(
            ExecutionStatus.FAILED,
            f"stopped after {max_node_executions} node executions: the limit is "
            f"AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN={max_node_executions}",
        )
    deadline = deadline_of(execution)
    if deadline is not None and (now or utcnow()) >= deadline:
        seconds = f"{execution.max_run_seconds:g}"
        return Stop(ExecutionStatus.FAILED, f"stopped: ran longer than max_run_seconds={seconds}")
    return None


def arm_deadline_timer(engine: Engine, graph_exec_id: str, deadline: datetime | None) -> None:
    """Schedule a step for the deadline unless one is pending (called under the graph lock)."""
    if deadline is None or engine.coordinator.deadline_timer_pending(graph_exec_id):
        return
    wait = min(max((deadline - utcnow()).total_seconds(), 0.0), MAX_TIMER_SECONDS)
    # Sent before it is noted: a crash in between costs one extra step, never a lost timer.
    engine.dispatcher.advance_graph(graph_exec_id, countdown=wait + TIMER_SLACK_SECONDS)
    engine.coordinator.note_deadline_timer(graph_exec_id, wait)
