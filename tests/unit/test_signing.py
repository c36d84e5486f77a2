"""Signed task messages (``AUTOEXEC_TASK_SIGNING_KEY``): a signature made by the sender checks
on what the worker decodes of the message, and nothing else passes; the consumer's check
refuses a user-scoped message without a valid one, naming the reason, never the key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu import Message

from autoexec.celery_app import app
from autoexec.errors import ConfigurationError
from autoexec.poison import PoisonMessageError, checked_call, refuses_protocol_1
from autoexec.settings import load_settings
from autoexec.signing import SIGNATURE_HEADER, SignatureError, check_signature, signature

KEY = "k" * 16 + "-test-signing-key"
RUN = "autoexec.run_graph"
KWARGS = {"graph_id": "g1", "user_id": "alice", "inputs": {"x": 5, "when": [1, 2]}}


def as_decoded(value: Any) -> Any:
    """What a worker decodes of what a sender sent (JSON: tuples become lists, keys text)."""
    return json.loads(json.dumps(value))


def test_a_signature_checks_on_what_the_worker_decodes() -> None:
    sent_args, sent_kwargs = ("e1",), {"inputs": {1: ("a", 2.5)}, "user_id": "alice"}
    made = signature(KEY, "id-1", RUN, sent_args, sent_kwargs)
    check_signature(KEY, made, "id-1", RUN, as_decoded(sent_args), as_decoded(sent_kwargs))


@pytest.mark.parametrize(
    ("task_id", "name", "kwargs", "key"),
    [
        ("id-1", RUN, {**KWARGS, "user_id": "mallory"}, KEY),  # another user
        ("id-1", RUN, {**KWARGS, "inputs": {"x": 6, "when": [1, 2]}}, KEY),  # other inputs
        ("id-2", RUN, KWARGS, KEY),  # the same call sent again under a new id
        ("id-1", "autoexec.cancel_graph", KWARGS, KEY),  # another task
        ("id-1", RUN, KWARGS, "another-key-of-16-chars"),  # signed with another key
    ],
)
def test_a_changed_message_or_another_key_does_not_check(
    task_id: str, name: str, kwargs: dict[str, Any], key: str
) -> None:
    made = signature(key, task_id, name, [], kwargs)
    with pytest.raises(SignatureError, match="does not match its task id, name and arguments"):
        check_signature(KEY, made, "id-1", RUN, [], KWARGS)


@pytest.mark.parametrize("given", [None, "", "not-hex-é", 42])
def test_a_missing_or_malformed_signature_is_refused_without_the_key(given: object) -> None:
    with pytest.raises(SignatureError) as refused:
        check_signature(KEY, given, "id-1", RUN, [], KWARGS)
    assert KEY not in str(refused.value)
    assert "x-autoexec-signature" in str(refused.value)


def message(kwargs: dict[str, Any], name: str = RUN, embed: Any = None, **headers: Any) -> Message:
    body = json.dumps([[], kwargs, embed or {}]).encode()
    return Message(
        body=body,
        headers={"task": name, "id": "id-1", **headers},
        content_type="application/json",
        content_encoding="utf-8",
        accept=["application/json"],
    )


def test_the_worker_runs_a_user_scoped_message_signed_with_its_key() -> None:
    signed = message(KWARGS, **{SIGNATURE_HEADER: signature(KEY, "id-1", RUN, [], KWARGS)})
    call = checked_call(app, signed, KEY)
    assert (call.name, dict(call.kwargs)) == (RUN, KWARGS)


def test_the_worker_refuses_an_unsigned_or_forged_user_scoped_message() -> None:
    forged = signature(KEY, "id-1", RUN, [], {**KWARGS, "user_id": "bob"})
    refusals = [
        ({}, "autoexec.run_graph message is not signed"),
        ({SIGNATURE_HEADER: forged}, "autoexec.run_graph message's x-autoexec-signature header "),
    ]
    for headers, reason in refusals:
        with pytest.raises(PoisonMessageError, match=reason):
            checked_call(app, message(KWARGS, **headers), KEY)


def test_without_a_key_nothing_is_checked_and_other_tasks_need_no_signature() -> None:
    assert checked_call(app, message(KWARGS)).name == RUN
    advance = message({"graph_exec_id": "e1"}, name="autoexec.advance_graph")
    assert checked_call(app, advance, KEY).name == "autoexec.advance_graph"


def test_a_message_whose_callback_would_send_a_user_scoped_task_is_refused() -> None:
    link = {"task": "autoexec.cancel_graph", "kwargs": {"graph_exec_id": "e", "user_id": "bob"}}
    embed = {"callbacks": None, "chain": [{"task": "autoexec.advance_graph", "options": {}}, link]}
    advance = message({"graph_exec_id": "e1"}, name="autoexec.advance_graph", embed=embed)
    with pytest.raises(PoisonMessageError, match="callback, chain or chord that sends"):
        checked_call(app, advance, KEY)


def test_a_protocol_1_task_message_which_cannot_be_signed_is_refused_with_a_key() -> None:
    body = json.dumps({"task": RUN, "id": "id-1", "args": [], "kwargs": KWARGS}).encode()
    old = Message(body=body, headers={}, content_type="application/json", content_encoding="utf-8")
    assert refuses_protocol_1(None, old) is None
    assert "protocol 1, which cannot be signed" in str(refuses_protocol_1(KEY, old))
    not_a_task = Message(body=b"[1]", headers={}, content_type="application/json")
    assert refuses_protocol_1(KEY, not_a_task) is None


def test_the_signing_key_is_secret_and_a_short_one_is_refused_without_it() -> None:
    settings = load_settings(task_signing_key=KEY)
    assert KEY not in repr(settings)
    assert load_settings(task_signing_key="").task_signing_key is None
    with pytest.raises(
        ConfigurationError, match=r"AUTOEXEC_TASK_SIGNING_KEY: .*shorter than 16"
    ) as bad:
        load_settings(task_signing_key="short-secret")
    assert "short-secret" not in str(bad.value)
