"""Fan-out (SPEC §8.3): a node with ``"fan_out": "<pin>"`` runs its block once per element of
its list input ``<pin>``, the element taking the place of the list.

The node task runs no block: it ends the node WAITING (``AwaitFanOut``) and, after that commit,
publishes one Celery chord: an element task per element (``fan_out_element``) and a callback
that gathers each output pin into a list in element order; the node then yields each list
once, through ``resume_node``. Every task id derives from the node execution id (and the
element's index): a re-delivered node task publishes the chord again harmlessly, since the
result backend records each element of a chord once and calls its callback once. An empty
list yields an empty list on each output pin the block declares, with no chord at all.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from autoexec.store.tables import NodeExecution

S = ExecutionStatus
log = logging.getLogger(__name__)

# The node execution's stats entry that marks it as fanned out: {"pin": ..., "elements": n}.
STATS_KEY = "fan_out"


def chord_id(node_exec_id: int) -> str:
    return f"fan-out-{node_exec_id}"


def element_task_id(node_exec_id: int, index: int) -> str:
    return f"fan-out-{node_exec_id}-{index}"


def gather_task_id(node_exec_id: int) -> str:
    return f"fan-out-{node_exec_id}-gather"


def publish_again(engine: Engine, node_exec_id: int) -> None:
    """A re-delivered or retried node task found its node WAITING: if it is a fan-out, its
    chord may never have been published (a worker lost, or the broker down, between the
    commit and the publish), so it is published again; a copy of one that was is harmless."""
    with engine.db.session() as session:
        node = repo.get_node_execution(session, node_exec_id)
        fanned, graph_exec_id = (node.stats or {}).get(STATS_KEY), node.graph_exec_id
        waiting = node.status is S.WAITING
    if waiting and fanned:
        log.info("publishing the fan-out of node execution %s again", node_exec_id)
        engine.dispatcher.fan_out(node_exec_id, graph_exec_id, int(fanned["elements"]))


def element_task_ids(session: Session, graph_exec_id: str) -> list[str]:
    """The element tasks of every fan-out node of the run, to revoke on a cancel."""
    rows = session.execute(
        select(NodeExecution.id, NodeExecution.stats).where(
            NodeExecution.graph_exec_id == graph_exec_id,
            NodeExecution.status.in_((S.WAITING, S.TERMINATED)),
        )
    )
    return [
        element_task_id(node_exec_id, index)
        for node_exec_id, stats in rows
        if stats and STATS_KEY in stats
        for index in range(int(stats[STATS_KEY]["elements"]))
    ]
