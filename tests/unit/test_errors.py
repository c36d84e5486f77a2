"""A refused input's error: its message (the caller's) may quote the value; its repr, which
Celery's trace log and task events print, never does."""

from __future__ import annotations

import pickle

from celery.app.trace import get_log_policy, log_policy_expected
from kombu.utils.encoding import safe_repr

from autoexec.errors import InputValidationError, SubgraphError

REFUSAL = "graph input 'key' = 'sk-canary-1' cannot feed pin 'value' of node 'n' (calc)"


def test_the_repr_of_a_refusal_quotes_none_of_its_message() -> None:
    for error in (InputValidationError(REFUSAL), SubgraphError(f"child refused: {REFUSAL}")):
        assert str(error).endswith(REFUSAL)
        assert "sk-canary" not in repr(error)
        assert "sk-canary" not in safe_repr(error)  # what Celery logs and sends in events
        assert "hidden" in repr(error)


def test_a_refusal_that_quotes_no_value_shows_whole() -> None:
    error = InputValidationError.quoting_no_value("run_graph needs graph_id and user_id")
    assert repr(error) == "InputValidationError('run_graph needs graph_id and user_id')"


def test_what_the_repr_shows_survives_the_pool_pickling_it() -> None:
    shown = InputValidationError("older_than_seconds: -1 refused", shown="older_than_seconds")
    copy = pickle.loads(pickle.dumps(shown))
    assert (str(copy), repr(copy)) == (str(shown), repr(shown))
    hidden = pickle.loads(pickle.dumps(InputValidationError(REFUSAL)))
    assert str(hidden) == REFUSAL
    assert "sk-canary" not in repr(hidden)


def test_celery_logs_a_refusal_of_a_task_that_throws_it_at_info_with_no_traceback() -> None:
    class Task:
        throws = (InputValidationError,)

    class Info:
        internal = False

    policy = get_log_policy(Task(), Info(), InputValidationError(REFUSAL))
    assert policy is log_policy_expected
    assert policy.traceback == 0  # the traceback text, which quotes the message, is not logged
