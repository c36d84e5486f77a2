"""Inputs that can never validate (SPEC §3.3) on a real worker: a refused submission leaves the
worker running graphs. What is refused, and how a run fails, is tested in-process in
tests/engine/test_invalid_inputs_in_process.py."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from autoexec import api
from autoexec.errors import InputValidationError
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster

S = ExecutionStatus
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_worker_keeps_running_graphs_after_refusals(cluster: Cluster) -> None:
    owner = uuid.uuid4().hex[:8]
    definition = json.loads((EXAMPLES / "hello.json").read_text())
    graph_id, _ = api.save_graph(definition, owner, engine=cluster.engine)
    with pytest.raises(InputValidationError):
        api.execute_graph(graph_id, owner, {"x": [1]}, engine=cluster.engine)

    exec_id = api.execute_graph(graph_id, owner, {"x": "4"}, engine=cluster.engine)
    view = api.wait(exec_id, owner, timeout=60, engine=cluster.engine)

    assert view.status is S.COMPLETED
    assert view.outputs == {"sum": [5], "message": ["Hello! 4 + 1 = 5"]}
