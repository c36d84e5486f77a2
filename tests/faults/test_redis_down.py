"""Redis unreachable when a ``run_graph`` is consumed (issue 8 item 3): nothing writes to Redis
before the task body is inside its retry policy, so the run waits for Redis and completes."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from autoexec import api
from autoexec.statuses import ExecutionStatus
from tests.faults.conftest import FaultWorker, PrivateRedis, fault_worker
from tests.integration.conftest import Cluster
from tests.integration.test_engine import ADD_ONE, user
from tests.waiting import wait_for_text

S = ExecutionStatus


def send_run(worker: FaultWorker, graph_id: str, owner: str, x: int) -> str:
    """``send_task`` by name from an app with only Celery, as SPEC §12 says; the task id."""
    client = Celery(broker=worker.engine.settings.broker_url)
    try:
        result = client.send_task(
            "autoexec.run_graph",
            kwargs={"graph_id": graph_id, "user_id": owner, "inputs": {"x": x}},
            queue=worker.queue("GRAPH"),
        )
        return str(result.id)
    finally:
        client.close()


def wait_for_log(worker: FaultWorker, pattern: str, after: int = 0, timeout: float = 60) -> int:
    """Wait until ``pattern`` shows in the worker log past offset ``after``; where it ends."""
    return wait_for_text(worker.log, pattern, "the worker log", after, timeout)


def test_a_run_consumed_while_redis_is_down_completes_once_redis_is_back(
    cluster: Cluster, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    redis_env = {"AUTOEXEC_REDIS_URL": private_redis.url, "AUTOEXEC_RESULT_BACKEND": ""}
    with fault_worker(cluster, tmp_path / "worker.log", redis_env) as worker:
        owner = user()
        graph_id, _ = api.save_graph(ADD_ONE, owner, engine=worker.engine)
        private_redis.stop()
        task_id = send_run(worker, graph_id, owner, 41)
        # The body ran and met the outage (its retry policy took over), then Redis comes back.
        received = wait_for_log(worker, rf"autoexec\.run_graph\[{task_id}\] received")
        wait_for_log(worker, r"Connection refused|Retry in", after=received)
        private_redis.start()
        # run_graph by graph id creates the execution under its own task id.
        view = api.wait(task_id, owner, timeout=120, engine=worker.engine)
        assert (view.status, view.outputs) == (S.COMPLETED, {"sum": [42]})
