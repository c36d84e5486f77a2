"""Poison messages (issue 8 item 1, SPEC §7): a message on an autoexec queue that no task can
run lands in the dead queue with its reason, is not re-queued, is logged without its body, and
the worker keeps consuming: the next run completes with exact outputs."""

from __future__ import annotations

import pickle
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from kombu import Connection, Message

from autoexec import api
from autoexec.celery_app import app
from autoexec.poison import QUEUE_HEADER, REASON_HEADER, PoisonMessageError, dead_queue
from autoexec.statuses import ExecutionStatus
from tests.faults.conftest import FaultWorker, fault_worker
from tests.integration.conftest import Cluster
from tests.integration.test_engine import ADD_ONE, user

S = ExecutionStatus
MARKER = "poison-body-7f3a"  # never in the worker's log
JSON = ("application/json", "utf-8")


@dataclass(frozen=True)
class Poison:
    body: bytes
    reason: str  # a part of the x-autoexec-reason header
    task: str | None = "autoexec.run_graph"
    queue: str = "GRAPH"
    content: tuple[str, str] = JSON
    headers: dict[str, Any] = field(default_factory=dict)


POISONS = {
    "json object": Poison(b'{"%s": 1}' % MARKER.encode(), "not a Celery task message"),
    "json list of one": Poison(b'["%s"]' % MARKER.encode(), "not a Celery task message"),
    "json number": Poison(b"123", "not a Celery task message"),
    "json null": Poison(b"null", "not a Celery task message"),
    "args not a list": Poison(b"[1, {}, {}]", "with a list and an object"),
    "json object on the node queue": Poison(
        b'{"%s": 1}' % MARKER.encode(),
        "not a Celery task message",
        "autoexec.execute_node",
        "NODE",
    ),
    "not json": Poison(b"{%s" % MARKER.encode(), "undecodable body"),
    "pickle": Poison(
        pickle.dumps(([MARKER], {}, {})),
        "undecodable body: ContentDisallowed",
        content=("application/x-python-serialize", "binary"),
    ),
    "an unknown content type": Poison(
        b"[[], {}, {}]", "undecodable body", content=("application/x-nope", "binary")
    ),
    "execute_node with a node id that is no number": Poison(
        b'[["%s", "g"], {}, {}]' % MARKER.encode(),
        "bad arguments for autoexec.execute_node: node_exec_id",
        "autoexec.execute_node",
        "NODE",
    ),
    "advance_graph without its argument": Poison(
        b"[[], {}, {}]",
        "bad arguments for autoexec.advance_graph: missing a required argument",
        "autoexec.advance_graph",
    ),
    "run_graph with an unknown argument": Poison(
        b'[[], {"graph_id": "g", "user_id": "u", "bogus": "%s"}, {}]' % MARKER.encode(),
        "bad arguments for autoexec.run_graph: got an unexpected keyword argument 'bogus'",
    ),
    "run_graph with its inputs sent positionally": Poison(
        b'[[null, "g", "u", {"secret": "%s"}], {}, {}]' % MARKER.encode(),
        "bad arguments for autoexec.run_graph: too many positional arguments",
    ),
    "an unknown task": Poison(b"[[], {}, {}]", "unknown task 'autoexec.nope'", "autoexec.nope"),
    "no task name": Poison(b'{"%s": 1}' % MARKER.encode(), "names no task", task=None),
}


@pytest.fixture(scope="module")
def worker(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWorker]:
    """One ``-c 1`` worker for every poison: a consumer that died would stop it for good."""
    log_path = tmp_path_factory.mktemp("poison") / "worker.log"
    with fault_worker(cluster, log_path) as started:
        yield started


