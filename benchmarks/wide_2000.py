"""A 2,000-node graph: one graph input fanning out to 1,000 calculators, 999 of which feed an
agent_output each.

    x (agent_input) ──► mul_0 … mul_999 (calculator: x * i)
                        mul_i ──► out_i (agent_output "products")   for i < 999

N nodes (default 2,000) = 1 input + N/2 calculators + (N/2 - 1) outputs; every node runs once,
so N node executions. The run must end COMPLETED with N COMPLETED node executions and output
``products`` = {x*i : i < N/2 - 1}. Saving (validating) the graph is timed separately.

Raw Celery baseline, same run: one group of N tasks with the same shape: ``emit(x)`` (the input),
N/2 - 1 chains ``multiply(x, i) | emit()`` and one lone ``multiply``.

    .venv/bin/python -m benchmarks.wide_2000            # N = 2,000
    .venv/bin/python -m benchmarks.wide_2000 --n 200    # quick
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from benchmarks import common

X = 3


def shape(n: int) -> tuple[int, int]:
    """(calculators, outputs) for ``n`` nodes."""
    if n < 4:
        raise SystemExit("--n must be at least 4")
    calculators = n // 2
    return calculators, n - 1 - calculators


def definition(n: int) -> dict[str, Any]:
    calculators, outputs = shape(n)
    nodes: list[dict[str, Any]] = [
        {"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}}
    ]
    links: list[dict[str, Any]] = []
    for i in range(calculators):
        nodes.append(
            {
                "id": f"mul_{i}",
                "block_id": "calculator",
                "input_default": {"operation": "multiply", "b": i},
            }
        )
        links.append(common.link("x", "result", f"mul_{i}", "a"))
    for i in range(outputs):
        nodes.append(
            {"id": f"out_{i}", "block_id": "agent_output", "input_default": {"name": "products"}}
        )
        links.append(common.link(f"mul_{i}", "result", f"out_{i}", "value"))
    return {"name": f"bench-wide-{n}", "nodes": nodes, "links": links}


def expected(n: int) -> list[int]:
    _, outputs = shape(n)
    return sorted(X * i for i in range(outputs))


def run_autoexec(args: argparse.Namespace, workdir: Any) -> common.Measurement:
    from autoexec import api

    if args.explain:
        sys.exit("wide_2000 has no --explain: use benchmarks.stream_10k --explain")
    n = args.n
    graph = definition(n)
    with common.autoexec_cluster(args, workdir) as cluster:
        started = time.perf_counter()
        graph_id, _ = api.save_graph(graph, common.BENCH_USER, engine=cluster.engine)
        saved = time.perf_counter() - started
        print(f"save_graph ({n} nodes, validation included) took {saved:.2f} s")
        with common.py_spy(cluster.worker.process.pid, args.py_spy):
            started = time.perf_counter()
            exec_id = api.execute_graph(
                graph_id, common.BENCH_USER, {"x": X}, engine=cluster.engine
            )
            submitted = time.perf_counter() - started
            common.wait_finished(cluster.engine, exec_id, args.timeout)
            seconds = time.perf_counter() - started
        print(f"execute_graph (submission) took {submitted:.2f} s")
        summary = common.execution_summary(cluster.engine, exec_id)
        view, view_seconds = common.timed_view(cluster.engine, exec_id, args.profile_view)
        nodes = sum(summary["node_executions"].values())
        _check(summary, view.outputs, n, cluster)
        common.print_summary(exec_id, summary, view_seconds)
        if cluster.probe_dir:
            time.sleep(1.0)  # let the pool processes write their last counters
    if cluster.probe_dir:
        calculators, outputs = shape(n)
        common.print_probe(cluster.probe_dir, nodes, outputs=1 + calculators + 2 * outputs)
    return common.Measurement("autoexec", nodes, seconds)


def _check(summary: dict[str, Any], outputs: dict[str, list[Any]], n: int, cluster: Any) -> None:
    problems = []
    if summary["status"] != "COMPLETED":
        problems.append(f"status {summary['status']} ({summary['error']})")
    if summary["node_executions"] != {"COMPLETED": n}:
        problems.append(f"node executions {summary['node_executions']}, want {n} COMPLETED")
    if sorted(outputs.get("products", [])) != expected(n):
        problems.append(f"output 'products' has {len(outputs.get('products', []))} values, wrong")
    if problems:
        sys.exit("FAILED: " + "; ".join(problems) + "\n" + cluster.worker.log_tail())


def raw_group(n: int) -> Any:
    def build(raw: Any) -> tuple[Any, int, Any]:
        from celery import group

        calculators, outputs = shape(n)
        chains = [raw.multiply.s(X, i) | raw.emit.s() for i in range(outputs)]
        lone = [raw.multiply.s(X, i) for i in range(outputs, calculators)]
        signature = group([raw.emit.s(X), *chains, *lone])

        def check(values: list[Any]) -> None:
            got = sorted(int(v) for v in values[1 : 1 + outputs])
            if values[0] != X or got != expected(n):
                sys.exit("FAILED: raw Celery results are wrong")

        return signature, 1 + 2 * outputs + len(lone), check

    return build


BENCHMARK = common.per_node_benchmark("wide_2000", __doc__, 2_000, run_autoexec, raw_group, 3.0)

if __name__ == "__main__":
    BENCHMARK.main()
