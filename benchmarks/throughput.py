"""Throughput of independent executions: K executions of a 1-node graph (one ``calculator``)
against K independent raw Celery no-op tasks.

All K are submitted one after the other by this process (``api.execute_graph`` /
``apply_async``); the clock runs from the first submission until the last one has ended. With
the default settings a user has at most ``max_concurrent_runs_per_user`` (10) RUNNING executions;
the others wait QUEUED, as they would for any user.

    .venv/bin/python -m benchmarks.throughput            # K = 1,000
    .venv/bin/python -m benchmarks.throughput --n 200    # quick
    .venv/bin/python -m benchmarks.throughput --skip-raw --probe     # SQL/Redis/messages per task
    .venv/bin/python -m benchmarks.throughput --skip-raw --py-spy F  # then benchmarks.spy_summary F
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import common, independent, report


def run_autoexec(args: argparse.Namespace, workdir: Path) -> report.Result:
    """Executions per second."""
    with common.autoexec_cluster(args, workdir) as cluster:
        graph_id = independent.save_one_node_graph(cluster)
        with common.py_spy(cluster.worker.process.pid, args.py_spy):
            seconds, submitted = independent.run_executions(cluster, graph_id, args.n, args.timeout)
        if cluster.probe_dir:
            time.sleep(1.0)  # let the pool processes write their last counters
    print(f"autoexec: {args.n} executions in {seconds:.2f} s (submitting took {submitted:.2f} s)")
    if cluster.probe_dir:
        common.print_probe(cluster.probe_dir, args.n, outputs=args.n)
    return report.Result(args.n / seconds, f"{args.n / seconds:.1f} executions/s")


def run_raw(args: argparse.Namespace, workdir: Path) -> report.Result:
    """Tasks per second."""
    with common.raw_celery_worker(args, workdir) as raw:
        seconds = independent.run_raw_tasks(raw.tasks, args.n, args.timeout)
    print(f"raw celery: {args.n} tasks in {seconds:.2f} s")
    return report.Result(args.n / seconds, f"{args.n / seconds:.1f} tasks/s")


BENCHMARK = common.Benchmark(
    "throughput",
    __doc__,
    1_000,
    run_autoexec,
    run_raw,
    report.Target("ratio", 0.4, at_least=True),
    common.add_worker_profiling_options,
)

if __name__ == "__main__":
    BENCHMARK.main()