def publish(worker: FaultWorker, poison: Poison) -> str:
    """Publish the poison on its queue as a client would; returns its test id."""
    test_id = uuid.uuid4().hex
    headers: dict[str, Any] = {"x-test-id": test_id, **poison.headers}
    if poison.task is not None:
        headers.update(task=poison.task, id=test_id, lang="py", argsrepr="", kwargsrepr="")
    queue = worker.queue(poison.queue)
    with Connection(worker.engine.settings.broker_url) as conn:
        conn.Producer().publish(
            poison.body,
            exchange=queue,
            routing_key=queue,
            content_type=poison.content[0],
            content_encoding=poison.content[1],
            headers=headers,
        )
    return test_id


def dead_letters(worker: FaultWorker, test_id: str, settle: float) -> list[Message]:
    """Every message of ``test_id`` in the worker's dead queue, once one came (waiting at most
    60 s) and ``settle`` more seconds passed without another."""
    found: list[Message] = []
    deadline = time.monotonic() + 60
    with Connection(worker.engine.settings.broker_url) as conn:
        queue = dead_queue(worker.queue("DEAD"))(conn.channel())
        queue.declare()
        quiet_until = None
        while time.monotonic() < (quiet_until or deadline):
            message = queue.get(no_ack=True)
            if message is None:
                if found and quiet_until is None:
                    quiet_until = time.monotonic() + settle
                time.sleep(0.1)
            elif message.headers.get("x-test-id") == test_id:
                found.append(message)
    return found


def raw_body(message: Message) -> bytes:
    """The body as published (the transport hands text bodies back as ``str``)."""
    body = message.body
    return body.encode() if isinstance(body, str) else bytes(body or b"")


def run_add_one(worker: FaultWorker, x: int) -> api.ExecutionView:
    owner = user()
    graph_id, _ = api.save_graph(ADD_ONE, owner, engine=worker.engine)
    exec_id = api.execute_graph(graph_id, owner, {"x": x}, engine=worker.engine)
    return api.wait(exec_id, owner, timeout=60, engine=worker.engine)


@pytest.mark.parametrize("poison", POISONS.values(), ids=POISONS.keys())
def test_a_poison_message_is_dead_lettered_and_the_worker_keeps_consuming(
    worker: FaultWorker, poison: Poison
) -> None:
    test_id = publish(worker, poison)
    # One copy only, however long we wait: the message was not re-queued.
    dead = dead_letters(worker, test_id, settle=1.0)
    assert len(dead) == 1
    assert raw_body(dead[0]) == poison.body
    assert poison.reason in dead[0].headers[REASON_HEADER]
    assert dead[0].headers[QUEUE_HEADER] == worker.queue(poison.queue)
    assert dead[0].content_type == poison.content[0]
    if poison.task is not None:  # a message with a task id: its sender learns the reason
        with pytest.raises(PoisonMessageError, match=re.escape(poison.reason)) as raised:
            app.AsyncResult(test_id).get(timeout=10)
        assert MARKER not in str(raised.value)
    assert worker.alive()
    view = run_add_one(worker, 41)
    assert (view.status, view.outputs) == (S.COMPLETED, {"sum": [42]})
    assert MARKER not in worker.log()
    assert "Unrecoverable error" not in worker.log()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"inptus": {"secret": MARKER}}, "got an unexpected keyword argument 'inptus'"),
        ({"graph_version": MARKER}, "graph_version: Input should be a valid integer"),
    ],
    ids=["a misspelt argument", "an argument of the wrong type"],
)
def test_the_sender_of_a_message_no_task_can_run_gets_the_reason_not_a_timeout(
    worker: FaultWorker, kwargs: dict[str, Any], reason: str
) -> None:
    test_id = uuid.uuid4().hex
    sent = app.send_task(
        "autoexec.run_graph",
        kwargs={"graph_id": "g", "user_id": "u", **kwargs},
        headers={"x-test-id": test_id},
    )
    with pytest.raises(PoisonMessageError, match=re.escape(reason)) as raised:
        sent.get(timeout=60)
    assert MARKER not in str(raised.value)  # the reason names the argument, not its value
    (dead,) = dead_letters(worker, test_id, settle=1.0)
    assert reason in dead.headers[REASON_HEADER]
    assert worker.alive()
