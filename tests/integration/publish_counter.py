"""Counts the task messages a process publishes, by task name, in a Redis hash.

Loaded into test workers through ``AUTOEXEC_BLOCK_MODULES`` (it registers no block) and imported
by the test process itself; it counts only while ``AUTOEXEC_TEST_PUBLISH_COUNTER`` names the
hash, so the count is of real messages sent to the broker by every process of the test.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import redis
from celery.signals import before_task_publish

from autoexec.settings import get_settings

ENV = "AUTOEXEC_TEST_PUBLISH_COUNTER"
MODULE = __name__


def counter_key(tag: str) -> str:
    return f"autoexec-test:published:{tag}"


@functools.cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url)


@before_task_publish.connect(weak=False, dispatch_uid="autoexec-test-publish-counter")
def _count(sender: str | None = None, **_: Any) -> None:
    tag = os.environ.get(ENV)
    if tag and sender:
        _client().hincrby(counter_key(tag), sender, 1)


def published(tag: str) -> dict[str, int]:
    """Messages published under ``tag`` so far, by task name."""
    counts = _client().hgetall(counter_key(tag))
    return {name.decode(): int(count) for name, count in counts.items()}


def forget(tag: str) -> None:
    _client().delete(counter_key(tag))
