"""The coordinator on the in-process stand-in: what is published on a channel reaches its
subscribers, whichever of the coordinator's clients published it; the stop path's circuit
breaker skips Redis for a while once it was unreachable."""

from __future__ import annotations

import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from autoexec.coordination import CoordinationError, Keys, SkipWhileDown, make_coordinator


def test_a_subscription_gets_what_is_published_on_its_channel_only() -> None:
    coordinator = make_coordinator(f"memory://coordination-{uuid.uuid4().hex}")
    channel = coordinator.subscribe("runs:1")
    try:
        coordinator.publish_all([("runs:1", "one"), ("runs:2", "other"), ("runs:1", "two")])
        # (a None may come first: the subscription's own confirmation, which is not passed on)
        received = [channel.get_message(timeout=0.2) for _ in range(4)]
    finally:
        channel.close()
    assert [message for message in received if message is not None] == [b"one", b"two"]


def test_two_coordinators_on_one_memory_url_share_nothing() -> None:
    url = f"memory://coordination-{uuid.uuid4().hex}"
    first, second = make_coordinator(url), make_coordinator(url)
    first.request_stop("run")
    assert first.stop_requested("run")
    assert not second.stop_requested("run")


def test_a_stop_flag_lives_for_the_nodes_running_at_the_stop_not_for_days() -> None:
    coordinator = make_coordinator(f"memory://coordination-{uuid.uuid4().hex}")
    coordinator.request_stop("run")
    seconds_left = coordinator.client.ttl(Keys.stop("run"))
    assert 0 < seconds_left <= 30 * 60


class RedisStub:
    """A command that fails as an unreachable Redis would (or with ``error``), counting calls."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or RedisConnectionError("Connection refused")
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        raise self.error


def test_once_redis_was_unreachable_the_stop_path_fails_at_once_without_asking_it() -> None:
    stop_path, down = SkipWhileDown(pause=60), RedisStub()
    with pytest.raises(CoordinationError):
        stop_path.call(down)
    with pytest.raises(CoordinationError, match="unreachable less than 60s ago"):
        stop_path.call(down)
    assert down.calls == 1


def test_the_stop_path_asks_redis_again_after_its_pause() -> None:
    stop_path, down = SkipWhileDown(pause=0), RedisStub()
    with pytest.raises(CoordinationError):
        stop_path.call(down)
    assert stop_path.call(lambda: True)


def test_an_error_redis_answered_with_does_not_make_the_stop_path_skip_it() -> None:
    stop_path, refused = SkipWhileDown(pause=60), RedisStub(ResponseError("WRONGTYPE"))
    with pytest.raises(CoordinationError):
        stop_path.call(refused)
    with pytest.raises(CoordinationError):
        stop_path.call(refused)
    assert refused.calls == 2


def test_the_stop_path_writes_to_the_server_the_other_clients_read() -> None:
    coordinator = make_coordinator(f"memory://coordination-{uuid.uuid4().hex}")
    coordinator.note_node_alive("run", 7)
    coordinator.request_stop("run")
    assert coordinator.nodes_alive([("run", 7), ("run", 8)]) == [True, False]
    assert coordinator.client.exists(Keys.stop("run"))
