"""Query plans of the engine's per-step queries on a database with a realistic history.

    .venv/bin/python -m benchmarks.explain_queries [--n 10000] [--history 10]

Builds, in a fresh database ``autoexec_bench_<random>`` (dropped at the end), with SQL bulk
inserts (no worker):

- ``--history`` finished executions of the stream graph (``benchmarks.stream_10k``), each with
  N ``double`` and N ``out`` node executions, their inputs and their (delivered) outputs;
- one RUNNING execution midway: N ``double`` executions (half COMPLETED, a quarter QUEUED and
  dispatched, a quarter QUEUED not yet dispatched), N/2 ``out`` executions, 500 undelivered
  outputs, and a node ``join`` with N INCOMPLETE executions that all have pin ``a`` and lack
  pin ``b`` (a two-input node whose ``a`` side ran ahead).

Then it prints EXPLAIN (ANALYZE, BUFFERS) of each query the orchestrator runs per step or per
delivery, exactly as the engine sends it (captured from the real repository functions), after
ANALYZE. No timing of the engine here: see stream_10k / wide_2000 for that.
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from benchmarks import common
from benchmarks.stream_10k import definition


def _exec(engine: Any, sql: str, **params: Any) -> None:
    with engine.db.engine.begin() as conn:
        conn.exec_driver_sql(sql, params)


NODE_INSERT = """
INSERT INTO node_executions (graph_exec_id, node_id, block_id, status, input_data, stats,
    attempt, dispatched, celery_task_id, created_at, updated_at)
SELECT %(exec_id)s, %(node_id)s, %(block_id)s,
    CASE WHEN i < %(completed)s THEN 'COMPLETED'
         WHEN i < %(queued_from)s THEN 'QUEUED' ELSE %(rest)s END,
    '{}'::jsonb, '{}'::jsonb, 1, i < %(dispatched)s, md5(i::text), now(), now()
FROM generate_series(0, %(count)s - 1) AS i
"""

INPUT_INSERT = """
INSERT INTO node_execution_inputs (node_exec_id, name, value)
SELECT id, %(pin)s, to_jsonb(id) FROM node_executions
WHERE graph_exec_id = %(exec_id)s AND node_id = %(node_id)s
"""

OUTPUT_INSERT = """
INSERT INTO node_execution_outputs (node_exec_id, graph_exec_id, seq, name, value, delivered,
    created_at)
