"""What every benchmark needs: a private database and queues, real workers in subprocesses,
a cheap wait for the end of an execution, and the report with the ratio against raw Celery.

The autoexec side runs ``celery -A autoexec worker -c 2`` (prefork) on queues of its own and a
fresh migrated database ``autoexec_bench_<random>``; the raw side runs
``celery -A benchmarks.raw_celery worker -c 2`` on a queue of its own. Only one worker runs at a
time, so the two measurements do not share the CPU. Queues and the database are deleted at the
end.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu import Connection
from sqlalchemy import func, make_url, select

from benchmarks import report

ROOT = Path(__file__).resolve().parents[1]
WORKER_START_TIMEOUT = 60.0
BENCH_USER = "bench-user"


# --- command line ---------------------------------------------------------------------------


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser(description: str, default_n: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--n", type=positive_int, default=default_n, help=f"size (default {default_n})")
    p.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds before giving up")
    p.add_argument("--loglevel", default="info", help="worker log level (default info)")
    p.add_argument("--skip-raw", action="store_true", help="do not measure raw Celery")
    p.add_argument(
        "--raw-events",
        action="store_true",
        help="give the raw Celery baseline autoexec's extra Celery settings too (task events), "
        "to see how much of the ratio they explain",
    )
    p.add_argument("--keep-logs", action="store_true", help="print where the worker logs are")
    return p


def add_profiling_options(p: argparse.ArgumentParser) -> None:
    """The profiling options of the throughput studies (``stream_10k``, ``wide_2000``)."""
    add_worker_profiling_options(p)
    p.add_argument(
        "--explain",
        action="store_true",
        help="EXPLAIN ANALYZE the engine's per-step queries midway through the run (on the live "
        "data) and after it",
    )
    p.add_argument(
        "--profile-view", action="store_true", help="cProfile api.get_execution after the run"
    )


def add_worker_profiling_options(p: argparse.ArgumentParser) -> None:
    """``--probe`` and ``--py-spy``: what the autoexec worker does, per task."""
    p.add_argument(
        "--probe",
        action="store_true",
        help="count SQL statements, transactions, Redis commands and messages per task in the "
        "autoexec worker (benchmarks.worker_probe; adds some overhead)",
    )
    p.add_argument(
        "--py-spy",
        metavar="FILE",
        help="record the autoexec worker and its pool with py-spy into FILE (collapsed stacks)",
    )


# --- services -------------------------------------------------------------------------------


def settings_env() -> dict[str, str]:
    from autoexec.settings import load_settings

    settings = load_settings()
    return {
        "AUTOEXEC_BROKER_URL": settings.broker_url,
        "AUTOEXEC_REDIS_URL": settings.redis_url,
        "AUTOEXEC_DATABASE_URL": settings.database_url,
    }


@contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A new database ``autoexec_bench_<random>`` migrated to head; dropped at the end."""
    from autoexec.store.db import drop_database, ensure_database_exists
    from autoexec.store.migrate import upgrade_database

    name = f"autoexec_bench_{secrets.token_hex(6)}"
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    ensure_database_exists(url)
    try:
        upgrade_database(url)
        yield url
    finally:
        drop_database(url)


def delete_queues(broker_url: str, queues: list[str]) -> None:
    with Connection(broker_url) as conn:
        channel = conn.channel()
        for queue in queues:
            channel.queue_delete(queue)  # type: ignore[attr-defined]


