"""Child run (SPEC §8.1): an ``agent_executor`` block yields ``AwaitChild``; its node waits in
WAITING while the child execution runs, then yields the child's graph outputs, or fails with
the child's error (or saying it was cancelled).

The child execution is written in the transaction that suspends the node, so there is never a
waiting node without its child, nor a child without its node. The child's ``run_graph`` is
published after that commit; if it is lost (a crash in between, the broker down), a
re-delivered node task publishes it again, or else the reconciler does (the child stays
QUEUED, and a child is always republished: it takes no admission slot).

The child's end resumes its node after the commit that ends the child. Resuming is
exactly-once: the resumption ends a suspended node only (a second attempt finds it ended and
does nothing), and it is retried by a re-delivered task or else by the reconciler, which finds
ended children whose node still waits.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from autoexec.blocks.base import AwaitChild
from autoexec.engine.context import Engine
from autoexec.engine.submission import RunRequest, requested_graph, write_execution
from autoexec.engine.suspensions.registry import Kind, ReferenceNode
from autoexec.engine.suspensions.resume import Resumption, resume_node
from autoexec.errors import (
    InputValidationError,
    InvalidTransitionError,
    NotFoundError,
    SubgraphError,
)
from autoexec.hooks import NodeRef
from autoexec.statuses import ExecutionStatus
from autoexec.store.children import child_of_node, depth_of, get_child, outputs_of, root_of
from autoexec.store.graphs import graph_exists, graph_ids_named
from autoexec.store.transaction import Transaction

S = ExecutionStatus
log = logging.getLogger(__name__)


class ChildRunKind(Kind[AwaitChild]):
    suspends = AwaitChild
    status = ExecutionStatus.WAITING

    def prepare(self, engine: Engine, node: NodeRef, suspension: AwaitChild) -> AwaitChild:
        return check_child(engine, node, suspension)

    def persist(
        self, engine: Engine, session: Transaction, node: NodeRef, suspension: AwaitChild
    ) -> None:
        create_child(engine, session, node, suspension)

    def after_commit(self, engine: Engine, node: NodeRef, suspension: AwaitChild) -> None:
        start_child(engine, node.node_exec_id)

    def send_again(self, engine: Engine, node_exec_id: int) -> None:
        start_child(engine, node_exec_id)

    def after_run_end(self, engine: Engine, graph_exec_id: str) -> None:
        resume_parent(engine, graph_exec_id)

    def in_reference(self, suspension: AwaitChild, node: ReferenceNode) -> list[tuple[str, Any]]:
        """The child graph run inline: each of its outputs, name by name, as the node's."""
        outputs: list[tuple[str, Any]] = node.reference.child_outputs(suspension)
        return outputs


KIND = ChildRunKind()


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
        child = replace(child, graph_id=child_graph_id(session, parent.user_id, child.graph_id))
        try:
            graph = requested_graph(engine, session, _request(session, parent, child))
        except (NotFoundError, InputValidationError) as exc:
            raise SubgraphError(
                f"agent_executor cannot run graph {child.graph_id!r}: {exc}"
            ) from exc
    return replace(child, graph_version=graph.version)


def child_graph_id(session: Transaction, user_id: str, graph_ref: str) -> str:
    """The id of the graph ``graph_ref`` names: an id of the user's graphs, else the name of
    one. Resolved when the child starts, not at save: ``graph_id`` may arrive through a link,
    and a parent may be saved before the graph it calls."""
    if graph_exists(session, graph_ref, user_id):
        return graph_ref
    named = graph_ids_named(session, user_id, graph_ref)
    if len(named) > 1:
        raise SubgraphError(
            f"agent_executor: {len(named)} of your graphs are named {graph_ref!r} "
            f"({', '.join(named)}): give the graph_id of the one to run"
        )
    return named[0] if named else graph_ref


def create_child(engine: Engine, session: Transaction, parent: NodeRef, child: AwaitChild) -> str:
    """Write the child execution, QUEUED, in the caller's transaction; its id."""
    request = replace(
        _request(session, parent, child),
        credit_budget=engine.metering.child_budget(session, parent.graph_exec_id),
    )
    return write_execution(engine, session, request)


def _request(session: Transaction, parent: NodeRef, child: AwaitChild) -> RunRequest:
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


def resume_parent(engine: Engine, child_exec_id: str) -> bool:
    """Resume the node execution that waits for the ended child ``child_exec_id``, if any;
    True if this call resumed it."""
    with engine.db.session() as session:
        child = get_child(session, child_exec_id)
    if child is None or child.parent_execution_id is None or child.parent_node_exec_id is None:
        return False

    parent_exec_id = child.parent_execution_id

    def resolve(session: Transaction) -> Resumption:
        resumption = child_resumption(session, child_exec_id)
        engine.metering.add_child_spend(session, parent_exec_id, child_exec_id)
        return resumption

    try:
        resume_node(engine, parent_exec_id, child.parent_node_exec_id, resolve)
    except InvalidTransitionError as exc:
        # Resumed already (a retried end), or the parent run was stopped meanwhile.
        log.info("parent of child execution %s not resumed: %s", child_exec_id, exc)
        return False
    return True


def child_resumption(session: Transaction, child_exec_id: str) -> Resumption:
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
