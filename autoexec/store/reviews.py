"""Human reviews (SPEC §8.2): opened when a node suspends in REVIEW, decided once."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from autoexec.errors import InvalidTransitionError, NotFoundError
from autoexec.hooks import NodeRef
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import (
    GraphExecution,
    NodeExecution,
    NodeExecutionOutput,
    Review,
    utcnow,
)


class ReviewStatus(enum.StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"  # its run was cancelled or stopped first


def open_review(session: Session, node: NodeRef, data: Any, message: str) -> str:
    """A pending review of ``data`` for the suspended node execution; its id."""
    review = Review(
        id=str(uuid.uuid4()),
        graph_exec_id=node.graph_exec_id,
        node_exec_id=node.node_exec_id,
        user_id=node.user_id,
        status=ReviewStatus.PENDING,
        data=data,
        message=message,
    )
    session.add(review)
    session.flush()
    return review.id


def find_review(session: Session, review_id: str, user_id: str, lock: bool = False) -> Review:
    """The review (with ``lock``, locked until the transaction ends); another user's is
    "not found"."""
    stmt = select(Review).where(Review.id == review_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    review = session.scalars(stmt).one_or_none()
    if review is None or review.user_id != user_id:
        raise NotFoundError(f"review {review_id!r} not found")
    return review


def decide(
    session: Session, review: Review, status: ReviewStatus, data: Any, reason: str | None
) -> None:
    """Record the decision on a review locked by ``find_review``: a review is decided once
    (a second decision is refused)."""
    if review.status != ReviewStatus.PENDING:
        raise InvalidTransitionError(f"review {review.id!r} was already {review.status.lower()}")
    review.status, review.decided_data, review.reason = status, data, reason
    review.decided_at = utcnow()
    session.flush()


def cancel_reviews(session: Session, graph_exec_id: str) -> None:
    """Close the run's undecided reviews: it was stopped, nothing will resume it."""
    session.execute(
        update(Review)
        .where(Review.graph_exec_id == graph_exec_id, Review.status == ReviewStatus.PENDING)
        .values(status=ReviewStatus.CANCELLED, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def pending_reviews(session: Session, user_id: str) -> Sequence[Review]:
    """The user's undecided reviews, oldest first."""
    stmt = (
        select(Review)
        .where(Review.user_id == user_id, Review.status == ReviewStatus.PENDING)
        .order_by(Review.created_at, Review.id)
    )
    return session.scalars(stmt).all()


def next_output_seq(session: Session, node_exec_id: int) -> int:
    """The seq the node execution's next output takes."""
    stmt = select(func.coalesce(func.max(NodeExecutionOutput.seq) + 1, 0)).where(
        NodeExecutionOutput.node_exec_id == node_exec_id
    )
    return int(session.scalar(stmt) or 0)


def lock_node(session: Session, node_exec_id: int) -> tuple[NodeRef, ExecutionStatus, int]:
    """The node execution a review resumes, locked: which it is, its status and attempt."""
    row = session.execute(
        select(
            NodeExecution.graph_exec_id,
            GraphExecution.user_id,
            NodeExecution.node_id,
            NodeExecution.block_id,
            NodeExecution.status,
            NodeExecution.attempt,
        )
        .join(GraphExecution, GraphExecution.id == NodeExecution.graph_exec_id)
        .where(NodeExecution.id == node_exec_id)
        .with_for_update(of=NodeExecution)
    ).one()
    node = NodeRef(row.graph_exec_id, row.user_id, node_exec_id, row.node_id, row.block_id)
    return node, row.status, row.attempt
