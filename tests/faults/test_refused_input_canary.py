"""A refused input's value in no log line, nor task event (issue 23, finding 5): a worker that
refuses a ``run_graph`` input (with JSON logs, Celery's trace logged the error's message, value
included, at INFO) names the refusal in its log and its events without the value; the sender's
error has the whole reason, naming the input."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.result import AsyncResult

from autoexec import api
from autoexec.errors import InputValidationError
from autoexec.tasks import run_graph
from tests.faults.conftest import FaultWorker, fault_worker
from tests.integration.conftest import Cluster
from tests.integration.test_engine import ADD_ONE, user
from tests.integration.test_task_events import task_events


@contextmanager
def plain_celery(worker: FaultWorker) -> Iterator[Celery]:
    """An app that knows nothing of autoexec, on the worker's broker and result backend."""
    settings = worker.engine.settings
    client = Celery(broker=settings.broker_url, backend=settings.effective_result_backend)
    try:
        yield client
    finally:
        client.close()


def send_refused(worker: FaultWorker, client: Celery, kwargs: dict[str, Any]) -> list[AsyncResult]:
    """The same refused request from autoexec's app and by name from a plain Celery app."""
    return [
        run_graph.apply_async(kwargs=kwargs),
        client.send_task("autoexec.run_graph", kwargs=kwargs, queue=worker.queue("INBOX")),
    ]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_refused_input_value_is_in_no_log_line_and_no_task_event(
    cluster: Cluster, tmp_path: Path, log_format: str
) -> None:
    canary = f"sk-canary-{secrets.token_hex(8)}"
    extra = {"AUTOEXEC_LOG_FORMAT": log_format}
    with (
        fault_worker(cluster, tmp_path / "worker.log", extra) as worker,
        plain_celery(worker) as client,
    ):
        owner = user()
        graph_id, _ = api.save_graph(ADD_ONE, owner, engine=worker.engine)
        kwargs = {"graph_id": graph_id, "user_id": owner, "inputs": {"x": canary}}
        with task_events(("*",)) as events:
            sent = send_refused(worker, client, kwargs)
            for result in sent:
                # The sender is told exactly what was wrong, naming the input and its value.
                with pytest.raises(InputValidationError, match=f"graph input 'x' = '{canary}'"):
                    result.get(timeout=30)
        log = worker.log()
    ids = {result.id for result in sent}
    refusals = [line for line in log.splitlines() if "raised expected" in line]
    assert sorted(id_ for id_ in ids if any(id_ in line for line in refusals)) == sorted(ids)
    assert all("InputValidationError(" in line for line in refusals)
    failed = [e for e in events if e["type"] == "task-failed" and e["uuid"] in ids]
    assert len(failed) == 2
    assert canary not in log
    assert canary not in repr(events)
