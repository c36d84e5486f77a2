"""Starting a child execution (SPEC §8.1): an ``agent_executor`` node suspends in WAITING and
its child execution is written in the transaction that suspends it, so there is never a
waiting node without its child, nor a child without its node. The child's ``run_graph`` is
published after that commit; if it is lost (a crash in between, the broker down), a
re-delivered node task publishes it again, or else the reconciler does (the child stays
QUEUED, and a child is always republished: it takes no admission slot)."""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy.orm import Session

from autoexec.billing import child_budget
from autoexec.blocks.base import AwaitChild
from autoexec.engine.context import Engine
from autoexec.engine.submission import RunRequest, requested_graph, write_execution
from autoexec.errors import InputValidationError, NotFoundError, SubgraphError
from autoexec.hooks import NodeRef
from autoexec.statuses import ExecutionStatus
from autoexec.store.children import child_of_node, depth_of, root_of

S = ExecutionStatus
log = logging.getLogger(__name__)


def check_child(engine: Engine, parent: NodeRef, child: AwaitChild) -> AwaitChild:
    """The child ``parent`` may start, its graph version resolved; SubgraphError says why
    it may not (the node then fails with it, before it suspends)."""
    with engine.db.session() as session:
        depth = depth_of(session, parent.graph_exec_id) + 1
        limit = engine.settings.max_subgraph_depth
        if depth > limit:
            raise SubgraphError(
                f"agent_executor: graph {child.graph_id!r} would run {depth} levels deep, "
                f"past the limit of {limit} (AUTOEXEC_MAX_SUBGRAPH_DEPTH)"
            )
        try:
            graph = requested_graph(engine, session, _request(session, parent, child))
        except (NotFoundError, InputValidationError) as exc:
            raise SubgraphError(
                f"agent_executor cannot run graph {child.graph_id!r}: {exc}"
            ) from exc
    return replace(child, graph_version=graph.version)


def create_child(engine: Engine, session: Session, parent: NodeRef, child: AwaitChild) -> str:
    """Write the child execution, QUEUED, in the caller's transaction; its id."""
    request = replace(
        _request(session, parent, child),
        credit_budget=child_budget(engine, session, parent.graph_exec_id),
    )
    return write_execution(engine, session, request)


def _request(session: Session, parent: NodeRef, child: AwaitChild) -> RunRequest:
    return RunRequest(
        child.graph_id,
        parent.user_id,
        dict(child.inputs),
        child.graph_version,
        parent_execution_id=parent.graph_exec_id,
        root_execution_id=root_of(session, parent.graph_exec_id),
        parent_node_exec_id=parent.node_exec_id,
    )


def start_child(engine: Engine, node_exec_id: int) -> None:
    """Publish the ``run_graph`` of the child the node execution waits for, if it has not
    started (a duplicate finds it started and does nothing)."""
    with engine.db.session() as session:
        child = child_of_node(session, node_exec_id)
    if child is None or child.status is not S.QUEUED:
        return
    try:
        engine.dispatcher.run_graph(child.id)
    except Exception:
        log.warning(
            "could not send the run of child execution %s; the reconciler will",
            child.id,
            exc_info=True,
        )
