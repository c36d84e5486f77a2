"""Counters loaded into a benchmark worker with ``celery worker -I benchmarks.worker_probe``.

Per task name (the task running in the process when it happened) it counts and times:
SQL statements by shape, transactions (commits), Redis commands, and messages published.
Each process writes ``$BENCH_PROBE_DIR/probe-<pid>.json`` after its tasks (at most every half
second) and at exit; :func:`load_probes` sums them. Nothing here changes what the engine does.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

PROBE_DIR_ENV = "BENCH_PROBE_DIR"
FLUSH_INTERVAL = 0.5

_IN_LIST = re.compile(r"\((?:%\([a-z_0-9]+\)s(?:, )?)+\)")
_VALUES_LIST = re.compile(r"VALUES (\([^)]*\))(?:, \([^)]*\))+")
_SPACES = re.compile(r"\s+")


def statement_shape(sql: str) -> str:
    """The statement with expanded IN / multi-row VALUES lists collapsed, on one line."""
    sql = _SPACES.sub(" ", sql).strip()
    sql = _IN_LIST.sub("(…)", sql)
    return _VALUES_LIST.sub(r"VALUES \1, …", sql)


class Probe:
    def __init__(self) -> None:
        self.task = "-"
        self.sql: Counter[tuple[str, str]] = Counter()
        self.sql_seconds: Counter[tuple[str, str]] = Counter()
        self.commits: Counter[str] = Counter()
        self.redis: Counter[tuple[str, str]] = Counter()
        self.redis_seconds: Counter[tuple[str, str]] = Counter()
        self.published: Counter[tuple[str, str]] = Counter()
        self.tasks: Counter[str] = Counter()
        self.task_seconds: Counter[str] = Counter()
        self.started: dict[str, float] = {}
        self.last_flush = 0.0

    def dump(self) -> dict[str, Any]:
        def pairs(counter: Counter[tuple[str, str]]) -> list[list[Any]]:
            return [[a, b, n] for (a, b), n in counter.items()]

        return {
            "sql": pairs(self.sql),
            "sql_seconds": pairs(self.sql_seconds),
            "commits": dict(self.commits),
            "redis": pairs(self.redis),
            "redis_seconds": pairs(self.redis_seconds),
            "published": pairs(self.published),
            "tasks": dict(self.tasks),
            "task_seconds": dict(self.task_seconds),
        }

    def flush(self, force: bool = False) -> None:
        directory = os.environ.get(PROBE_DIR_ENV)
        now = time.monotonic()
        if not directory or (not force and now - self.last_flush < FLUSH_INTERVAL):
            return
        self.last_flush = now
        path = Path(directory) / f"probe-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.dump()))
        tmp.replace(path)


PROBE = Probe()


def _install_sql() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        started = conn.info["bench_started"].pop()
        key = (PROBE.task, statement_shape(statement))
        PROBE.sql[key] += 1
        PROBE.sql_seconds[key] += time.perf_counter() - started

    @event.listens_for(Engine, "commit")
    def _commit(conn: Any) -> None:
        PROBE.commits[PROBE.task] += 1


def _install_redis() -> None:
    import redis

    original = redis.Redis.execute_command

    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, *args, **options)  # type: ignore[no-untyped-call]
        finally:
            key = (PROBE.task, str(args[0]).upper() if args else "?")
            PROBE.redis[key] += 1
            PROBE.redis_seconds[key] += time.perf_counter() - started  # type: ignore[assignment]

    redis.Redis.execute_command = execute_command  # type: ignore[method-assign]


def _install_celery() -> None:
    from celery import signals

    @signals.task_prerun.connect(weak=False)
    def _prerun(task_id: str, task: Any, **_: Any) -> None:
        PROBE.task = task.name
        PROBE.started[task_id] = time.perf_counter()

    @signals.task_postrun.connect(weak=False)
    def _postrun(task_id: str, task: Any, **_: Any) -> None:
        PROBE.tasks[task.name] += 1
        elapsed = time.perf_counter() - PROBE.started.pop(task_id, 0.0)
        PROBE.task_seconds[task.name] += elapsed  # type: ignore[assignment]
        PROBE.task = "-"
        PROBE.flush()

    @signals.before_task_publish.connect(weak=False)
    def _published(sender: str | None = None, **_: Any) -> None:
        PROBE.published[(PROBE.task, str(sender))] += 1

    @signals.worker_process_shutdown.connect(weak=False)
    def _shutdown(**_: Any) -> None:
        PROBE.flush(force=True)


if os.environ.get(PROBE_DIR_ENV):
    _install_sql()
    _install_redis()
    _install_celery()


def load_probes(directory: Path) -> Probe:
    """The sum of every process's counters in ``directory``."""
    total = Probe()
    for path in sorted(directory.glob("probe-*.json")):
        data = json.loads(path.read_text())
        for name in ("sql", "sql_seconds", "redis", "redis_seconds", "published"):
            counter: Counter[tuple[str, str]] = getattr(total, name)
            for a, b, n in data[name]:
                counter[(a, b)] += n
        for name in ("commits", "tasks", "task_seconds"):
            getattr(total, name).update(data[name])
    return total