# --- workers --------------------------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    name: str
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def worker_process(
    app_module: str,
    queues: list[str],
    env: dict[str, str],
    concurrency: int,
    log_path: Path,
    loglevel: str,
    ping: Callable[[str], bool],
    extra: list[str] | None = None,
) -> Iterator[Worker]:
    name = f"bench-{secrets.token_hex(4)}@{socket.gethostname()}"
    command = [
        sys.executable, "-m", "celery", "-A", app_module, "worker", "-l", loglevel,
        "-P", "prefork", "-c", str(concurrency), "-Q", ",".join(queues), "-n", name,
        "--without-gossip", "--without-mingle", "--without-heartbeat", *(extra or []),
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = Worker(process, name, log_path)
    try:
        _wait_until_ready(worker, ping)
        yield worker
    finally:
        _stop(process)


def _wait_until_ready(worker: Worker, ping: Callable[[str], bool]) -> None:
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise RuntimeError(f"worker exited at start:\n{worker.log_tail()}")
        if ping(worker.name):
            return
        time.sleep(0.2)
    raise RuntimeError(f"worker not ready in {WORKER_START_TIMEOUT}s:\n{worker.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def celery_ping(app: Any) -> Callable[[str], bool]:
    def ping(name: str) -> bool:
        return bool(app.control.ping(destination=[name], timeout=0.5))

    return ping


@contextmanager
def py_spy(pid: int, output: str | None) -> Iterator[None]:
    """``py-spy record`` of the worker and its pool processes while the block runs."""
    if not output:
        yield
        return
    spy_bin = Path(sys.executable).with_name("py-spy")
    command = [
        str(spy_bin), "record", "--subprocesses", "--idle", "--format", "raw", "--rate", "200",
        "--nonblocking", "-o", output, "-p", str(pid),
    ]  # fmt: skip
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


# --- the autoexec side ----------------------------------------------------------------------


@dataclass
class AutoexecCluster:
    engine: Any
    database_url: str
    worker: Worker
    probe_dir: Path | None
    env: dict[str, str] = field(default_factory=dict)


@contextmanager
def autoexec_cluster(args: argparse.Namespace, workdir: Path) -> Iterator[AutoexecCluster]:
    """A fresh database, private queues and ``celery -A autoexec worker -c N`` on them."""
    from autoexec.celery_app import app
    from autoexec.tasks import reconfigure

    base = settings_env()
    tag = secrets.token_hex(4)
    queues = {
        "AUTOEXEC_GRAPH_QUEUE": f"bench.autoexec.graphs.{tag}",
        "AUTOEXEC_NODE_QUEUE": f"bench.autoexec.nodes.{tag}",
        "AUTOEXEC_INBOX_QUEUE": f"bench.autoexec.inbox.{tag}",
    }
    probe_dir = workdir / "probe" if getattr(args, "probe", False) else None
    extra_env = {"BENCH_PROBE_DIR": str(probe_dir)} if probe_dir else {}
    extra_args = ["-I", "benchmarks.worker_probe"] if probe_dir else []
    if probe_dir:
        probe_dir.mkdir()
    with bench_database(base["AUTOEXEC_DATABASE_URL"]) as url:
        env = {**base, "AUTOEXEC_DATABASE_URL": url, **queues}
        engine = reconfigure(env)
        try:
            with worker_process(
                "autoexec", list(queues.values()), {**env, **extra_env}, args.concurrency,
                workdir / "autoexec-worker.log", args.loglevel, celery_ping(app), extra_args,
            ) as worker:  # fmt: skip
                yield AutoexecCluster(engine, url, worker, probe_dir, env)
        finally:
            engine.db.dispose()
            delete_queues(base["AUTOEXEC_BROKER_URL"], list(queues.values()))


def run_graph(
    cluster: AutoexecCluster,
    definition: dict[str, Any],
    inputs: dict[str, Any],
    timeout: float,
    exec_ref: list[str] | None = None,
) -> tuple[str, float]:
    """Save, submit and wait for one execution; (id, seconds from submit to its end).

    The id is also appended to ``exec_ref`` as soon as it is known.
    """
    from autoexec import api

    graph_id, _ = api.save_graph(definition, BENCH_USER, engine=cluster.engine)
    started = time.perf_counter()
    exec_id = api.execute_graph(graph_id, BENCH_USER, inputs, engine=cluster.engine)
    if exec_ref is not None:
        exec_ref.append(exec_id)
    wait_finished(cluster.engine, exec_id, timeout)
    return exec_id, time.perf_counter() - started


def wait_finished(engine: Any, exec_id: str, timeout: float) -> str:
    """Wait for a terminal status, reading only the execution's status row.

    ``api.wait`` would re-read every node execution and output each half second, which costs
    O(size of the execution) per poll and competes with the worker for the database.
    """
    from autoexec.coordination import Keys
    from autoexec.statuses import TERMINAL
    from autoexec.store.tables import GraphExecution

    deadline = time.monotonic() + timeout
    pubsub = engine.coordinator.client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(Keys.events(exec_id))
    try:
        while True:
            with engine.db.session() as session:
                stmt = select(GraphExecution.status).where(GraphExecution.id == exec_id)
                status = session.scalar(stmt)
            if status in TERMINAL:
                return str(status.value)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"execution {exec_id} still {status} after {timeout}s")
            pubsub.get_message(timeout=min(remaining, 0.2))
    finally:
        pubsub.close()


def execution_summary(engine: Any, exec_id: str) -> dict[str, Any]:
    """Status, stats, node-execution counts by status, and DB-side start/end of one run."""
    from sqlalchemy import func

    from autoexec.store.tables import GraphExecution, NodeExecution

    with engine.db.session() as session:
        row = session.get(GraphExecution, exec_id)
        counts = session.execute(
            select(NodeExecution.status, func.count())
            .where(NodeExecution.graph_exec_id == exec_id)
            .group_by(NodeExecution.status)
        ).all()
        assert row is not None
        db_seconds = (
            (row.ended_at - row.started_at).total_seconds()
            if row.ended_at and row.started_at
            else None
        )
        return {
            "status": row.status.value,
            "stats": row.stats,
            "error": row.error,
            "node_executions": {status.value: n for status, n in counts},
            "running_seconds": db_seconds,
        }


def print_summary(exec_id: str, summary: dict[str, Any], view_seconds: float) -> None:
    print(
        f"execution {exec_id}: {summary['status']}, node executions "
        f"{summary['node_executions']}, DB running time {summary['running_seconds']:.2f} s"
    )
    print(f"api.get_execution (reads the whole execution) took {view_seconds:.2f} s")


def timed_view(engine: Any, exec_id: str, profile: bool = False) -> tuple[Any, float]:
    """``api.get_execution`` once, and how long it took (it reads the whole execution)."""
    from autoexec import api

    started = time.perf_counter()
    if profile:
        print("\n--- cProfile of api.get_execution ---")
        view = profile_call(lambda: api.get_execution(exec_id, BENCH_USER, engine=engine))
    else:
        view = api.get_execution(exec_id, BENCH_USER, engine=engine)
    return view, time.perf_counter() - started


# --- the raw Celery side --------------------------------------------------------------------


@dataclass
class RawCluster:
    tasks: Any  # the module benchmarks.raw_celery
    worker: Worker


@contextmanager
def raw_celery_worker(args: argparse.Namespace, workdir: Path) -> Iterator[RawCluster]:
    """``celery -A benchmarks.raw_celery worker -c N`` on a private queue."""
    from benchmarks import raw_celery

    queue = f"bench.raw.{secrets.token_hex(4)}"
    env = {
        **settings_env(),
        raw_celery.RAW_QUEUE_ENV: queue,
        raw_celery.RAW_EVENTS_ENV: "1" if args.raw_events else "0",
    }
    os.environ.update(env)
    raw_celery.app.conf.update(raw_celery.raw_config())
    try:
        with worker_process(
            "benchmarks.raw_celery", [queue], env, args.concurrency,
            workdir / "raw-worker.log", args.loglevel, celery_ping(raw_celery.app),
        ) as worker:  # fmt: skip
            yield RawCluster(raw_celery, worker)
    finally:
        delete_queues(env["AUTOEXEC_BROKER_URL"], [queue])


# --- the report -----------------------------------------------------------------------------


@dataclass
class Measurement:
    label: str
    units: int  # node executions (autoexec) or tasks (raw Celery)
    seconds: float

    @property
    def per_second(self) -> float:
        return self.units / self.seconds

    @property
    def per_unit_ms(self) -> float:
        return 1000 * self.seconds / self.units


def print_measurement(m: Measurement, unit: str) -> None:
    print(
        f"{m.label}: {m.units} {unit} in {m.seconds:.2f} s = {m.per_second:.1f} {unit}/s "
        f"({m.per_unit_ms:.2f} ms per {unit.rstrip('s')})"
    )


def print_probe(probe_dir: Path, nodes: int, outputs: int, top: int = 25) -> None:
    """Statements, transactions, Redis commands and messages, per task and per unit of work."""
    from benchmarks.worker_probe import load_probes

    probe = load_probes(probe_dir)
    print("\n--- worker probe (per task name) ---")
    for name, count in sorted(probe.tasks.items()):
        sql = sum(n for (task, _), n in probe.sql.items() if task == name)
        sql_s = sum(s for (task, _), s in probe.sql_seconds.items() if task == name)
        rds = sum(n for (task, _), n in probe.redis.items() if task == name)
        pub = sum(n for (task, _), n in probe.published.items() if task == name)
        print(
            f"{name}: {count} tasks, {probe.task_seconds[name]:.1f} s in tasks, "
            f"{sql} SQL ({sql_s:.1f} s, {sql / count:.1f}/task), "
            f"{probe.commits[name]} commits ({probe.commits[name] / count:.1f}/task), "
            f"{rds} Redis cmds ({rds / count:.1f}/task), {pub} messages published"
        )
    total_sql = sum(probe.sql.values())
    total_commits = sum(probe.commits.values())
    print(
        f"total: {total_sql} SQL statements = {total_sql / nodes:.1f} per node execution, "
        f"{total_sql / max(outputs, 1):.1f} per output; {total_commits} commits = "
        f"{total_commits / nodes:.1f} per node execution; "
        f"{sum(probe.redis.values()) / nodes:.1f} Redis commands per node execution"
    )
    print(f"\ntop {top} SQL statement shapes by total time (task | count | seconds | statement):")
    ranked = sorted(probe.sql_seconds.items(), key=lambda kv: -kv[1])[:top]
    for (task, shape), seconds in ranked:
        count = probe.sql[(task, shape)]
        print(f"  {task.removeprefix('autoexec.'):14} {count:7d} {seconds:7.2f}s  {shape[:220]}")
    print("\nRedis commands (task | command | count | seconds):")
    for (task, cmd), count in sorted(probe.redis.items(), key=lambda kv: -kv[1])[:12]:
        seconds = probe.redis_seconds[(task, cmd)]
        print(f"  {task.removeprefix('autoexec.'):14} {cmd:10} {count:7d} {seconds:7.2f}s")
    print("messages published (by task running | task sent | count):")
    for (task, sent), count in sorted(probe.published.items(), key=lambda kv: -kv[1]):
        print(f"  {task.removeprefix('autoexec.'):14} {sent:24} {count:7d}")


def link(source: str, source_name: str, sink: str, sink_name: str) -> dict[str, str]:
    return {
        "source_id": source,
        "source_name": source_name,
        "sink_id": sink,
        "sink_name": sink_name,
    }


def handle_signals() -> None:
    """SIGINT and SIGTERM end the run through its cleanup (worker stopped, queues and database
    deleted), also when started in the background, where a shell makes SIGINT ignored."""

    def stop(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def print_header(title: str, args: argparse.Namespace) -> None:
    handle_signals()
    print(
        f"== {title} == n={args.n} concurrency={args.concurrency} cpus={os.cpu_count()} "
        f"date={time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )


@contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="autoexec-bench-"))
    yield path
    if keep:
        print(f"(worker logs and probe files in {path})")
    else:
        for child in sorted(path.rglob("*"), reverse=True):
            child.unlink() if child.is_file() else child.rmdir()
        path.rmdir()


def dump_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))


