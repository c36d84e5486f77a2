"""A task message's arguments are checked against its task before it runs, and run_graph's input
values are never what monitoring shows."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from kombu import Message

from autoexec.celery_app import app
from autoexec.poison import PoisonMessageError, checked_call
from autoexec.task_arguments import ArgumentsError, check_arguments, shown_kwargs
from autoexec.tasks import advance_graph, cancel_graph, execute_node, run_graph


def test_arguments_that_fit_pass() -> None:
    check_arguments(execute_node.run, [7, "g"], {})
    check_arguments(execute_node.run, ["7", "g"], {})  # JSON clients may send the id as text
    check_arguments(run_graph.run, [], {"graph_id": "g", "user_id": "u", "inputs": {"x": 1}})
    check_arguments(cancel_graph.run, ["e1"], {"user_id": "u"})
    check_arguments(cancel_graph.run, ["e1"], {})  # refused by the task itself, saying why


@pytest.mark.parametrize(
    ("run", "args", "kwargs", "problem"),
    [
        (execute_node.run, ["seven", "g"], {}, "node_exec_id: Input should be a valid integer"),
        (execute_node.run, [7], {}, "missing a required argument: 'graph_exec_id'"),
        (advance_graph.run, [], {}, "missing a required argument: 'graph_exec_id'"),
        (advance_graph.run, [None], {}, "graph_exec_id: Input should be a valid string"),
        (run_graph.run, [], {"nope": 1}, "unexpected keyword argument 'nope'"),
        (run_graph.run, [], {"inputs": ["secret"]}, "inputs: Input should be a valid dict"),
    ],
)
def test_arguments_that_do_not_fit_are_named_without_their_values(
    run: Any, args: list[Any], kwargs: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ArgumentsError, match=problem) as caught:
        check_arguments(run, args, kwargs)
    assert "secret" not in str(caught.value)


def test_run_graph_is_shown_with_input_names_not_values() -> None:
    kwargs = {"graph_id": "g", "user_id": "u", "inputs": {"x": "secret"}}
    masks = {"nodes_input_masks": {"n": {"key": "secret"}}}
    assert shown_kwargs("autoexec.run_graph", kwargs) == (
        "{'graph_id': 'g', 'user_id': 'u', 'inputs': ['x']}"
    )
    assert shown_kwargs("autoexec.run_graph", masks) == "{'nodes_input_masks': ['n']}"
    assert shown_kwargs("autoexec.run_graph", {"inputs": "secret"}) == "{'inputs': '<hidden>'}"
    assert shown_kwargs("autoexec.execute_node", {}) is None


def message(body: bytes, task: str = "autoexec.advance_graph", **options: Any) -> Message:
    options.setdefault("content_type", "application/json")
    options.setdefault("content_encoding", "utf-8")
    headers = {"task": task, "id": "1"}
    return Message(body=body, headers=headers, accept=["application/json"], **options)


def test_a_well_formed_task_message_is_the_call_it_makes() -> None:
    call = checked_call(app, message(b'[["e1"], {}, {"callbacks": null}]'))
    assert (call.name, list(call.args), dict(call.kwargs)) == ("autoexec.advance_graph", ["e1"], {})


@pytest.mark.parametrize(
    ("body", "options", "problem"),
    [
        (b'{"a": 1}', {}, "not a Celery task message"),
        (b"[1]", {}, "not a Celery task message"),
        (b"123", {}, "not a Celery task message"),
        (b"null", {}, "not a Celery task message"),
        (b"[1, {}, {}]", {}, "with a list and an object"),
        (b"{", {}, "undecodable body"),
        (
            pickle.dumps((["e1"], {}, {})),
            {"content_type": "application/x-python-serialize", "content_encoding": "binary"},
            "undecodable body: ContentDisallowed",
        ),
        (b"[[], {}, {}]", {}, "bad arguments for autoexec.advance_graph"),
    ],
)
def test_a_message_no_task_can_run_is_poison(
    body: bytes, options: dict[str, Any], problem: str
) -> None:
    with pytest.raises(PoisonMessageError, match=problem):
        checked_call(app, message(body, **options))
