"""Live events (SPEC §11) on the real cluster: ``api.subscribe`` started before a run or in its
middle yields every change once, in order per node execution, and ends with the final event."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest

from autoexec import api
from autoexec.errors import NotFoundError
from autoexec.observability.live import Event, GraphEvent, NodeEvent, progress
from autoexec.statuses import ExecutionStatus
from tests.integration.conftest import Cluster
from tests.integration.live_runs import Collector, held_execution
from tests.integration.test_engine import graph, node, user

S = ExecutionStatus
ITEMS = 200
LIFECYCLE = [S.QUEUED, S.RUNNING, S.COMPLETED]

STREAM_INTO_CALC = graph(
    [
        node("items", "test_slow_stream", count=ITEMS, delay=0.005),
        node("calc", "calculator", operation="add", a=1000),
    ],
    [("items", "item", "calc", "b")],
)


def by_node_execution(events: list[Event]) -> dict[int, list[NodeEvent]]:
    grouped: dict[int, list[NodeEvent]] = defaultdict(list)
    for event in events:
        if isinstance(event, NodeEvent):
            grouped[event.node_exec_id].append(event)
    return grouped


def assert_each_change_once(events: list[Event], from_the_start: bool) -> None:
    """Statuses only move forward, each output comes once in seq order, and the stream ends
    with the one final event. From the start, every node execution is seen QUEUED, RUNNING,
    COMPLETED exactly."""
    final = [e for e in events if isinstance(e, GraphEvent) and e.is_final]
    assert final == [events[-1]]
    assert events[-1].status is S.COMPLETED
    nodes = by_node_execution(events)
    assert len(nodes) == 1 + ITEMS
    for node_events in nodes.values():
        statuses = [e.status for e in node_events if not e.new_outputs]
        ranks = [progress(s) for s in statuses]
        assert ranks == sorted(set(ranks)), statuses  # forward, each status once
        seqs = [o.seq for e in node_events for o in e.new_outputs]
        assert seqs == list(range(len(seqs)))
        assert node_events[-1].status is S.COMPLETED
        if from_the_start:
            assert statuses == LIFECYCLE
    (stream,) = [n for n in nodes.values() if n[0].node_id == "items"]
    items = [o.value for e in stream for o in e.new_outputs]
    assert items == list(range(ITEMS))
    assert stream[-1].outputs == {"item": list(range(ITEMS))}
    sums = sorted(n[-1].outputs["result"][0] for n in nodes.values() if n[0].node_id == "calc")
    assert sums == [1000 + i for i in range(ITEMS)]


def test_subscribers_from_before_and_from_the_middle_see_every_change_once(
    cluster: Cluster,
) -> None:
    owner = user()
    exec_id, held = held_execution(cluster.engine, STREAM_INTO_CALC, owner)
    early = Collector(cluster.engine, exec_id, owner)
    early.start()
    held.release()
    early.wait_for_outputs("items", ITEMS // 4)
    late = Collector(cluster.engine, exec_id, owner)
    late.start()

    early_events, late_events = early.finish(), late.finish()

    # Only the state before the run started was read from the database: the run QUEUED, and
    # its starting node, queued with it.
    assert [i for i, event in enumerate(early_events) if event.replayed] == [0, 1]
    assert early_events[0] == GraphEvent(exec_id, owner, S.QUEUED, replayed=True)
    assert_each_change_once(early_events, from_the_start=True)
    assert_each_change_once(late_events, from_the_start=False)
    assert any(e.replayed for e in late_events if isinstance(e, NodeEvent))


def test_a_subscription_to_an_ended_run_replays_it_and_ends(cluster: Cluster) -> None:
    owner = user()
    exec_id, held = held_execution(cluster.engine, STREAM_INTO_CALC, owner)
    held.release()
    api.wait(exec_id, owner, timeout=120, engine=cluster.engine)

    with api.subscribe(exec_id, owner, engine=cluster.engine) as subscription:
        events = list(subscription)

    assert_each_change_once(events, from_the_start=False)
    assert all(e.replayed for e in events)
    assert len(events) == 1 + ITEMS + 1


def test_another_users_execution_is_not_found(cluster: Cluster) -> None:
    exec_id, _ = held_execution(cluster.engine, STREAM_INTO_CALC, user())
    with pytest.raises(NotFoundError):
        api.subscribe(exec_id, "someone-else", engine=cluster.engine)


def test_a_value_larger_than_the_limit_is_cut_in_its_event(cluster: Cluster) -> None:
    owner = user()
    big = "é" * 5000  # 10 000 bytes of UTF-8 in JSON; the workers' limit is 4096 bytes
    echo = graph([node("x", "agent_input", name="x", value=big)], [])
    exec_id, held = held_execution(cluster.engine, echo, owner)
    collector = Collector(cluster.engine, exec_id, owner)
    collector.start()
    held.release()
    events = collector.finish()

    (output,) = [o for e in events if isinstance(e, NodeEvent) for o in e.new_outputs]
    expected = json.dumps(big, ensure_ascii=False).encode()[:4096].decode(errors="ignore")
    assert (output.pin, output.value, output.cut) == ("result", expected, True)
    assert len(output.value.encode()) == 4095  # a cut never splits a character
    view = api.get_execution(exec_id, owner, engine=cluster.engine)
    assert view.outputs == {} and view.node_executions[0].outputs == {"result": [big]}


def test_a_users_stream_has_the_live_events_of_their_runs(cluster: Cluster) -> None:
    owner = user()
    echo = graph([node("x", "agent_input", name="x", value="hi")], [])
    exec_id, held = held_execution(cluster.engine, echo, owner)
    stream = api.subscribe_user(owner, engine=cluster.engine)
    held.release()
    events = []
    for event in stream:
        events.append(event)
        if isinstance(event, GraphEvent) and event.is_final:
            break

    assert {(e.graph_exec_id, e.user_id) for e in events} == {(exec_id, owner)}
    graph_statuses = [e.status for e in events if isinstance(e, GraphEvent)]
    assert graph_statuses == [S.RUNNING, S.COMPLETED]  # QUEUED came before the subscription
    (ended,) = [e for e in events if isinstance(e, NodeEvent) and e.status is S.COMPLETED]
    assert (ended.node_id, ended.outputs) == ("x", {"result": ["hi"]})
