"""The embedded stack's broker wakes on each message instead of polling its queues."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from kombu import Connection, Consumer, Producer, Queue

from autoexec import embedded_broker


@pytest.fixture
def queue() -> Queue:
    return Queue(f"test-embedded-{uuid.uuid4().hex[:8]}")


def test_a_message_sent_from_another_thread_wakes_a_waiting_consumer(queue: Queue) -> None:
    received: list[Any] = []
    with Connection(f"{embedded_broker.SCHEME}://localhost/") as connection:
        consumer = Consumer(connection, [queue], callbacks=[lambda body, m: received.append(body)])
        with consumer:
            producer = Producer(connection.clone())
            send = threading.Timer(0.2, producer.publish, ({"n": 1},), {"routing_key": queue.name})
            send.start()
            connection.drain_events(timeout=30)
            send.join()
    assert received == [{"n": 1}]


def test_an_idle_consumer_does_not_poll_the_queues(
    queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = 0
    # The in-memory transport it replaces was given this interval (so as not to add a second
    # to each hop) and looked at its queues a hundred times here.
    polling = {"polling_interval": 0.005}
    with (
        Connection(
            f"{embedded_broker.SCHEME}://localhost/", transport_options=polling
        ) as connection,
        Consumer(connection, [queue], callbacks=[lambda body, m: None]),
    ):
        transport = connection.transport
        real_get = transport.cycle.get

        def counted_get(*args: Any, **kwargs: Any) -> Any:
            nonlocal looks
            looks += 1
            return real_get(*args, **kwargs)

        monkeypatch.setattr(transport.cycle, "get", counted_get)
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=0.5)
    assert looks <= 2  # once, then it sleeps until a message arrives
