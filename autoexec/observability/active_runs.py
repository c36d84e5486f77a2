"""``autoexec_active_graph_runs`` and ``autoexec_work_pending``, read from the database at each
scrape.

A gauge each process raised and lowered would be wrong under the prefork pool as soon as a pool
process died between the two; the database knows which runs are active.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from autoexec.statuses import HOLDING_A_SLOT, ExecutionStatus
from autoexec.store.db import Database
from autoexec.store.tables import GraphExecution, NodeExecution

log = logging.getLogger(__name__)

NAME = "autoexec_active_graph_runs"
HELP = (
    "Graph executions QUEUED, RUNNING or waiting in REVIEW in the database at the scrape (the "
    "whole cluster's: every worker reports the same number)."
)
ACTIVE = (ExecutionStatus.QUEUED, *HOLDING_A_SLOT)
PENDING_NAME = "autoexec_work_pending"
PENDING_HELP = (
    "Node executions QUEUED or RUNNING in active graph executions at the scrape: the work that "
    "wants a worker slot now (the whole cluster's; scale workers on it)."
)
PENDING = (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)


class ActiveRunsCollector(Collector):
    """Counts the active graph executions of ``database`` when scraped."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(NAME, HELP)
        yield GaugeMetricFamily(PENDING_NAME, PENDING_HELP)

    def collect(self) -> Iterator[Metric]:
        try:
            runs, pending = count_active_runs(self.database), count_pending_work(self.database)
        except SQLAlchemyError as exc:
            log.warning("%s and %s left out of this scrape: %s", NAME, PENDING_NAME, exc)
            return
        yield GaugeMetricFamily(NAME, HELP, value=runs)
        yield GaugeMetricFamily(PENDING_NAME, PENDING_HELP, value=pending)


def count_active_runs(database: Database) -> int:
    stmt = select(func.count()).where(GraphExecution.status.in_(ACTIVE))
    # A plain connection, not a Session: a read that notes no changes for the hooks.
    with database.engine.connect() as connection:
        return int(connection.execute(stmt).scalar_one())


def count_pending_work(database: Database) -> int:
    # Through the active runs: both indexes are on status within a run, none on status alone.
    stmt = (
        select(func.count())
        .select_from(NodeExecution)
        .join(GraphExecution, GraphExecution.id == NodeExecution.graph_exec_id)
        .where(GraphExecution.status.in_(ACTIVE), NodeExecution.status.in_(PENDING))
    )
    with database.engine.connect() as connection:
        return int(connection.execute(stmt).scalar_one())
