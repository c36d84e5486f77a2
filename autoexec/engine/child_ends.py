"""The end of a child execution (SPEC §8.1) resumes the parent node that waits for it: a
COMPLETED child's outputs become the node's outputs; a FAILED child fails the node with its
error; a child cancelled on its own fails the node saying so.

It runs after the commit that ends the child. Resuming is exactly-once: the resumption ends a
suspended node only (a second attempt finds it ended and does nothing), and it is retried by a
re-delivered task or else by the reconciler, which finds ended children whose node still waits.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from autoexec.billing import add_child_spend
from autoexec.engine.context import Engine
from autoexec.engine.suspension import Resumption, resume_node
from autoexec.errors import InvalidTransitionError, NotFoundError
from autoexec.statuses import ExecutionStatus
from autoexec.store.children import get_child, outputs_of

S = ExecutionStatus
log = logging.getLogger(__name__)


def resume_parent(engine: Engine, child_exec_id: str) -> bool:
    """Resume the node execution that waits for the ended child ``child_exec_id``, if any;
    True if this call resumed it."""
    with engine.db.session() as session:
        child = get_child(session, child_exec_id)
    if child is None or child.parent_execution_id is None or child.parent_node_exec_id is None:
        return False

    parent_exec_id = child.parent_execution_id

    def resolve(session: Session) -> Resumption:
        resumption = child_resumption(session, child_exec_id)
        add_child_spend(engine, session, parent_exec_id, child_exec_id)
        return resumption

    try:
        resume_node(engine, parent_exec_id, child.parent_node_exec_id, resolve)
    except InvalidTransitionError as exc:
        # Resumed already (a retried end), or the parent run was stopped meanwhile.
        log.info("parent of child execution %s not resumed: %s", child_exec_id, exc)
        return False
    return True


def child_resumption(session: Session, child_exec_id: str) -> Resumption:
    """How the node of an ended child ends: each of the child's outputs, name by name and
    each name's values in order, or an error."""
    child = get_child(session, child_exec_id)
    if child is None:
        raise NotFoundError(f"child execution {child_exec_id} not found")
    if child.status is S.COMPLETED:
        outputs = outputs_of(session, child_exec_id)
        return Resumption([(name, value) for name, values in outputs.items() for value in values])
    if child.status is S.FAILED:
        return Resumption(error=f"child graph execution {child_exec_id} failed: {child.error}")
    if child.status is S.TERMINATED:
        return Resumption(error=f"child graph execution {child_exec_id} was cancelled")
    raise InvalidTransitionError(f"child execution {child_exec_id} is {child.status.value}")
