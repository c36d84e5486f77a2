"""Worker memory: resident memory (RSS) of the worker, its main process plus its pool processes
(read from /proc), before and after K executions of a 1-node graph, against the raw Celery
worker's growth over K no-op tasks.

Both sides first run a warm-up of ``--warmup`` units (default 20), so that imports, connections
and caches that any first piece of work sets up are in "before"; then K units as in
``throughput``; "after" is read once all have ended.

    .venv/bin/python -m benchmarks.memory            # K = 2,000
    .venv/bin/python -m benchmarks.memory --n 300    # quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import common, independent, report


def options(cli: argparse.ArgumentParser) -> None:
    cli.add_argument("--warmup", type=int, default=20, help="units before 'before' (default 20)")


def run_autoexec(args: argparse.Namespace, workdir: Path) -> report.Result:
    """RSS growth in MB over ``args.n`` executions."""
    with common.autoexec_cluster(args, workdir) as cluster:
        graph_id = independent.save_one_node_graph(cluster)
        independent.run_executions(cluster, graph_id, args.warmup, args.timeout)
        before = common.process_tree_rss_mb(cluster.worker.process.pid)
        independent.run_executions(cluster, graph_id, args.n, args.timeout)
        after = common.process_tree_rss_mb(cluster.worker.process.pid)
    return _growth("autoexec", args.n, "executions", before, after)


def run_raw(args: argparse.Namespace, workdir: Path) -> report.Result:
    """RSS growth in MB of the raw Celery worker over ``args.n`` tasks."""
    with common.raw_celery_worker(args, workdir) as raw:
        pid = raw.worker.process.pid
        independent.run_raw_tasks(raw.tasks, args.warmup, args.timeout)
        before = common.process_tree_rss_mb(pid)
        independent.run_raw_tasks(raw.tasks, args.n, args.timeout)
        after = common.process_tree_rss_mb(pid)
    return _growth("raw celery", args.n, "tasks", before, after)


def _growth(label: str, n: int, unit: str, before: float, after: float) -> report.Result:
    print(f"{label}: worker RSS {before:.1f} MB before, {after:.1f} MB after {n} {unit}")
    growth = after - before
    return report.Result(growth, f"{growth:+.1f} MB RSS over {n} {unit} ({after:.0f} MB after)")


BENCHMARK = common.Benchmark(
    "memory", __doc__, 2_000, run_autoexec, run_raw, report.Target("MB", 20.0), options
)

if __name__ == "__main__":
    BENCHMARK.main()