def measure_raw(
    args: argparse.Namespace, workdir_path: Path, label: str, build: Callable[[Any], Any]
) -> Measurement:
    """Send ``build(raw_celery)`` (a group) to a raw Celery worker and time it to the end.

    ``build`` returns ``(signature, task_count, check)``; ``check`` gets the group's results.
    """
    with raw_celery_worker(args, workdir_path) as raw:
        signature, tasks, check = build(raw.tasks)
        started = time.perf_counter()
        result = signature.apply_async()
        values = result.get(timeout=args.timeout, disable_sync_subtasks=False)
        seconds = time.perf_counter() - started
        check(values)
        result.forget()
    return Measurement(label + (" (with events)" if args.raw_events else ""), tasks, seconds)


# --- query plans ----------------------------------------------------------------------------


def capture_statements(engine: Any, call: Callable[[Any], object]) -> list[tuple[str, Any]]:
    """The SQL (text and parameters, as sent to psycopg2) that ``call(session)`` executes.

    The session is rolled back, so only read-only calls make sense here.
    """
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    captured: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    with engine.db.engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", record)
        try:
            with Session(bind=conn) as session:
                call(session)
                session.rollback()
        finally:
            event.remove(conn, "before_cursor_execute", record)
    return captured


def explain(engine: Any, statement: str, parameters: Any, analyze: bool = True) -> str:
    """The plan PostgreSQL makes for ``statement`` with ``parameters`` (psycopg2 inlines them
    client-side, so the server plans with the literal values, which is what lets a query match
    a partial index such as ``WHERE status = 'INCOMPLETE'``)."""
    options = "ANALYZE, BUFFERS, COSTS" if analyze else "COSTS"
    with engine.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(f"EXPLAIN ({options}) {statement}", parameters).all()
        conn.rollback()
    return "\n".join(row[0] for row in rows)


