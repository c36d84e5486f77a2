"""``autoexec_active_graph_runs``, read from the database at each scrape.

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
from autoexec.store.tables import GraphExecution

log = logging.getLogger(__name__)

NAME = "autoexec_active_graph_runs"
HELP = (
    "Graph executions QUEUED, RUNNING or waiting in REVIEW in the database at the scrape (the "
    "whole cluster's: every worker reports the same number)."
)
ACTIVE = (ExecutionStatus.QUEUED, *HOLDING_A_SLOT)


class ActiveRunsCollector(Collector):
    """Counts the active graph executions of ``database`` when scraped."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(NAME, HELP)

    def collect(self) -> Iterator[Metric]:
        try:
            count = count_active_runs(self.database)
        except SQLAlchemyError as exc:
            log.warning("%s left out of this scrape: cannot read the database: %s", NAME, exc)
            return
        yield GaugeMetricFamily(NAME, HELP, value=count)


def count_active_runs(database: Database) -> int:
    stmt = select(func.count()).where(GraphExecution.status.in_(ACTIVE))
    # A plain connection, not a Session: a read that notes no changes for the hooks.
    with database.engine.connect() as connection:
        return int(connection.execute(stmt).scalar_one())
