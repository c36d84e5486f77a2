"""Suspended node executions (SPEC §8): a block ends its run with a ``Suspend`` instead of an
output; its node execution leaves the worker and waits in REVIEW (a human decision) or WAITING;
the run goes on with its other branches, and shows REVIEW once nothing else can run. Resuming
writes the node's outputs from outside any running task, in one transaction that also
delivers them, as if the block had yielded them; the run then continues where it was.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from autoexec.blocks.base import ERROR_PIN, AwaitChild, AwaitFanOut, AwaitReview, Suspend
from autoexec.engine import inline
from autoexec.engine.child_runs import check_child, create_child, start_child
from autoexec.engine.context import Engine
from autoexec.errors import InvalidTransitionError
from autoexec.hooks import NodeRef
from autoexec.statuses import SUSPENDED, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store import reviews
from autoexec.store.tables import Review
from autoexec.store.transitions import transition_graph, transition_node

S = ExecutionStatus


def suspended_status(suspension: Suspend) -> ExecutionStatus:
    """The status a node execution waits in for ``suspension``."""
    if isinstance(suspension, AwaitReview):
        return S.REVIEW
    if isinstance(suspension, AwaitChild | AwaitFanOut):
        return S.WAITING
    raise TypeError(f"unknown suspension {type(suspension).__name__}")


def prepare(engine: Engine, node: NodeRef, suspension: Suspend) -> Suspend:
    """Check, before the node suspends, that what it would wait for can happen; raises the
    error the node fails with instead."""
    if isinstance(suspension, AwaitChild):
        return check_child(engine, node, suspension)
    return suspension


def suspend(engine: Engine, session: Session, node: NodeRef, suspension: Suspend) -> None:
    """What the node waits for, written in the transaction that suspends it."""
    if isinstance(suspension, AwaitReview):
        reviews.open_review(session, node, suspension.data, suspension.message)
    elif isinstance(suspension, AwaitChild):
        create_child(engine, session, node, suspension)


def after_suspend(
    engine: Engine, graph_exec_id: str, node_exec_id: int, suspension: Suspend
) -> None:
    """What is sent once the suspension is committed (a child run, or a fan-out's chord,
    only goes on with a node it finds WAITING)."""
    if isinstance(suspension, AwaitChild):
        start_child(engine, node_exec_id)
    elif isinstance(suspension, AwaitFanOut):
        engine.dispatcher.fan_out(node_exec_id, graph_exec_id, suspension.elements)


@dataclass(frozen=True)
class Resumption:
    """How a suspended node execution ends: the outputs it yields, in order; with ``error``
    it ends FAILED with that error, yielded on its ``error`` pin after the outputs."""

    outputs: Sequence[tuple[str, Any]] = ()
    error: str | None = None


def resume_node(
    engine: Engine,
    graph_exec_id: str,
    node_exec_id: int,
    resolve: Callable[[Session], Resumption],
) -> None:
    """End a suspended node execution from any process, in one transaction that records its
    outputs and delivers them, as if its block had yielded them; the run goes on from there.

    ``resolve`` runs in that transaction, with the run locked, and says how the node ends (it
    may record what decided it, or raise to change nothing). The run is locked first, then
    what ``resolve`` reads, then the node: the order a cancel and a node's end take them in,
    so a resumption never deadlocks with either. A cancelled run is not resumed."""
    with engine.db.session() as session:
        execution = repo.get_execution_state(session, graph_exec_id, lock=True)
        resumption = resolve(session)
        if execution.cancel_requested_at is not None:
            raise InvalidTransitionError(f"graph execution {graph_exec_id} was cancelled")
        flushed = _resume(engine, session, node_exec_id, resumption)
    inline.after_commit(engine, graph_exec_id, flushed, ended=True)
    if flushed.needs_step:
        engine.wake(graph_exec_id)


def _resume(
    engine: Engine, session: Session, node_exec_id: int, resumption: Resumption
) -> inline.Flushed:
    node, status, attempt = reviews.lock_node(session, node_exec_id)
    if status not in SUSPENDED:
        raise InvalidTransitionError(
            f"node execution {node_exec_id} is {status.value}, not waiting to be resumed"
        )
    transition_graph(session, node.graph_exec_id, S.RUNNING, allowed_from=SUSPENDED)
    outputs = list(resumption.outputs)
    if resumption.error is not None:
        outputs.append((ERROR_PIN, resumption.error))
    first = reviews.next_output_seq(session, node_exec_id)
    yielded = [inline.Yielded(first + n, pin, value) for n, (pin, value) in enumerate(outputs)]
    ended = S.COMPLETED if resumption.error is None else S.FAILED

    def end(session: Session, stopped: bool) -> bool:
        target = S.TERMINATED if stopped else ended
        error = None if stopped else resumption.error
        return transition_node(session, node_exec_id, target, allowed_from=SUSPENDED, error=error)

    return inline.record_in(engine, session, inline.NodeAttempt(node, attempt), yielded, end)


@dataclass(frozen=True)
class Decision:
    approved: bool
    data: Any = None  # approved: the data to go on with (None: as it was reviewed)
    reason: str = ""  # rejected: why


def decide_review(engine: Engine, review_id: str, user_id: str, decision: Decision) -> Review:
    """Approve or reject a pending review of ``user_id`` and resume its node: it yields
    ``approved_data`` or ``rejected`` and the run goes on. A review is decided once; one whose
    run was cancelled cannot be."""
    with engine.db.session() as session:
        review = reviews.find_review(session, review_id, user_id)
    decided: list[Review] = []

    def decide(session: Session) -> Resumption:
        locked = reviews.find_review(session, review_id, user_id, lock=True)
        approved = decision.approved
        data = locked.data if decision.data is None else decision.data
        status = reviews.ReviewStatus.APPROVED if approved else reviews.ReviewStatus.REJECTED
        reviews.decide(session, locked, status, data if approved else None, decision.reason or None)
        decided.append(locked)
        return Resumption(
            [("approved_data", data)] if approved else [("rejected", decision.reason)]
        )

    resume_node(engine, review.graph_exec_id, review.node_exec_id, decide)
    return decided[0]