def print_plans(engine: Any, title: str, call: Callable[[Any], object]) -> None:
    for statement, parameters in capture_statements(engine, call):
        print(f"\n--- {title} ---")
        print(" ".join(statement.split()))
        print(f"parameters: {parameters}")
        print(explain(engine, statement, parameters))


def analyze_tables(engine: Any) -> None:
    with engine.db.engine.connect() as conn:
        for table in ("node_executions", "node_execution_inputs", "node_execution_outputs"):
            conn.exec_driver_sql(f"ANALYZE {table}")
        conn.commit()


def table_stats(engine: Any) -> str:
    """Live/dead tuples and the last (auto)vacuum/analyze of the execution tables."""
    with engine.db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT relname, n_live_tup, n_dead_tup, last_autovacuum, last_autoanalyze"
            " FROM pg_stat_user_tables WHERE relname LIKE %(pattern)s ORDER BY relname",
            {"pattern": "node_execution%"},
        ).all()
    return "\n".join(
        f"  {r[0]}: live {r[1]}, dead {r[2]}, last autovacuum {r[3]}, last autoanalyze {r[4]}"
        for r in rows
    )


def engine_queries(graph: Any, exec_id: str, sinks: list[tuple[str, str]]) -> dict[str, Any]:
    """The engine's per-step queries for one execution, as read-only calls for
    :func:`print_plans`: delivery target lookups into ``sinks`` (node, pin), the undelivered
    outputs batch, the pending-work check and the undispatched lookup."""
    from autoexec.store import executions as repo
    from autoexec.store.dataflow_sql import SqlDataflowStore

    calls: dict[str, Any] = {
        f"SqlDataflowStore.earliest_incomplete_lacking({node!r}, {pin!r})": (
            lambda s, node=node, pin=pin: SqlDataflowStore(
                s, graph, exec_id
            ).earliest_incomplete_lacking(node, pin)
        )
        for node, pin in sinks
    }
    calls["executions.undelivered_outputs(limit=200)"] = lambda s: repo.undelivered_outputs(
        s, exec_id, 200
    )
    calls["executions.has_pending_work"] = lambda s: repo.has_pending_work(s, exec_id)
    calls["executions.claim_task_ids"] = lambda s: repo.claim_task_ids(s, exec_id)
    return calls


