"""Prometheus metrics of the engine (SPEC §11), updated by a built-in engine hook.

Each process counts what it committed. In a ``celery worker`` the pool processes write to a
shared multiprocess directory and the main process serves their sum
(autoexec.observability.worker_metrics); elsewhere (embedded stack, API process) the metrics
live in this process's default registry.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from autoexec.hooks import GraphExecutionChange, Hook, NodeExecutionChange, NodeOutput

GRAPH_RUNS = Counter(
    "autoexec_graph_runs",
    "Graph executions that ended, by final status.",
    ["status"],
)
NODE_RUNS = Counter(
    "autoexec_node_runs",
    "Node executions that ended, by block id and final status.",
    ["block", "status"],
)
NODE_DURATION = Histogram(
    "autoexec_node_duration_seconds",
    "Walltime of the node executions that ended after running, by block id.",
    ["block"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800),
)
QUEUE_WAIT = Histogram(
    "autoexec_queue_wait_seconds",
    "Time node executions waited from QUEUED to RUNNING, observed at each start.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DELIVERIES = Counter(
    "autoexec_deliveries",
    "Node outputs recorded for delivery to the dataflow: one per output a block yields, "
    "counted once when recorded, whether or not a link consumes it.",
)


class MetricsHook(Hook):
    """Counts ended runs, ended node executions and recorded outputs; times nodes and the
    queue wait. Active runs are not counted here (autoexec.observability.active_runs reads them)."""

    def execution_ended(self, change: GraphExecutionChange) -> None:
        GRAPH_RUNS.labels(status=change.status.value).inc()

    def node_started(self, change: NodeExecutionChange) -> None:
        if change.queued_seconds is not None:
            QUEUE_WAIT.observe(change.queued_seconds)

    def node_output(self, output: NodeOutput) -> None:
        DELIVERIES.inc()

    def node_ended(self, change: NodeExecutionChange) -> None:
        block = change.node.block_id
        NODE_RUNS.labels(block=block, status=change.status.value).inc()
        walltime = (change.stats or {}).get("walltime")
        if isinstance(walltime, int | float):
            NODE_DURATION.labels(block=block).observe(walltime)
