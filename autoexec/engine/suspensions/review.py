"""Review (SPEC §8.2): a block yields ``AwaitReview``; its node waits in REVIEW, with a
pending review written in the transaction that suspends it, until a person approves or
rejects the data: approved, the node yields ``approved_data``; rejected, ``rejected``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autoexec.blocks.base import AwaitReview
from autoexec.engine.context import Engine
from autoexec.engine.suspensions.registry import Kind, ReferenceNode
from autoexec.engine.suspensions.resume import Resumption, resume_node
from autoexec.hooks import NodeRef
from autoexec.statuses import ExecutionStatus
from autoexec.store import reviews
from autoexec.store.transaction import Transaction


class ReviewKind(Kind[AwaitReview]):
    suspends = AwaitReview
    status = ExecutionStatus.REVIEW

    def persist(
        self, engine: Engine, session: Transaction, node: NodeRef, suspension: AwaitReview
    ) -> None:
        reviews.open_review(session, node, suspension.data, suspension.message)

    def in_reference(self, suspension: AwaitReview, node: ReferenceNode) -> list[tuple[str, Any]]:
        """Decided at once by the interpreter's ``review`` (approved as it is by default)."""
        decided: tuple[str, Any] = node.reference.decide(suspension)
        return [decided]


KIND = ReviewKind()


@dataclass(frozen=True)
class Decision:
    approved: bool
    data: Any = None  # approved: the data to go on with (None: as it was reviewed)
    reason: str = ""  # rejected: why


def decide_review(
    engine: Engine, review_id: str, user_id: str, decision: Decision
) -> reviews.ReviewRecord:
    """Approve or reject a pending review of ``user_id`` and resume its node: it yields
    ``approved_data`` or ``rejected`` and the run goes on. A review is decided once; one whose
    run was cancelled cannot be."""
    with engine.db.session() as session:
        review = reviews.find_review(session, review_id, user_id)
    decided: list[reviews.ReviewRecord] = []

    def decide(session: Transaction) -> Resumption:
        locked = reviews.find_review(session, review_id, user_id, lock=True)
        approved = decision.approved
        data = locked.data if decision.data is None else decision.data
        status = reviews.ReviewStatus.APPROVED if approved else reviews.ReviewStatus.REJECTED
        reason = decision.reason or None
        decided.append(reviews.decide(session, locked, status, data if approved else None, reason))
        return Resumption(
            [("approved_data", data)] if approved else [("rejected", decision.reason)]
        )

    resume_node(engine, review.graph_exec_id, review.node_exec_id, decide)
    return decided[0]