def explain_engine_queries(engine: Any, exec_id: str, sinks: list[tuple[str, str]]) -> None:
    from autoexec.store.graphs import load_graph
    from autoexec.store.tables import GraphExecution

    with engine.db.session() as session:
        execution = session.get(GraphExecution, exec_id)
        graph = load_graph(session, execution.graph_id, execution.graph_version)
    print("table statistics:\n" + table_stats(engine))
    for title, call in engine_queries(graph, exec_id, sinks).items():
        print_plans(engine, title, call)


@contextmanager
def explain_midway(
    engine: Any, exec_ref: list[str], count_node: str, threshold: int,
    sinks: list[tuple[str, str]], enabled: bool,
) -> Iterator[list[str]]:  # fmt: skip
    """While the block runs, once ``count_node`` has ``threshold`` executions, EXPLAIN ANALYZE
    the engine's per-step queries on the live data; the report is printed after the block."""
    import contextlib
    import io
    import threading

    from autoexec.store.tables import NodeExecution

    report: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(1.0):
            if not exec_ref:
                continue
            with engine.db.session() as session:
                count = session.scalar(
                    select(func.count()).where(
                        NodeExecution.graph_exec_id == exec_ref[0],
                        NodeExecution.node_id == count_node,
                    )
                )
            if (count or 0) >= threshold:
                buffer = io.StringIO()
                with contextlib.redirect_stdout(buffer):
                    print(f"=== mid-run: {count} executions of {count_node!r} ===")
                    explain_engine_queries(engine, exec_ref[0], sinks)
                report.append(buffer.getvalue())
                return

    thread = threading.Thread(target=watch, daemon=True) if enabled else None
    if thread:
        thread.start()
    try:
        yield report
    finally:
        stop.set()
        if thread:
            thread.join()


