"""Human reviews (SPEC §8.2): opened when a node suspends in REVIEW, decided once."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from autoexec.errors import InvalidTransitionError, NotFoundError
from autoexec.hooks import NodeRef
from autoexec.store.tables import Review, utcnow


@dataclass(frozen=True)
class ReviewRecord:
    """A review as it is stored."""

    id: str
    graph_exec_id: str
    node_exec_id: int
    user_id: str
    status: str
    data: Any
    message: str
    decided_data: Any
    reason: str | None
    created_at: datetime
    decided_at: datetime | None


def record_of(review: Review) -> ReviewRecord:
    return ReviewRecord(
        id=review.id,
        graph_exec_id=review.graph_exec_id,
        node_exec_id=review.node_exec_id,
        user_id=review.user_id,
        status=review.status,
        data=review.data,
        message=review.message,
        decided_data=review.decided_data,
        reason=review.reason,
        created_at=review.created_at,
        decided_at=review.decided_at,
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
) -> ReviewRecord:
    """Record the decision on a review locked by ``find_review``: a review is decided once
    (a second decision is refused)."""
    if review.status != ReviewStatus.PENDING:
        raise InvalidTransitionError(f"review {review.id!r} was already {review.status.lower()}")
    review.status, review.decided_data, review.reason = status, data, reason
    review.decided_at = utcnow()
    session.flush()
    return record_of(review)


def cancel_reviews(session: Session, graph_exec_id: str) -> None:
    """Close the run's undecided reviews: it was stopped, nothing will resume it."""
    session.execute(
        update(Review)
        .where(Review.graph_exec_id == graph_exec_id, Review.status == ReviewStatus.PENDING)
        .values(status=ReviewStatus.CANCELLED, decided_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def pending_reviews(session: Session, user_id: str) -> list[ReviewRecord]:
    """The user's undecided reviews, oldest first."""
    stmt = (
        select(Review)
        .where(Review.user_id == user_id, Review.status == ReviewStatus.PENDING)
        .order_by(Review.created_at, Review.id)
    )
    return [record_of(review) for review in session.scalars(stmt)]
