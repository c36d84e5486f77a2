"""The raw-Celery baseline: trivial tasks doing the same arithmetic as the benchmark graphs.

Its own Celery app, configured like autoexec's worker where it matters for speed (same broker,
JSON, late acks, reject on worker lost, prefetch 1, Redis result backend); run it with
``celery -A benchmarks.raw_celery worker -c 2 -Q $BENCH_RAW_QUEUE``.

- ``bench.multiply(a, b)``  what a ``calculator`` node does
- ``bench.emit(value)``     what an ``agent_output`` node does (returns the value); the no-op
- ``bench.fan_out(n, key)`` sends ``n`` ``bench.mark_started(key)`` tasks one by one, like a node
  streaming ``n`` items; the first of them to start records ``time.time()`` in Redis ``key``
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import redis
from celery import Celery
from kombu import Queue

from autoexec.settings import load_settings

RAW_QUEUE_ENV = "BENCH_RAW_QUEUE"
# "1": also what autoexec turns on beyond the brief's baseline (task events),
# to tell how much of the gap those settings explain.
RAW_EVENTS_ENV = "BENCH_RAW_EVENTS"


def raw_queue() -> str:
    return os.environ.get(RAW_QUEUE_ENV, "bench.raw")


def raw_config() -> dict[str, Any]:
    settings = load_settings()
    queue = raw_queue()
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.effective_result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "result_expires": 3600,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": queue,
        "task_queues": (Queue(queue),),
        "worker_hijack_root_logger": False,
        **(_autoexec_extras() if os.environ.get(RAW_EVENTS_ENV) == "1" else {}),
    }


def _autoexec_extras() -> dict[str, Any]:
    return {
        "task_send_sent_event": True,
        "worker_send_task_events": True,
    }


app = Celery("bench_raw")
app.conf.update(raw_config())


@app.task(name="bench.multiply")
def multiply(a: float, b: float) -> float:
    return a * b


@app.task(name="bench.emit")
def emit(value: Any) -> Any:
    return value


@app.task(name="bench.fan_out", ignore_result=True)
def fan_out(n: int, key: str) -> None:
    for _ in range(n):
        mark_started.delay(key)


@app.task(name="bench.mark_started", ignore_result=True)
def mark_started(key: str) -> None:
    _redis().set(key, repr(time.time()), nx=True, ex=3600)


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(load_settings().redis_url)
