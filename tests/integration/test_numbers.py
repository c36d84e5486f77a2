"""Numbers JSON cannot hold on the cluster (issue 22, findings 1 and 3): PostgreSQL's ``json``
refuses Infinity and NaN, which left the node and its run RUNNING for ever, holding the user's
admission slot, and made a submission raise a raw database error."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sqlalchemy import func, select

from autoexec import api
from autoexec.errors import InputValidationError
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import GraphExecution
from tests.graphs import MULTIPLY, NOT_FINITE
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.test_engine import user

S = ExecutionStatus


def test_an_output_that_overflows_to_inf_fails_its_node_and_frees_the_slot(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    with private_queues(cluster) as queues:
        engine = queues.engine
        env = {**queues.env, "AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER": "1"}
        graph_id, _ = api.save_graph(MULTIPLY, owner, engine=engine)
        with worker_process(env, 2, tmp_path / "worker.log", "numbers"):
            overflow = api.execute_graph(graph_id, owner, {"a": 1e300, "b": 1e300}, engine=engine)
            # Admitted only once the first run gives its one slot back.
            after = api.execute_graph(graph_id, owner, {"a": 2, "b": 3}, engine=engine)
            failed = api.wait(overflow, owner, timeout=60, engine=engine)
            completed = api.wait(after, owner, timeout=60, engine=engine)

    assert failed.status is S.FAILED
    (calc,) = [n for n in failed.node_executions if n.node_id == "calc"]
    assert (calc.status, calc.error) == (
        S.FAILED,
        f"output 'result' is not JSON-serializable: {NOT_FINITE}",
    )
    assert [n.status for n in failed.node_executions if n.status is S.RUNNING] == []
    assert (completed.status, completed.outputs) == (S.COMPLETED, {"product": [6]})
    assert 'Token "Infinity" is invalid' not in (tmp_path / "worker.log").read_text()


@pytest.mark.parametrize("value", [math.nan, math.inf, {"deep": [-math.inf]}])
def test_a_graph_input_that_is_not_finite_is_refused_before_anything_is_written(
    cluster: Cluster, value: object
) -> None:
    owner = user()
    engine = cluster.engine
    graph_id, _ = api.save_graph(MULTIPLY, owner, engine=engine)
    with pytest.raises(InputValidationError) as refused:
        api.execute_graph(graph_id, owner, {"a": value, "b": 2}, engine=engine)
    assert str(refused.value) == f"graph input 'a' is not a JSON value: {NOT_FINITE}"
    with engine.db.session() as session:
        runs = select(func.count()).where(GraphExecution.user_id == owner)
        assert session.scalar(runs) == 0
