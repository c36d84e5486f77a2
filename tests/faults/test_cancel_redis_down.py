"""Cancel with Redis down (issue 23, finding 4): the stop request is durable in PostgreSQL, so
``api.cancel`` returns and the running nodes stop as promptly as SPEC §7 says (2 s) without
waiting on Redis's timeouts, whether Redis is stopped (connections refused) or frozen
(connections accepted, nothing answered): the stop path tries Redis once, briefly, then skips
it for a while, the nodes' stop watches read the database instead, and nothing on the way
waits for a result from Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from autoexec import api
from autoexec.block_run.watch import DATABASE_EVERY, WATCH_INTERVAL_SECONDS
from autoexec.engine.context import Engine
from autoexec.statuses import TERMINAL, ExecutionStatus
from tests.faults.conftest import PrivateRedis, fault_worker
from tests.integration.conftest import Cluster
from tests.integration.test_cancel_running import output_count, running, submit
from tests.integration.test_engine import graph, node, user
from tests.waiting import wait_until

S = ExecutionStatus
# Far longer than the test waits: only a stop ends these nodes.
LONG = 300.0
# A stop watch reads the database this often even while Redis answers: the SPEC's 2 s. The
# bound is three times that, for a loaded two-CPU machine; it stays far below the 19 s of
# Redis's own timeouts and retries.
STOP_BOUND_SECONDS = 3 * WATCH_INTERVAL_SECONDS * DATABASE_EVERY

# ``nap`` only stops when its stop watch finds the stop (or a revoke terminates it, on prefork);
# ``stream`` yields every 10 ms, so an output after the cancel would show.
NAP_AND_STREAM = graph(
    [
        node("nap", "wait", seconds=LONG),
        node("stream", "test_slow_stream", count=100_000, delay=0.01),
    ],
    [],
)


def both_running(engine: Engine, exec_id: str, owner: str) -> bool:
    return (
        running(engine, exec_id, owner, "nap")
        and running(engine, exec_id, owner, "stream")
        and output_count(engine, exec_id) > 20
    )


def node_statuses(engine: Engine, exec_id: str, owner: str) -> dict[str, ExecutionStatus]:
    view = api.get_execution(exec_id, owner, engine=engine)
    return {found.node_id: found.status for found in view.node_executions}


def nodes_ended(engine: Engine, exec_id: str, owner: str) -> bool:
    return set(node_statuses(engine, exec_id, owner).values()) <= TERMINAL


@contextmanager
def redis_down(server: PrivateRedis, how: str) -> Iterator[None]:
    """Redis ``stopped`` (refuses connections) or ``frozen`` (accepts them, answers nothing)
    for the block; a frozen one is resumed after it."""
    if how == "stopped":
        server.stop()
        yield
        return
    server.freeze()
    try:
        yield
    finally:
        server.thaw()


@pytest.mark.parametrize("how", ["stopped", "frozen"])
@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_a_cancel_with_redis_down_returns_and_stops_the_running_nodes_promptly(
    cluster: Cluster, private_redis: PrivateRedis, tmp_path: Path, pool: str, how: str
) -> None:
    redis_env = {"AUTOEXEC_REDIS_URL": private_redis.url}
    log_path = tmp_path / "worker.log"
    with fault_worker(cluster, log_path, redis_env, concurrency=2, pool=pool) as worker:
        engine, owner = worker.engine, user()
        exec_id = submit(engine, NAP_AND_STREAM, owner)
        wait_until(lambda: both_running(engine, exec_id, owner), "both nodes running")
        with redis_down(private_redis, how):
            cancelled_at = time.monotonic()
            said = api.cancel(exec_id, owner, engine=engine)
            cancel_seconds = time.monotonic() - cancelled_at
            outputs_at_cancel = output_count(engine, exec_id)
            wait_until(lambda: nodes_ended(engine, exec_id, owner), "the nodes ended", LONG)
            stop_seconds = time.monotonic() - cancelled_at
        print(
            f"{pool} pool, Redis {how}: api.cancel returned in {cancel_seconds:.2f} s, "
            f"the nodes had ended {stop_seconds:.2f} s after the cancel"
        )

        assert said == f"graph execution {exec_id} cancelled"
        assert api.get_execution(exec_id, owner, engine=engine).status is S.TERMINATED
        assert node_statuses(engine, exec_id, owner) == {
            "nap": S.TERMINATED,
            "stream": S.TERMINATED,
        }
        assert output_count(engine, exec_id) == outputs_at_cancel
        assert cancel_seconds < STOP_BOUND_SECONDS
        assert stop_seconds < STOP_BOUND_SECONDS
