"""Signed task messages (issue 23, finding 6): with AUTOEXEC_TASK_SIGNING_KEY set, a worker runs
``run_graph`` and ``cancel_graph`` from what autoexec sends (signed with the key), and refuses
an unsigned, forged or changed message, which is dead-lettered and its sender told why; the
worker's log never shows the key."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from sqlalchemy import func, select

from autoexec import api
from autoexec.celery_app import app
from autoexec.poison import PoisonMessageError
from autoexec.signing import SIGNATURE_HEADER, signature
from autoexec.statuses import ExecutionStatus
from autoexec.store.tables import GraphExecution
from autoexec.tasks import run_graph
from tests.faults.conftest import FaultWorker, fault_worker
from tests.integration.conftest import Cluster
from tests.integration.test_engine import ADD_ONE, user
from tests.waiting import wait_until

S = ExecutionStatus
KEY = secrets.token_hex(16)
RUN = "autoexec.run_graph"


@pytest.fixture(scope="module")
def worker(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorker]:
    """A worker with the key; this process sends with it too."""
    log_path = tmp_path_factory.mktemp("signed") / "worker.log"
    with fault_worker(cluster, log_path, {"AUTOEXEC_TASK_SIGNING_KEY": KEY}) as started:
        yield started


@pytest.fixture
def client(worker: FaultWorker) -> Iterator[Celery]:
    """An app without autoexec (nor the key, unless it signs), on the worker's broker."""
    settings = worker.engine.settings
    plain = Celery(broker=settings.broker_url, backend=settings.effective_result_backend)
    try:
        yield plain
    finally:
        plain.close()


def saved_graph(worker: FaultWorker) -> tuple[str, str]:
    owner = user()
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=worker.engine)
    return owner, graph_id


def test_what_autoexec_sends_is_signed_and_runs(worker: FaultWorker) -> None:
    owner, graph_id = saved_graph(worker)
    by_api = api.execute_graph(graph_id, owner, {"x": 1}, engine=worker.engine)
    kwargs = {"graph_id": graph_id, "user_id": owner, "inputs": {"x": 2}}
    by_task = str(run_graph.apply_async(kwargs=kwargs).get(timeout=30))
    for exec_id, expected in ((by_api, 2), (by_task, 3)):
        view = api.wait(exec_id, owner, timeout=60, engine=worker.engine)
        assert (view.status, view.outputs) == (S.COMPLETED, {"sum": [expected]})
    cancel = {"graph_exec_id": by_task, "user_id": owner}
    answer = app.send_task("autoexec.cancel_graph", kwargs=cancel).get(timeout=30)
    assert "COMPLETED" in str(answer)


def send(
    client: Celery, worker: FaultWorker, name: str, kwargs: dict[str, Any], sign: str | None
) -> str:
    """Send ``name`` from the plain app with ``sign`` as its signature header (none if None);
    the reason the sender is given for its refusal."""
    task_id = str(uuid.uuid4())
    headers = {} if sign is None else {SIGNATURE_HEADER: sign}
    sent = client.send_task(
        name, kwargs=kwargs, queue=worker.queue("INBOX"), task_id=task_id, headers=headers
    )
    with pytest.raises(PoisonMessageError) as refused:
        sent.get(timeout=30)
    return str(refused.value)


def test_an_unsigned_forged_or_changed_message_is_refused_with_the_reason(
    worker: FaultWorker, client: Celery
) -> None:
    owner, graph_id = saved_graph(worker)
    mallory = user()
    kwargs = {"graph_id": graph_id, "user_id": owner, "inputs": {"x": 1}}
    as_owner = signature(KEY, "another-id", RUN, [], kwargs)  # a real signature, another message
    forged = signature(secrets.token_hex(16), "id", RUN, [], kwargs)
    cancel = {"graph_exec_id": str(uuid.uuid4()), "user_id": mallory}
    reasons = [
        send(client, worker, RUN, kwargs, None),
        send(client, worker, RUN, kwargs, forged),
        send(client, worker, RUN, {**kwargs, "user_id": mallory}, as_owner),
        send(client, worker, "autoexec.cancel_graph", cancel, None),
    ]
    assert reasons[0].startswith("autoexec.run_graph message is not signed")
    assert all("does not match its task id, name and arguments" in r for r in reasons[1:3])
    assert reasons[3].startswith("autoexec.cancel_graph message is not signed")
    with worker.engine.db.session() as session:
        started = select(func.count()).where(GraphExecution.graph_id == graph_id)
        assert session.scalar(started) == 0  # nothing ran for anyone
    log = worker.log()
    assert log.count("rejected a message no task can run") >= 4
    assert KEY not in log
    assert all(KEY not in reason for reason in reasons)


def test_a_message_signed_as_the_key_says_by_another_app_runs(
    worker: FaultWorker, client: Celery
) -> None:
    owner, graph_id = saved_graph(worker)
    kwargs = {"graph_id": graph_id, "user_id": owner, "inputs": {"x": 4}}
    task_id = str(uuid.uuid4())
    headers = {SIGNATURE_HEADER: signature(KEY, task_id, RUN, [], kwargs)}
    sent = client.send_task(
        RUN, kwargs=kwargs, queue=worker.queue("INBOX"), task_id=task_id, headers=headers
    )
    exec_id = str(sent.get(timeout=30))
    view = api.wait(exec_id, owner, timeout=60, engine=worker.engine)
    assert (view.status, view.outputs) == (S.COMPLETED, {"sum": [5]})


def test_a_refused_message_reusing_a_task_id_leaves_that_task_result_as_it_was(
    worker: FaultWorker, client: Celery
) -> None:
    owner, graph_id = saved_graph(worker)
    kwargs = {"graph_id": graph_id, "user_id": owner, "inputs": {"x": 1}}
    signed = run_graph.apply_async(kwargs=kwargs)
    exec_id = str(signed.get(timeout=30))
    forged = {**kwargs, "user_id": user()}
    client.send_task(RUN, kwargs=forged, queue=worker.queue("INBOX"), task_id=signed.id)
    wait_until(
        lambda: worker.log().count(f"kept the result of task {RUN!r} id {signed.id!r}") == 1,
        "the worker refusing the forged message",
    )
    assert str(app.AsyncResult(signed.id).get(timeout=5)) == exec_id
