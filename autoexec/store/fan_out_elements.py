"""Each fan-out element's result (SPEC §8.3), recorded once: the first record of an element
wins, and the gather reads them in element order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from autoexec.store.tables import FanOutElement


@dataclass(frozen=True)
class ElementResult:
    index: int
    outputs: list[list[Any]]  # [pin, value] pairs in yield order
    error: str | None

    def message(self) -> dict[str, Any]:
        """The result as the chord's callback receives it."""
        return {"index": self.index, "outputs": self.outputs, "error": self.error}


def record_element(session: Session, node_exec_id: int, result: ElementResult) -> int:
    """Record an element's result unless it has one; how many elements of the node have a
    result now."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = {
        "node_exec_id": node_exec_id,
        "element_index": result.index,
        "outputs": result.outputs,
        "error": result.error,
    }
    session.execute(insert(FanOutElement).values(**values).on_conflict_do_nothing())
    return recorded_count(session, node_exec_id)


def recorded_count(session: Session, node_exec_id: int) -> int:
    """How many elements of the node have a result recorded."""
    counted = select(func.count()).where(FanOutElement.node_exec_id == node_exec_id)
    return int(session.scalar(counted) or 0)


def recorded_element(session: Session, node_exec_id: int, index: int) -> ElementResult | None:
    row = session.get(FanOutElement, (node_exec_id, index))
    return None if row is None else ElementResult(index, list(row.outputs or []), row.error)


def recorded_elements(session: Session, node_exec_id: int) -> list[ElementResult]:
    """The node's recorded element results, in element order."""
    rows = session.scalars(
        select(FanOutElement)
        .where(FanOutElement.node_exec_id == node_exec_id)
        .order_by(FanOutElement.element_index)
    )
    return [ElementResult(r.element_index, list(r.outputs or []), r.error) for r in rows]
