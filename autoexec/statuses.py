"""Execution statuses and the transitions SPEC §2 allows."""

from __future__ import annotations

import enum


class ExecutionStatus(enum.StrEnum):
    INCOMPLETE = "INCOMPLETE"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TERMINATED = "TERMINATED"
    REVIEW = "REVIEW"
    WAITING = "WAITING"


S = ExecutionStatus
TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.TERMINATED})
# A node execution waiting, with no worker, for something outside the run (SPEC §8).
SUSPENDED = frozenset({S.REVIEW, S.WAITING})
# A graph execution holding one of its user's run slots (SPEC §5): a suspended run still
# holds its slot, since it goes on once what it waits for is done.
HOLDING_A_SLOT = frozenset({S.RUNNING, *SUSPENDED})

GRAPH_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.TERMINATED, S.FAILED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.TERMINATED, S.REVIEW, S.WAITING}),
    # Suspended (SPEC §8): nothing can run until a review is decided (REVIEW) or a node's
    # child run or fan-out ends (WAITING).
    S.REVIEW: frozenset({S.RUNNING, S.TERMINATED, S.FAILED}),
    S.WAITING: frozenset({S.RUNNING, S.TERMINATED, S.FAILED}),
}

NODE_TRANSITIONS: dict[ExecutionStatus, frozenset[ExecutionStatus]] = {
    # INCOMPLETE -> COMPLETED is a skipped node (SPEC §3.5).
    S.INCOMPLETE: frozenset({S.QUEUED, S.COMPLETED, S.TERMINATED, S.FAILED}),
    # QUEUED -> FAILED: refused before it ran (e.g. a charge that failed).
    S.QUEUED: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.TERMINATED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.TERMINATED, S.REVIEW, S.WAITING}),
    S.REVIEW: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.TERMINATED}),
    S.WAITING: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.TERMINATED}),
}


def sources_of(
    target: ExecutionStatus, table: dict[ExecutionStatus, frozenset[ExecutionStatus]]
) -> frozenset[ExecutionStatus]:
    """Every status from which ``target`` may be entered."""
    return frozenset(src for src, targets in table.items() if target in targets)


# The statuses a graph execution can have (INCOMPLETE is a node status only).
GRAPH_STATUSES = tuple(s for s in ExecutionStatus if s in GRAPH_TRANSITIONS or s in TERMINAL)