def profile_call(call: Callable[[], Any], top: int = 20) -> Any:
    """Run ``call`` under cProfile and print the ``top`` functions by cumulative time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    result = profiler.runcall(call)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)
    return result


@dataclass(frozen=True)
class Benchmark:
    """One command: autoexec, then raw Celery on the same work (unless ``--skip-raw``), then the
    summary line with the ratio, printed last."""

    name: str
    doc: str  # the module's docstring; its first line is the command's description
    default_n: int
    run_autoexec: Callable[[argparse.Namespace, Path], report.Result]
    run_raw: Callable[[argparse.Namespace, Path], report.Result]
    target: report.Target
    options: Callable[[argparse.ArgumentParser], None] | None = None

    def main(self) -> None:
        cli = parser(self.doc.split("\n")[0], default_n=self.default_n)
        if self.options:
            self.options(cli)
        args = cli.parse_args()
        print_header(self.name, args)
        with workdir(args.keep_logs) as path:
            autoexec = self.run_autoexec(args, path)
            raw = None if args.skip_raw else self.run_raw(args, path)
        print()
        print(report.summary_line(self.name, autoexec, raw, self.target))


def per_node_benchmark(
    name: str,
    doc: str,
    default_n: int,
    run_autoexec: Callable[[argparse.Namespace, Path], Measurement],
    raw_group: Callable[[int], Callable[[Any], Any]],
    max_ratio: float,
) -> Benchmark:
    """A throughput benchmark: time per node execution against time per raw Celery task."""

    def autoexec(args: argparse.Namespace, path: Path) -> report.Result:
        mine = run_autoexec(args, path)
        print_measurement(mine, "nodes")
        return report.Result(mine.per_unit_ms, f"{mine.per_unit_ms:.2f} ms per node")

    def raw(args: argparse.Namespace, path: Path) -> report.Result:
        theirs = measure_raw(args, path, "raw celery", raw_group(args.n))
        print_measurement(theirs, "tasks")
        return report.Result(theirs.per_unit_ms, f"{theirs.per_unit_ms:.2f} ms per task")

    target = report.Target("ratio", max_ratio)
    return Benchmark(name, doc, default_n, autoexec, raw, target, add_profiling_options)


# --- memory ---------------------------------------------------------------------------------


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children (a prefork worker and its pool), from /proc."""
    proc = Path("/proc")
    children = [
        int(entry.name)
        for entry in proc.iterdir()
        if entry.name.isdigit() and _parent_of(entry) == pid
    ]
    total_kb = sum(_rss_kb(proc / str(p)) for p in [pid, *children])
    return total_kb / 1024


def _parent_of(entry: Path) -> int | None:
    try:
        return report.parent_pid((entry / "stat").read_text())
    except (OSError, IndexError, ValueError):
        return None  # the process ended while we looked


def _rss_kb(entry: Path) -> int:
    try:
        return report.vm_rss_kb((entry / "status").read_text())
    except OSError:
        return 0