SELECT id, graph_exec_id, s, %(name)s || s::text, to_jsonb(id), %(delivered)s, now()
FROM node_executions, generate_series(0, %(per_node)s - 1) AS s
WHERE graph_exec_id = %(exec_id)s AND node_id = %(node_id)s AND status = 'COMPLETED'
"""


def new_execution(engine: Any, graph_id: str, status: str) -> str:
    exec_id = str(uuid.uuid4())
    _exec(
        engine,
        "INSERT INTO graph_executions (id, graph_id, graph_version, user_id, status, inputs,"
        " nodes_input_masks, nodes_to_skip, stats, created_at, updated_at)"
        " VALUES (%(id)s, %(graph_id)s, 1, %(user)s, %(status)s, '{}', '{}', '[]', '{}',"
        " now(), now())",
        id=exec_id, graph_id=graph_id, user=common.BENCH_USER, status=status,
    )  # fmt: skip
    return exec_id


def add_nodes(engine: Any, exec_id: str, node_id: str, block_id: str, count: int,
              completed: int, queued: int = 0, dispatched: int = 0,
              rest: str = "QUEUED") -> None:  # fmt: skip
    _exec(
        engine, NODE_INSERT, exec_id=exec_id, node_id=node_id, block_id=block_id, count=count,
        completed=completed, queued_from=completed + queued, dispatched=completed + dispatched,
        rest=rest,
    )  # fmt: skip


def finished_execution(engine: Any, graph_id: str, n: int) -> None:
    exec_id = new_execution(engine, graph_id, "COMPLETED")
    for node_id, block_id, pin, outputs in (
        ("double", "calculator", "a", 1), ("out", "agent_output", "value", 2)
    ):  # fmt: skip
        add_nodes(engine, exec_id, node_id, block_id, n, completed=n)
        _exec(engine, INPUT_INSERT, exec_id=exec_id, node_id=node_id, pin=pin)
        _exec(engine, OUTPUT_INSERT, exec_id=exec_id, node_id=node_id, name="o",
              delivered=True, per_node=outputs)  # fmt: skip


def running_execution(engine: Any, graph_id: str, n: int) -> str:
    exec_id = new_execution(engine, graph_id, "RUNNING")
    add_nodes(engine, exec_id, "double", "calculator", n, completed=n // 2, queued=n // 2,
              dispatched=n // 4)  # fmt: skip
    _exec(engine, INPUT_INSERT, exec_id=exec_id, node_id="double", pin="a")
    add_nodes(engine, exec_id, "out", "agent_output", n // 2, completed=n // 2 - 250)
    _exec(engine, INPUT_INSERT, exec_id=exec_id, node_id="out", pin="value")
    _exec(engine, OUTPUT_INSERT, exec_id=exec_id, node_id="double", name="result",
          delivered=True, per_node=1)  # fmt: skip
    _exec(engine, OUTPUT_INSERT, exec_id=exec_id, node_id="out", name="o",
          delivered=False, per_node=2)  # fmt: skip
    add_nodes(engine, exec_id, "join", "calculator", n, completed=0, rest="INCOMPLETE")
    _exec(engine, INPUT_INSERT, exec_id=exec_id, node_id="join", pin="a")
    return exec_id


def _undelivered_with_not(exec_id: str) -> Any:
    """``undelivered_outputs`` with ``NOT delivered`` (the partial index's predicate) instead
    of ``delivered IS false``: the fix this script checks."""
    from sqlalchemy import select

    from autoexec.store.tables import NodeExecution, NodeExecutionOutput

    return lambda s: s.execute(
        select(NodeExecutionOutput.id, NodeExecution.node_id, NodeExecutionOutput.name,
               NodeExecutionOutput.value)
        .join(NodeExecution, NodeExecution.id == NodeExecutionOutput.node_exec_id)
        .where(NodeExecutionOutput.graph_exec_id == exec_id, ~NodeExecutionOutput.delivered)
        .order_by(NodeExecutionOutput.id)
        .limit(200)
    ).all()  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="executions per node (default 10,000)")
    p.add_argument("--history", type=int, default=10, help="finished executions (default 10)")
    p.add_argument(
        "--profile-view", action="store_true", help="also cProfile api.get_execution on it"
    )
    args = p.parse_args()
    common.handle_signals()
    from autoexec import api
    from autoexec.store import executions as repo
    from autoexec.tasks import reconfigure

    base = common.settings_env()
    with common.bench_database(base["AUTOEXEC_DATABASE_URL"]) as url:
        engine = reconfigure({**base, "AUTOEXEC_DATABASE_URL": url})
        try:
            graph_id, _ = api.save_graph(definition(), common.BENCH_USER, engine=engine)
            started = time.perf_counter()
            for _ in range(args.history):
                finished_execution(engine, graph_id, args.n)
            exec_id = running_execution(engine, graph_id, args.n)
            common.analyze_tables(engine)
            print(f"data built in {time.perf_counter() - started:.1f} s (n={args.n}, "
                  f"history={args.history}), then ANALYZE")  # fmt: skip
            sinks = [("double", "a"), ("join", "b"), ("join", "a")]
            common.explain_engine_queries(engine, exec_id, sinks)
            common.print_plans(engine, "undelivered_outputs with NOT delivered (proposed)",
                               _undelivered_with_not(exec_id))  # fmt: skip
            common.print_plans(engine, "executions.outputs_of_graph_execution (get_execution)",
                               lambda s: repo.outputs_of_graph_execution(s, exec_id))  # fmt: skip
            if args.profile_view:
                _, seconds = common.timed_view(engine, exec_id, profile=True)
                print(f"api.get_execution took {seconds:.2f} s")
        finally:
            engine.db.dispose()


if __name__ == "__main__":
    main()
