"""Waiting in tests: poll a condition until it holds, failing with what was awaited; wait
for a text in a log; wait for a run to reach a status."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from autoexec import api
from autoexec.engine.context import Engine
from autoexec.statuses import TERMINAL, ExecutionStatus

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.05


def wait_until(
    condition: Callable[[], T],
    what: str,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    interval: float = POLL_SECONDS,
) -> T:
    """Call ``condition`` until it returns something true, and return that; ``AssertionError``
    naming ``what`` was awaited if it has not after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}; it did not happen")
        time.sleep(interval)


def wait_for_text(
    read: Callable[[], str],
    pattern: str,
    what: str,
    after: int = 0,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> int:
    """Wait until the regular expression ``pattern`` shows in ``read()`` (a log, say) past
    offset ``after``; where the match ends."""
    compiled = re.compile(pattern)
    found = wait_until(lambda: compiled.search(read(), after), f"{pattern!r} in {what}", timeout)
    return found.end()


def wait_for_status(
    engine: Engine,
    graph_exec_id: str,
    user_id: str,
    status: ExecutionStatus,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> api.ExecutionView:
    """Wait until the graph execution is in ``status``; fail at once if it ends in another."""

    def reached() -> api.ExecutionView | None:
        view = api.get_execution(graph_exec_id, user_id, engine=engine)
        if view.status is status:
            return view
        assert view.status not in TERMINAL, f"ended {view.status}, not {status}: {view.error}"
        return None

    return wait_until(reached, f"graph execution {graph_exec_id} in {status}", timeout)
