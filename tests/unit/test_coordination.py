"""The coordinator's pub/sub on the in-process stand-in: what is published on a channel reaches
its subscribers, whichever of the coordinator's clients published it."""

from __future__ import annotations

import uuid

from autoexec.coordination import Keys, make_coordinator


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
