"""A task that a service outage fails is retried after a jittered, growing wait, first in its own
process: no message is sent for a short outage, and what runs again knows it is a retry (not a
re-delivery, which would count a lost worker)."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Task

from autoexec import tasks
from autoexec.celery_app import app
from autoexec.store.transaction import DatabaseOperationalError


def database_down() -> DatabaseOperationalError:
    return DatabaseOperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))


@app.task(name="tests.unit.fails_first", bind=True, **tasks.RETRY_POLICY)
def fails_first(self: Task[Any, Any], failures: int, runs: list[tuple[int, bool]]) -> str:
    delivery = self.request.delivery_info or {}
    runs.append((self.request.retries, bool(delivery.get("redelivered"))))
    if len(runs) <= failures:
        raise database_down()
    return "done"


def test_a_task_failed_by_a_service_runs_again_in_its_process_as_a_retry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr(tasks.time, "sleep", waits.append)
    runs: list[tuple[int, bool]] = []

    result = fails_first.apply(args=[3, runs])  # one message, run four times

    assert result.get() == "done"
    assert runs == [(0, False), (1, False), (2, False), (3, False)]
    # Each wait in the upper half of a doubling one (1, 2, 4 s): never all at once again.
    assert len(waits) == 3
    assert all(low <= wait <= 2 * low for low, wait in zip([0.5, 1, 2], waits, strict=True))
