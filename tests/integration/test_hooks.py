"""Engine hooks (autoexec.hooks): called once per change, after the commit that made it, in
the order of the changes; a hook that raises changes no run's result."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from autoexec import api
from autoexec.errors import ConfigurationError
from autoexec.hooks import load_hook
from autoexec.statuses import ExecutionStatus
from autoexec.tasks import reconfigure
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.hooks_for_tests import LOG_VARIABLE
from tests.integration.test_engine import graph, node, user

S = ExecutionStatus
HOOKS = "tests.integration.hooks_for_tests:Raising,tests.integration.hooks_for_tests:Recording"

STREAM_AND_ADD = graph(
    [
        node("items", "test_slow_stream", count=3, delay=0.01),
        node("calc", "calculator", operation="add", a=2),
        node("out", "agent_output", name="sum"),
    ],
    [
        ("items", "item", "calc", "b"),
        ("calc", "result", "out", "value"),
    ],
)


def read_log(path: Path, exec_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [line for line in lines if line["graph_exec_id"] == exec_id]


def test_hooks_see_each_change_once_after_its_commit_and_a_raising_hook_changes_nothing(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "hooks.jsonl"
    log.touch()
    hooks_env = {"AUTOEXEC_HOOKS": HOOKS, LOG_VARIABLE: str(log)}
    owner = user()
    with private_queues(cluster) as queues:
        for name, value in hooks_env.items():
            monkeypatch.setenv(name, value)
        engine = reconfigure({})  # this process (the submitter) has the hooks too
        with worker_process({**queues.env, **hooks_env}, 2, tmp_path / "w.log", "hooks"):
            graph_id, _ = api.save_graph(STREAM_AND_ADD, owner, engine=engine)
            exec_id = api.execute_graph(graph_id, owner, {}, engine=engine)
            view = api.wait(exec_id, owner, timeout=60, engine=engine)
    assert (view.status, sorted(view.outputs["sum"])) == (S.COMPLETED, [2, 3, 4])

    events = read_log(log, exec_id)
    assert all(event["committed"] for event in events), [e for e in events if not e["committed"]]
    run_kinds = [e["kind"] for e in events if e["kind"].startswith("execution_")]
    assert run_kinds == ["execution_queued", "execution_started", "execution_ended"]
    assert events[-1] == {
        "kind": "execution_ended", "graph_exec_id": exec_id, "status": "COMPLETED",
        "committed": True,
    }  # fmt: skip
    per_execution: dict[tuple[str, int], list[str]] = defaultdict(list)
    for event in events:
        if "node_id" in event:
            per_execution[event["node_id"], event["node_exec_id"]].append(event["kind"])
    lifecycle = ["node_queued", "node_started", "node_output", "node_ended"]
    streamed = ["node_queued", "node_started", *["node_output"] * 3, "node_ended"]
    named = ["node_queued", "node_started", "node_output", "node_output", "node_ended"]
    assert sorted(per_execution.values()) == sorted([streamed, *[lifecycle] * 3, *[named] * 3])
    assert sorted(node_id for node_id, _ in per_execution) == ["calc"] * 3 + ["items"] + ["out"] * 3
    outputs = [e["value"] for e in events if e["kind"] == "node_output" and e["pin"] == "output"]
    assert sorted(outputs) == [2, 3, 4]
    started = [e for e in events if e["kind"] == "node_started"]
    assert {(e["block_id"], e["user_id"]) for e in started if e["node_id"] == "calc"} == {
        ("calculator", owner)
    }


def test_a_hook_that_cannot_be_loaded_is_named_in_the_error() -> None:
    with pytest.raises(ConfigurationError, match="no_such_module"):
        load_hook("no_such_module:Hook")
    with pytest.raises(ConfigurationError, match="not of the form"):
        load_hook("just_a_name")
    with pytest.raises(ConfigurationError, match="lacks"):
        load_hook("builtins:object")
