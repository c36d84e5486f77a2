"""Streaming latency: time from submission until the first downstream node of a 10,000-item
stream has started.

    items (agent_input) ──► step (step_through_items) ──item──► double (calculator) ──► out

The graph is ``stream_10k``'s. The clock starts just before ``api.execute_graph`` and stops at
the earliest ``started_at`` of a ``double`` execution (stamped by the worker, on this machine's
clock); then the execution is cancelled.

Raw Celery reference, same run: one task ``fan_out`` sends N ``mark_started`` tasks one by one,
like a node yielding N items; the clock starts just before ``fan_out`` is sent and stops when the
first ``mark_started`` starts (it records ``time.time()`` in Redis).

    .venv/bin/python -m benchmarks.first_item            # N = 10,000
    .venv/bin/python -m benchmarks.first_item --n 1000   # quick
"""

from __future__ import annotations

import argparse
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from benchmarks import common, report, stream_10k

POLL_SECONDS = 0.005


def run_autoexec(args: argparse.Namespace, workdir: Path) -> report.Result:
    """Seconds from submission until the first ``double`` execution started."""
    from autoexec import api

    with common.autoexec_cluster(args, workdir) as cluster:
        engine = cluster.engine
        graph_id, _ = api.save_graph(stream_10k.definition(), common.BENCH_USER, engine=engine)
        inputs = {"items": list(range(args.n))}
        submitted = datetime.now(UTC)
        exec_id = api.execute_graph(graph_id, common.BENCH_USER, inputs, engine=engine)
        first = _first_started(engine, exec_id, "double", args.timeout)
        print(f"autoexec: {api.cancel(exec_id, common.BENCH_USER, engine=engine)}")
        common.wait_finished(engine, exec_id, args.timeout)
    seconds = (first - submitted).total_seconds()
    print(f"autoexec: first 'double' started {seconds:.3f} s after submission")
    return report.Result(seconds, f"{1000 * seconds:.0f} ms to the first downstream start")


def _first_started(engine: Any, exec_id: str, node_id: str, timeout: float) -> datetime:
    from autoexec.store.tables import NodeExecution as N

    deadline = time.monotonic() + timeout
    query = select(func.min(N.started_at)).where(N.graph_exec_id == exec_id, N.node_id == node_id)
    while time.monotonic() < deadline:
        with engine.db.session() as session:
            first: datetime | None = session.scalar(query)
        if first is not None:
            return first if first.tzinfo else first.replace(tzinfo=UTC)
        time.sleep(POLL_SECONDS)
    raise TimeoutError(f"no {node_id!r} execution started after {timeout}s")


def run_raw(args: argparse.Namespace, workdir: Path) -> report.Result:
    """Seconds from sending ``fan_out`` until the first task it sent started."""
    key = f"bench:first-item:{secrets.token_hex(4)}"
    with common.raw_celery_worker(args, workdir) as raw:
        client = raw.tasks._redis()
        submitted = time.time()
        raw.tasks.fan_out.delay(args.n, key)
        deadline = time.monotonic() + args.timeout
        while (value := client.get(key)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no raw task started after {args.timeout}s")
            time.sleep(POLL_SECONDS)
        client.delete(key)
    seconds = float(value) - submitted
    print(f"raw celery: first task started {seconds:.3f} s after fan_out was sent")
    return report.Result(seconds, f"{1000 * seconds:.0f} ms to the first task started")


BENCHMARK = common.Benchmark(
    "first_item", __doc__, 10_000, run_autoexec, run_raw, report.Target("seconds", 1.0)
)

if __name__ == "__main__":
    BENCHMARK.main()
