"""Many independent small pieces of work, for ``throughput`` and ``memory``: K executions of a
1-node graph (one ``calculator``: 1 + 1, submitted with ``api.execute_graph`` one after the other)
and K independent raw Celery no-op tasks (``emit(i)``, sent one by one with ``apply_async``).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from benchmarks import common

ONE_PLUS_ONE = {"operation": "add", "a": 1, "b": 1}
ONE_NODE = {
    "name": "bench-one-node",
    "nodes": [{"id": "sum", "block_id": "calculator", "input_default": ONE_PLUS_ONE}],
    "links": [],
}


def save_one_node_graph(cluster: common.AutoexecCluster) -> str:
    from autoexec import api

    graph_id, _ = api.save_graph(ONE_NODE, common.BENCH_USER, engine=cluster.engine)
    return graph_id


def run_executions(
    cluster: common.AutoexecCluster, graph_id: str, k: int, timeout: float
) -> tuple[float, float]:
    """Submit ``k`` executions and wait until all ended: (seconds to the last end, seconds the
    submissions took). Exits if one did not complete."""
    from autoexec import api

    started = time.perf_counter()
    for _ in range(k):
        api.execute_graph(graph_id, common.BENCH_USER, engine=cluster.engine)
    submitted = time.perf_counter() - started
    _wait_all_ended(cluster, timeout)
    return time.perf_counter() - started, submitted


def _wait_all_ended(cluster: common.AutoexecCluster, timeout: float) -> None:
    from autoexec.statuses import TERMINAL, ExecutionStatus
    from autoexec.store.tables import GraphExecution as G

    deadline = time.monotonic() + timeout
    while True:
        with cluster.engine.db.session() as session:
            counts = dict(session.execute(select(G.status, func.count()).group_by(G.status)).all())
        if not set(counts) - TERMINAL:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"executions still running after {timeout}s: {counts}")
        time.sleep(0.05)
    if set(counts) != {ExecutionStatus.COMPLETED}:
        raise SystemExit(f"FAILED: executions ended {counts}\n{cluster.worker.log_tail()}")


def run_raw_tasks(raw: Any, k: int, timeout: float) -> float:
    """Send ``k`` no-op tasks one by one; seconds until every result is in."""
    from celery.result import ResultSet

    started = time.perf_counter()
    results = ResultSet([raw.emit.apply_async((i,)) for i in range(k)])
    values = results.get(timeout=timeout)
    seconds = time.perf_counter() - started
    if values != list(range(k)):
        raise SystemExit("FAILED: raw Celery results are wrong")
    results.forget()
    return seconds
