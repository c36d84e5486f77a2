"""Prometheus metrics of a prefork worker (SPEC §11): the pool processes count, the main process
serves their sum on AUTOEXEC_METRICS_PORT, and the active runs are read from the database."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import NodeExecutionOutput
from tests.conftest import Services, migrated_database
from tests.integration.conftest import Cluster, environment, private_queues, worker_process
from tests.integration.test_cancel_running import running, submit
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

ADD_ONE = graph(
    [
        node("x", "agent_input", name="x"),
        node("calc", "calculator", operation="add", b=1),
        node("out", "agent_output", name="sum"),
    ],
    [("x", "result", "calc", "a"), ("calc", "result", "out", "value")],
)
DIVIDE_BY_ZERO = graph(
    [node("x", "agent_input", name="x"), node("div", "calculator", operation="divide", b=0)],
    [("x", "result", "div", "a")],
)


def wait_for_file(path: Path) -> dict[str, object]:
    return graph(
        [node("wait", "test_wait_for_file", path=str(path)), node("out", "agent_output", name="d")],
        [("wait", "done", "out", "value")],
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """The samples ``name`` by the value of their one label ``label``."""
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def total(samples: Samples, name: str) -> float:
    return sum(value for (n, _labels), value in samples.items() if n == name)


@contextmanager
def own_database_worker(
    cluster: Cluster, services: Services, tmp_path: Path, port: int
) -> Iterator[Engine]:
    """A ``-c 2`` prefork worker serving metrics on ``port``, on queues and a database of its
    own (so the active runs it reads are this test's only); the test submits there."""
    with (
        migrated_database(services.database_url) as database_url,
        private_queues(cluster) as queues,
    ):
        env = {
            **queues.env,
            "AUTOEXEC_DATABASE_URL": database_url,
            "AUTOEXEC_METRICS_PORT": str(port),
        }
        with (
            environment(env) as engine,
            worker_process(env, 2, tmp_path / "worker.log", "metrics"),
        ):
            yield engine


def scrape_when_counted(port: int, graph_runs: int, node_runs: int) -> Samples:
    """The hooks run just after the commits api.wait saw: scrape once the last has counted."""
    deadline = time.monotonic() + 30
    while True:
        samples = scrape(port)
        counted = (
            total(samples, "autoexec_graph_runs_total") >= graph_runs
            and total(samples, "autoexec_node_runs_total") >= node_runs
        )
        if counted or time.monotonic() > deadline:
            return samples
        time.sleep(0.05)


def recorded_outputs(engine: Engine) -> int:
    with engine.db.session() as session:
        return int(session.scalar(select(func.count()).select_from(NodeExecutionOutput)) or 0)


def test_a_prefork_worker_serves_exact_counts_summed_over_its_pool_processes(
    cluster: Cluster, services: Services, tmp_path: Path
) -> None:
    port, owner, release = free_port(), user(), tmp_path / "release"
    with own_database_worker(cluster, services, tmp_path, port) as engine:
        # One pool process holds the waiting node while the other runs the three other graphs:
        # the counts served are the sum of both processes'.
        waiting = submit(engine, wait_for_file(release), owner)
        wait_until(lambda: running(engine, waiting, owner, "wait"), "waiting node running")
        during = scrape(port)
        assert total(during, "autoexec_active_graph_runs") == 1
        assert total(during, "autoexec_work_pending") == 1  # the waiting node, RUNNING
        assert (
            total(during, "autoexec_worker_pool_size"),
            total(during, "autoexec_worker_pool_busy"),
        ) == (2, 1)

        graph_ids = [api.save_graph(g, owner, engine=engine)[0] for g in (ADD_ONE, DIVIDE_BY_ZERO)]
        runs = [api.execute_graph(graph_ids[0], owner, {"x": x}, engine=engine) for x in (1, 2)]
        runs.append(api.execute_graph(graph_ids[1], owner, {"x": 3}, engine=engine))
        release.touch()
        views = [api.wait(run, owner, timeout=60, engine=engine) for run in [*runs, waiting]]
        assert [view.status for view in views] == [S.COMPLETED, S.COMPLETED, S.FAILED, S.COMPLETED]

        samples = scrape_when_counted(port, graph_runs=4, node_runs=10)
        outputs = recorded_outputs(engine)

    assert by_label(samples, "autoexec_graph_runs_total", "status") == {
        "COMPLETED": 3,
        "FAILED": 1,
    }
    node_runs = {
        (dict(labels)["block"], dict(labels)["status"]): value
        for (name, labels), value in samples.items()
        if name == "autoexec_node_runs_total"
    }
    assert node_runs == {
        ("agent_input", "COMPLETED"): 3,
        ("calculator", "COMPLETED"): 2,
        ("calculator", "FAILED"): 1,
        ("agent_output", "COMPLETED"): 3,
        ("test_wait_for_file", "COMPLETED"): 1,
    }
    assert by_label(samples, "autoexec_node_duration_seconds_count", "block") == {
        "agent_input": 3,
        "calculator": 3,
        "agent_output": 3,
        "test_wait_for_file": 1,
    }
    assert total(samples, "autoexec_queue_wait_seconds_count") == 10  # one start per node run
    # An input, a result or error, and the output node's value and name, per node run.
    assert total(samples, "autoexec_deliveries_total") == outputs == 13
    assert total(samples, "autoexec_active_graph_runs") == 0
    assert total(samples, "autoexec_work_pending") == 0
    assert total(samples, "autoexec_worker_pool_busy") == 0


def test_a_worker_whose_metrics_port_is_taken_warns_and_runs(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner, log_path = user(), tmp_path / "worker.log"
    with socket.socket() as taken, private_queues(cluster) as queues:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        env = {**queues.env, "AUTOEXEC_METRICS_PORT": str(taken.getsockname()[1])}
        with worker_process(env, 1, log_path, "metrics-port-taken"):
            graph_id, _ = api.save_graph(ADD_ONE, owner, engine=queues.engine)
            exec_id = api.execute_graph(graph_id, owner, {"x": 1}, engine=queues.engine)
            view = api.wait(exec_id, owner, timeout=60, engine=queues.engine)
    assert view.status is S.COMPLETED
    assert "AUTOEXEC_METRICS_PORT" in log_path.read_text()
