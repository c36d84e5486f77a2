"""Resuming a suspended node execution (SPEC §8): its outputs are written from outside any
running task, in one transaction that also delivers them, as if its block had yielded them;
the run then continues where it was. Every kind resumes its nodes through ``resume_node``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from autoexec.blocks.base import ERROR_PIN
from autoexec.engine import inline
from autoexec.engine.context import Engine
from autoexec.errors import InvalidTransitionError
from autoexec.statuses import SUSPENDED, ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store import suspended
from autoexec.store.transaction import Transaction
from autoexec.store.transitions import transition_graph, transition_node

S = ExecutionStatus
log = logging.getLogger(__name__)


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
    resolve: Callable[[Transaction], Resumption],
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
    try:
        inline.after_commit(engine, graph_exec_id, flushed, ended=True)
        if flushed.needs_step:
            engine.wake(graph_exec_id)
    except engine.dispatcher.unavailable as unsent:
        # The resumption is committed: its caller (an approval, say) must not hear that it
        # failed. The successors are QUEUED and noted as sent; the reconciler sends them again.
        log.warning(
            "node execution %s of %s resumed, but its successors could not be sent (%s): "
            "the reconciler sends them once the broker is back",
            node_exec_id,
            graph_exec_id,
            unsent,
        )


def _resume(
    engine: Engine, session: Transaction, node_exec_id: int, resumption: Resumption
) -> inline.Flushed:
    node, status, attempt = suspended.lock_node(session, node_exec_id)
    if status not in SUSPENDED:
        raise InvalidTransitionError(
            f"node execution {node_exec_id} is {status.value}, not waiting to be resumed"
        )
    transition_graph(session, node.graph_exec_id, S.RUNNING, allowed_from=SUSPENDED)
    outputs = list(resumption.outputs)
    if resumption.error is not None:
        outputs.append((ERROR_PIN, resumption.error))
    first = suspended.next_output_seq(session, node_exec_id)
    yielded = [inline.Yielded(first + n, pin, value) for n, (pin, value) in enumerate(outputs)]
    ended = S.COMPLETED if resumption.error is None else S.FAILED

    def end(session: Transaction, stopped: bool) -> bool:
        target = S.TERMINATED if stopped else ended
        error = None if stopped else resumption.error
        return transition_node(session, node_exec_id, target, allowed_from=SUSPENDED, error=error)

    return inline.record_in(engine, session, inline.NodeAttempt(node, attempt), yielded, end)
