"""Per-hop latency of a linear graph: an input, N calculators adding 1, one after the other, and
an output.

    x (agent_input) ──► add_0 ──► … ──► add_{N-1} (calculator: a + 1) ──► out (agent_output)

N + 2 node executions, each waiting for the one before: what a user of a sequential agent graph
feels. Each round is timed from submission to the end; the result is the median round divided by
N + 2 hops. Checked: COMPLETED, output ``y`` = x + N. Also printed: the median per-node
breakdown from the node executions' own timestamps (previous node ended → next created → queued
→ started → ended).

Raw Celery baseline, same run: a ``chain`` of N + 2 no-op tasks (``emit``), same rounds.

    .venv/bin/python -m benchmarks.chain               # N = 100, 3 rounds
    .venv/bin/python -m benchmarks.chain --n 20 --rounds 1
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import common, report

X = 1


def node_ids(n: int) -> list[str]:
    return ["x", *(f"add_{i}" for i in range(n)), "out"]


def definition(n: int) -> dict[str, Any]:
    ids = node_ids(n)
    nodes: list[dict[str, Any]] = [
        {"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}},
        *(
            {"id": node, "block_id": "calculator", "input_default": {"operation": "add", "b": 1}}
            for node in ids[1:-1]
        ),
        {"id": "out", "block_id": "agent_output", "input_default": {"name": "y"}},
    ]
    links = [common.link(a, "result", b, "a") for a, b in itertools.pairwise(ids[:-1])]
    links.append(common.link(ids[-2], "result", "out", "value"))
    return {"name": f"bench-chain-{n}", "nodes": nodes, "links": links}


def options(cli: argparse.ArgumentParser) -> None:
    cli.add_argument(
        "--rounds", type=common.positive_int, default=3, help="runs of each side (default 3)"
    )
    common.add_profiling_options(cli)


def run_autoexec(args: argparse.Namespace, workdir: Path) -> report.Result:
    """Median milliseconds per hop; prints the median breakdown per node."""
    from autoexec import api

    hops: int = args.n + 2
    with common.autoexec_cluster(args, workdir) as cluster:
        graph_id, _ = api.save_graph(definition(args.n), common.BENCH_USER, engine=cluster.engine)
        rounds, chains = [], []
        with common.py_spy(cluster.worker.process.pid, args.py_spy):
            _rounds(args, cluster, graph_id, rounds, chains)
        if cluster.probe_dir:
            time.sleep(1.0)  # let the pool processes write their last counters
    print(f"autoexec median per node: {report.format_breakdown(report.median_breakdown(chains))}")
    if cluster.probe_dir:
        common.print_probe(cluster.probe_dir, hops * args.rounds, outputs=hops * args.rounds)
    return _per_hop("autoexec", rounds, hops, "nodes")


def _rounds(
    args: argparse.Namespace,
    cluster: common.AutoexecCluster,
    graph_id: str,
    rounds: list[float],
    chains: list[list[report.Stamps]],
) -> None:
    from autoexec import api

    for _ in range(args.rounds):
        started = time.perf_counter()
        exec_id = api.execute_graph(graph_id, common.BENCH_USER, {"x": X}, engine=cluster.engine)
        common.wait_finished(cluster.engine, exec_id, args.timeout)
        rounds.append(time.perf_counter() - started)
        _check(cluster, exec_id, args.n)
        chains.append(_stamps(cluster.engine, exec_id, node_ids(args.n)))


def _check(cluster: common.AutoexecCluster, exec_id: str, n: int) -> None:
    summary = common.execution_summary(cluster.engine, exec_id)
    view, _ = common.timed_view(cluster.engine, exec_id)
    if summary["node_executions"] != {"COMPLETED": n + 2} or view.outputs.get("y") != [X + n]:
        sys.exit(
            f"FAILED: {summary['status']}, node executions {summary['node_executions']}, "
            f"output y {view.outputs.get('y')} (want [{X + n}])\n{cluster.worker.log_tail()}"
        )


def _stamps(engine: Any, exec_id: str, order: list[str]) -> list[report.Stamps]:
    from sqlalchemy import select

    from autoexec.store.tables import NodeExecution as N

    with engine.db.session() as session:
        rows = session.execute(
            select(N.node_id, N.created_at, N.queued_at, N.started_at, N.ended_at).where(
                N.graph_exec_id == exec_id
            )
        ).all()
    by_node = {row[0]: report.Stamps(*row[1:]) for row in rows}
    return [by_node[node] for node in order]


def run_raw(args: argparse.Namespace, workdir: Path) -> report.Result:
    """Median milliseconds per task of a Celery chain of N + 2 no-op tasks."""
    from celery import chain

    hops: int = args.n + 2
    rounds = []
    with common.raw_celery_worker(args, workdir) as cluster:
        raw = cluster.tasks
        for _ in range(args.rounds):
            signature = chain(raw.emit.s(X), *(raw.emit.s() for _ in range(hops - 1)))
            started = time.perf_counter()
            result = signature.apply_async()
            value = result.get(timeout=args.timeout)
            rounds.append(time.perf_counter() - started)
            if value != X:
                sys.exit(f"FAILED: the raw chain returned {value!r}, want {X}")
    return _per_hop("raw celery", rounds, hops, "tasks")


def _per_hop(label: str, rounds: list[float], hops: int, unit: str) -> report.Result:
    print(f"{label} rounds: {', '.join(f'{1000 * s / hops:.2f}' for s in rounds)} ms per hop")
    per_hop = 1000 * statistics.median(rounds) / hops
    return report.Result(per_hop, f"{per_hop:.2f} ms per hop ({hops} {unit})")


BENCHMARK = common.Benchmark(
    "chain", __doc__, 100, run_autoexec, run_raw, report.Target("ratio", 2.0), options
)

if __name__ == "__main__":
    BENCHMARK.main()
