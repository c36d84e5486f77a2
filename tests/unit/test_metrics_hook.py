"""The built-in metrics hook, in-process (outside a worker): what each change counts."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from autoexec.hooks import (
    GraphExecutionChange,
    NodeExecutionChange,
    NodeOutput,
    NodeRef,
)
from autoexec.observability.metrics import MetricsHook
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus
BLOCK = "unit_metrics_block"  # a label no other test's node has


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_metrics_hook_counts_ends_and_outputs_and_times_nodes_that_ran() -> None:
    ran, never_ran = (NodeRef("g-1", "u-1", number, "n", BLOCK) for number in (1, 2))
    before = {
        "failed_runs": value("autoexec_graph_runs_total", status="FAILED"),
        "waits": value("autoexec_queue_wait_seconds_count"),
        "waited": value("autoexec_queue_wait_seconds_sum"),
        "deliveries": value("autoexec_deliveries_total"),
    }
    hook = MetricsHook()
    hook.node_started(NodeExecutionChange(ran, S.RUNNING, queued_seconds=0.25))
    hook.node_output(NodeOutput(ran, 0, "result", 1))
    hook.node_output(NodeOutput(ran, 1, "result", 2))
    hook.node_ended(NodeExecutionChange(ran, S.COMPLETED, stats={"walltime": 0.5}))
    hook.node_ended(NodeExecutionChange(never_ran, S.TERMINATED))
    hook.execution_ended(GraphExecutionChange("g-1", "u-1", "graph", 1, S.FAILED))

    assert value("autoexec_node_runs_total", block=BLOCK, status="COMPLETED") == 1
    assert value("autoexec_node_runs_total", block=BLOCK, status="TERMINATED") == 1
    assert value("autoexec_node_duration_seconds_count", block=BLOCK) == 1
    assert value("autoexec_node_duration_seconds_sum", block=BLOCK) == 0.5
    assert value("autoexec_graph_runs_total", status="FAILED") - before["failed_runs"] == 1
    assert value("autoexec_queue_wait_seconds_count") - before["waits"] == 1
    assert value("autoexec_queue_wait_seconds_sum") - before["waited"] == pytest.approx(0.25)
    assert value("autoexec_deliveries_total") - before["deliveries"] == 2
