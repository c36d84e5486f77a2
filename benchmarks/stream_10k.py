"""A node that streams 10,000 items, each going through a calculator to an agent_output.

    items (agent_input) ──► step (step_through_items) ──item──► double (calculator *2)
                                                                   └──result──► out (agent_output)

``step`` yields ``key`` and ``item`` for each of the N items (2N outputs, ``key`` is not linked);
each ``item`` creates one ``double`` execution, each result one ``out`` execution: 2N + 2 node
executions. The run must end COMPLETED with output ``doubled`` = {2*i : i < N}.

Raw Celery baseline, same run: a group of N chains ``multiply(i, 2) | emit()`` (2N tasks).

    .venv/bin/python -m benchmarks.stream_10k            # N = 10,000
    .venv/bin/python -m benchmarks.stream_10k --n 500    # quick
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from benchmarks import common

GRAPH_NAME = "bench-stream"


def definition() -> dict[str, Any]:
    return {
        "name": GRAPH_NAME,
        "nodes": [
            {"id": "items", "block_id": "agent_input", "input_default": {"name": "items"}},
            {"id": "step", "block_id": "step_through_items"},
            {
                "id": "double",
                "block_id": "calculator",
                "input_default": {"operation": "multiply", "b": 2},
            },
            {"id": "out", "block_id": "agent_output", "input_default": {"name": "doubled"}},
        ],
        "links": [
            common.link("items", "result", "step", "items"),
            common.link("step", "item", "double", "a"),
            common.link("double", "result", "out", "value"),
        ],
    }


def expected(n: int) -> list[int]:
    return [2 * i for i in range(n)]


SINKS = [("double", "a"), ("out", "value")]


def run_autoexec(args: argparse.Namespace, workdir: Any) -> common.Measurement:
    n = args.n
    with common.autoexec_cluster(args, workdir) as cluster:
        exec_ref: list[str] = []
        with (
            common.explain_midway(
                cluster.engine, exec_ref, "double", n // 2, SINKS, args.explain
            ) as midway,
            common.py_spy(cluster.worker.process.pid, args.py_spy),
        ):
            exec_id, seconds = common.run_graph(
                cluster, definition(), {"items": list(range(n))}, args.timeout, exec_ref
            )
        summary = common.execution_summary(cluster.engine, exec_id)
        view, view_seconds = common.timed_view(cluster.engine, exec_id, args.profile_view)
        nodes = sum(summary["node_executions"].values())
        _check(summary, view.outputs, n, cluster)
        common.print_summary(exec_id, summary, view_seconds)
        if args.explain:
            print("".join(midway) or "(the run ended before the mid-run EXPLAIN)")
            print(f"=== after the run ({n} executions of 'double') ===")
            common.explain_engine_queries(cluster.engine, exec_id, SINKS)
            common.analyze_tables(cluster.engine)
            print("\n=== after ANALYZE ===")
            common.explain_engine_queries(cluster.engine, exec_id, SINKS[:1])
        if cluster.probe_dir:
            time.sleep(1.0)  # let the pool processes write their last counters
    measurement = common.Measurement("autoexec", nodes, seconds)
    if cluster.probe_dir:
        # outputs: items 1, step 2N, double N, out 2N
        common.print_probe(cluster.probe_dir, nodes, outputs=5 * n + 1)
    return measurement


def _check(summary: dict[str, Any], outputs: dict[str, list[Any]], n: int, cluster: Any) -> None:
    problems = []
    if summary["status"] != "COMPLETED":
        problems.append(f"status {summary['status']} ({summary['error']})")
    if summary["node_executions"] != {"COMPLETED": 2 * n + 2}:
        problems.append(f"node executions {summary['node_executions']}, want {2 * n + 2} COMPLETED")
    if sorted(outputs.get("doubled", [])) != expected(n):
        problems.append(f"output 'doubled' has {len(outputs.get('doubled', []))} values, wrong")
    if problems:
        sys.exit("FAILED: " + "; ".join(problems) + "\n" + cluster.worker.log_tail())


def raw_group(n: int) -> Any:
    def build(raw: Any) -> tuple[Any, int, Any]:
        from celery import group

        signature = group(raw.multiply.s(i, 2) | raw.emit.s() for i in range(n))

        def check(values: list[Any]) -> None:
            if sorted(int(v) for v in values) != expected(n):
                sys.exit("FAILED: raw Celery results are wrong")

        return signature, 2 * n, check

    return build


BENCHMARK = common.per_node_benchmark("stream_10k", __doc__, 10_000, run_autoexec, raw_group, 3.0)

if __name__ == "__main__":
    BENCHMARK.main()
