"""A block's failures: an infrastructure error raised by the block's own code (its own database
or Redis) fails the node at once (the engine's own such errors are retried); a transient error
is retried as the block's ``retries`` say, each run recorded, also when the retry's message
cannot be sent."""

from __future__ import annotations

from pathlib import Path

from kombu import Connection
from sqlalchemy import select

from autoexec import api
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import NodeExecution
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.tcp_proxy import TcpProxy
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus


def runs_started(directory: Path) -> int:
    counter = directory / "runs"
    return int(counter.read_text() or "0") if counter.exists() else 0


def test_a_retry_whose_message_cannot_be_sent_is_requeued_not_lost(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The worker publishes through a proxy the test cuts while the block fails transiently,
    so the retry cannot be sent while the worker still consumes: the message is requeued, and
    its re-delivery runs the node again without counting a lost worker."""
    owner = user()
    flaky = node("flaky", "test_flaky_gated", directory=str(tmp_path), fail_times=1)
    definition = graph(
        [flaky, node("runs", "agent_output", name="runs")], [("flaky", "runs", "runs", "value")]
    )
    log_path = tmp_path / "w.log"
    with private_queues(cluster) as queues:
        engine = queues.engine
        broker = Connection(engine.settings.broker_url)
        proxy = TcpProxy((broker.hostname, broker.port or 5672))
        behind_proxy = broker.clone(hostname="127.0.0.1", port=proxy.port)
        # Celery's own variable: this worker publishes through the proxy, consumes directly.
        env = {**queues.env, "CELERY_BROKER_WRITE_URL": behind_proxy.as_uri(include_password=True)}
        try:
            app = "tests.integration.app_without_task_events"
            with worker_process(env, 1, log_path, "unsent-retry", app=app):
                graph_id, _ = api.save_graph(definition, owner, engine=engine)
                exec_id = api.execute_graph(graph_id, owner, {}, engine=engine)
                wait_until(lambda: runs_started(tmp_path) == 1, "first run started")
                proxy.cut()
                (tmp_path / "go-1").touch()  # the block fails transiently now
                # Celery's line when the retry could not be sent and the message is rejected.
                wait_until(lambda: "] reject requeue=" in log_path.read_text(), "rejected")
                proxy.restore()
                wait_until(lambda: runs_started(tmp_path) == 2, "run again")
                (tmp_path / "go-2").touch()
                view = api.wait(exec_id, owner, timeout=60, engine=engine)
                with engine.db.session() as session:
                    stmt = select(NodeExecution.worker_losses).where(
                        NodeExecution.graph_exec_id == exec_id, NodeExecution.node_id == "flaky"
                    )
                    losses = session.scalar(stmt)
        finally:
            proxy.cut()
    assert (view.status, view.outputs) == (S.COMPLETED, {"runs": [2]})
    (ran,) = [n for n in view.node_executions if n.node_id == "flaky"]
    assert ran.status is S.COMPLETED
    assert [(r["attempt"], r["error"]) for r in ran.stats["retries"]] == [
        (1, "TransientError: rate limited (run 1)")
    ]
    assert losses == 0
