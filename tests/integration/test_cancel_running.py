"""Cancel reaches a running block (SPEC §7): a sync block blocked in a call on prefork and on
the threads pool, a streaming node, cooperative and async blocks on the threads pool, and a
cancel while Redis is down. The node ends TERMINATED, records nothing after the cancel, and its
slot is free for the next run at once."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store.tables import NodeExecutionOutput
from autoexec.tasks import reconfigure
from tests.integration.conftest import (
    Cluster,
    private_queues,
    single_slot_worker,
    worker_process,
)
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus
# Far longer than any test waits: a block not interrupted makes the test time out.
LONG = 300.0


def submit(engine: Engine, definition: dict[str, Any], owner: str) -> str:
    graph_id, _ = api.save_graph(definition, owner, engine=engine)
    return api.execute_graph(graph_id, owner, {}, engine=engine)


def node_of(engine: Engine, exec_id: str, owner: str, node_id: str) -> Any:
    view = api.get_execution(exec_id, owner, engine=engine)
    return next((n for n in view.node_executions if n.node_id == node_id), None)


def running(engine: Engine, exec_id: str, owner: str, node_id: str) -> bool:
    found = node_of(engine, exec_id, owner, node_id)
    return found is not None and found.status is S.RUNNING


def ended(engine: Engine, exec_id: str, owner: str, node_id: str) -> bool:
    found = node_of(engine, exec_id, owner, node_id)
    return found is not None and found.status in TERMINAL


def output_count(engine: Engine, exec_id: str) -> int:
    with engine.db.session() as session:
        stmt = select(func.count()).where(NodeExecutionOutput.graph_exec_id == exec_id)
        return int(session.scalar(stmt) or 0)


ADD_ONE = graph(
    [
        node("x", "agent_input", name="x", value=2),
        node("calc", "calculator", operation="add", b=1),
        node("out", "agent_output", name="sum"),
    ],
    [("x", "result", "calc", "a"), ("calc", "result", "out", "value")],
)


def assert_cancelled_node(engine: Engine, exec_id: str, owner: str, node_id: str) -> None:
    view = api.get_execution(exec_id, owner, engine=engine)
    assert view.status is S.TERMINATED
    stopped = next(n for n in view.node_executions if n.node_id == node_id)
    assert stopped.status is S.TERMINATED
    assert stopped.stats["walltime"] < LONG
    assert not {S.QUEUED, S.RUNNING, S.INCOMPLETE} & {n.status for n in view.node_executions}


def cancel_a_blocked_block_then_run_the_next_graph(engine: Engine, owner: str) -> str:
    """Cancel a node blocked in a 300 s call on a one-slot worker; the next graph must run to
    its end on that slot (so the block was stopped), and the node end TERMINATED. Its run id."""
    exec_id = submit(engine, graph([node("nap", "test_sleep", seconds=LONG)], []), owner)
    wait_until(lambda: running(engine, exec_id, owner, "nap"), "running")
    assert "cancelled" in api.cancel(exec_id, owner, engine=engine)
    after = submit(engine, ADD_ONE, owner)
    view = api.wait(after, owner, timeout=60, engine=engine)
    assert (view.status, view.outputs) == (S.COMPLETED, {"sum": [3]})
    wait_until(lambda: ended(engine, exec_id, owner, "nap"), "ended")
    assert_cancelled_node(engine, exec_id, owner, "nap")
    return exec_id


def test_cancel_interrupts_a_sync_block_blocked_in_a_call_and_frees_its_slot(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    with single_slot_worker(cluster, tmp_path / "w.log") as engine:
        cancel_a_blocked_block_then_run_the_next_graph(engine, owner)


def test_a_cancelled_streaming_node_records_nothing_after_the_cancel(cluster: Cluster) -> None:
    owner = user()
    engine = cluster.engine
    streamer = graph(
        [node("stream", "test_slow_stream", count=100_000, delay=0.01)],
        [],
    )
    exec_id = submit(engine, streamer, owner)
    wait_until(lambda: output_count(engine, exec_id) > 20, "streaming")
    api.cancel(exec_id, owner, engine=engine)
    at_cancel = output_count(engine, exec_id)
    wait_until(lambda: ended(engine, exec_id, owner, "stream"), "ended")
    assert output_count(engine, exec_id) == at_cancel
    assert_cancelled_node(engine, exec_id, owner, "stream")


def test_cancel_stops_cooperative_and_async_blocks_on_the_threads_pool(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    blocks = graph(
        [
            node("polling", "test_yield_then_wait", seconds=LONG),
            node("waiting", "wait", seconds=LONG),
        ],
        [],
    )
    with (
        private_queues(cluster) as queues,
        worker_process(queues.env, 4, tmp_path / "w.log", "threads", pool="threads"),
    ):
        engine = queues.engine
        exec_id = submit(engine, blocks, owner)
        wait_until(
            lambda: (
                running(engine, exec_id, owner, "polling")
                and running(engine, exec_id, owner, "waiting")
            ),
            "running",
        )
        api.cancel(exec_id, owner, engine=engine)
        for node_id in ("polling", "waiting"):
            wait_until(lambda n=node_id: ended(engine, exec_id, owner, n), f"{node_id} ended")
        for node_id in ("polling", "waiting"):
            assert_cancelled_node(engine, exec_id, owner, node_id)


def test_cancel_frees_the_threads_pool_slot_of_a_sync_block_blocked_in_a_call(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    with (
        private_queues(cluster) as queues,
        worker_process(queues.env, 1, tmp_path / "w.log", "threads-one", pool="threads"),
    ):
        engine = queues.engine
        exec_id = cancel_a_blocked_block_then_run_the_next_graph(engine, owner)
        assert output_count(engine, exec_id) == 0


@contextmanager
def private_redis(directory: Path, port: int = 6390) -> Iterator[str]:
    """A Redis of this test's own (FAULTS.md): its URL; stopped at the end."""
    subprocess.run(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes",
            "--save", "", "--appendonly", "no", "--dir", str(directory),
            "--pidfile", str(directory / "redis.pid"), "--logfile", str(directory / "redis.log"),
        ],
        check=True,
    )  # fmt: skip
    pid_file = directory / "redis.pid"
    wait_until(pid_file.exists, "redis started", timeout=10)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_redis(pid_file)


