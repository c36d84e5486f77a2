"""The background sender of live events: order, batching, flush, and what it drops."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from autoexec.observability import events


class RecordingSender(events.EventSender):
    """Records each pipeline instead of publishing it; ``gate`` holds the thread back."""

    def __init__(self) -> None:
        self.pipelines: list[list[dict[str, Any]]] = []
        self.gate = threading.Event()
        self.gate.set()
        super().__init__(publish=lambda _messages: None)

    def _publish(self, events: list[dict[str, Any]]) -> None:
        self.gate.wait()
        self.pipelines.append(events)


def event(n: int) -> dict[str, Any]:
    return {"type": "node_execution", "graph_exec_id": "g", "user_id": "u", "n": n}


def test_events_are_published_in_the_order_they_were_committed() -> None:
    sender = RecordingSender()
    for n in range(200):
        sender.send([event(n)])
    assert sender.flush(timeout=10)
    published = [e["n"] for pipeline in sender.pipelines for e in pipeline]
    assert published == list(range(200))


def test_transactions_waiting_together_share_a_pipeline_up_to_its_size() -> None:
    sender = RecordingSender()
    sender.gate.clear()
    sender.send([event(0)])  # taken by the thread, which then waits at the gate
    for n in range(1, 101):
        sender.send([event(n)])
    sender.gate.set()
    assert sender.flush(timeout=10)
    sizes = [len(pipeline) for pipeline in sender.pipelines]
    assert sum(sizes) == 101
    assert max(sizes) == events.EVENTS_PER_PIPELINE
    assert len(sizes) <= 4  # 1, then 64 and 36: batched, not one pipeline per event


def test_flush_says_when_events_are_still_waiting() -> None:
    sender = RecordingSender()
    sender.gate.clear()
    sender.send([event(0)])
    assert sender.flush(timeout=0.05) is False
    sender.gate.set()
    assert sender.flush(timeout=10) is True


def test_a_full_queue_drops_events_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(events, "MAX_WAITING_TRANSACTIONS", 3)
    sender = RecordingSender()
    sender.gate.clear()
    sender.send([event(0)])  # taken by the thread
    assert sender.flush(timeout=0.05) is False
    with caplog.at_level(logging.WARNING, logger="autoexec.observability.events"):
        for n in range(1, 10):
            sender.send([event(n)])
    sender.gate.set()
    assert sender.flush(timeout=10)
    published = [e["n"] for pipeline in sender.pipelines for e in pipeline]
    assert published == [0, 1, 2, 3]
    assert len([r for r in caplog.records if "dropping" in r.getMessage()]) == 1


def test_a_failing_redis_is_skipped_for_a_while_and_the_sender_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def refuse(_messages: list[tuple[str, str]]) -> None:
        calls.append(1)
        raise ConnectionError("redis is down")

    sender = events.EventSender(publish=refuse)
    sender.send([event(0)])
    assert sender.flush(timeout=10)
    sender.send([event(1)])  # within the pause after a failure: not even tried
    assert sender.flush(timeout=10)
    assert calls == [1]
    assert sender.thread.is_alive()
