"""One delivery: outputs of a graph execution, read under its row lock, go to the nodes
linked to them (the dataflow rules), in the transaction of whichever path holds the lock (a
node task's inline orchestration or an orchestrator step)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autoexec.dataflow import RunSpec, deliver, static_sinks
from autoexec.engine.cancellation import Stop
from autoexec.engine.context import Engine
from autoexec.engine.limits import limit_stop
from autoexec.graph import Graph
from autoexec.store import executions as repo
from autoexec.store.dataflow_sql import SqlDataflowStore
from autoexec.store.executions import ExecutionState, NodeTask, PendingOutput
from autoexec.store.transaction import Transaction


@dataclass(frozen=True)
class Delivered:
    """What delivering a batch of outputs did."""

    queued: list[NodeTask]  # the node executions it made ready, with their task ids
    recorded: int  # outputs written by the delivery itself, still to deliver
    stop: Stop | None  # the run is now past a limit


# By graph object (graphs are cached per process and never change): a delivery runs per node
# end, and finding the static sinks walks every link of the graph.
_static_sinks: dict[int, tuple[Graph, frozenset[str]]] = {}


def _static_sinks_of(spec: RunSpec) -> frozenset[str]:
    entry = _static_sinks.get(id(spec.graph))
    if entry is None or entry[0] is not spec.graph:
        if len(_static_sinks) > 1024:
            _static_sinks.clear()
        entry = _static_sinks[id(spec.graph)] = (spec.graph, static_sinks(spec))
    return entry[1]


def deliver_pending(
    engine: Engine,
    session: Transaction,
    execution: ExecutionState,
    spec: RunSpec,
    pending: Sequence[PendingOutput],
    sent_by: int | None = None,
) -> Delivered:
    """Deliver ``pending`` and mark them delivered; the caller holds ``execution``'s row lock.

    With ``sent_by`` the node executions made ready are noted as sent in this transaction, as
    owned by that node execution: its task publishes them right after the commit."""
    store = SqlDataflowStore(
        session,
        spec.graph,
        execution.id,
        _static_sinks_of(spec),
        sent_by,
        engine.metering.dispatch_meter(session, execution.id, loaded=execution),
        execution.user_id,
    )
    for output in pending:
        deliver(spec, store, output.node_id, output.name, output.value)
    stored = [output.id for output in pending if output.id is not None]
    if stored:
        repo.mark_delivered(session, stored)
    # An execution the ready check failed counts too: its error output may loop back.
    repo.count_node_executions(session, execution, len(store.queued) + store.recorded_outputs)
    stop = limit_stop(execution, engine.settings.max_node_executions_per_run)
    return Delivered(store.queued, store.recorded_outputs, stop)