def stop_redis(pid_file: Path) -> None:
    if not pid_file.exists():
        return
    try:
        os.kill(int(pid_file.read_text().strip()), 15)
    except (ProcessLookupError, ValueError):
        return
    wait_until(lambda: not pid_file.exists(), "redis stopped", timeout=10)


def test_cancel_with_redis_down_succeeds_and_stops_the_running_node(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    streamer = graph([node("stream", "test_slow_stream", count=100_000, delay=0.01)], [])
    with private_redis(tmp_path) as redis_url, private_queues(cluster) as queues:
        env = {**queues.env, "AUTOEXEC_REDIS_URL": redis_url}
        engine = reconfigure(env)
        try:
            with worker_process(env, 1, tmp_path / "w.log", f"redis-{secrets.token_hex(4)}"):
                exec_id = submit(engine, streamer, owner)
                wait_until(lambda: output_count(engine, exec_id) > 20, "streaming")
                stop_redis(tmp_path / "redis.pid")
                assert "cancelled" in api.cancel(exec_id, owner, engine=engine)
                at_cancel = output_count(engine, exec_id)
                wait_until(lambda: ended(engine, exec_id, owner, "stream"), "ended")
                assert output_count(engine, exec_id) == at_cancel
                assert_cancelled_node(engine, exec_id, owner, "stream")
        finally:
            os.environ.pop("AUTOEXEC_REDIS_URL", None)
