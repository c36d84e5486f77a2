"""A run's way through its user's slots (SPEC §5) and its end (SPEC §3.6, §7).

A waiting run is handed a free slot (``fill_free_slots``), or refused if it must not start.
Every path that ends a run calls ``end_run`` in its own transaction: the run's last node
(``finalize``), a cancel or a run limit (``stop_execution``), a refusal here, a run message
that could not be published (``fail_unpublished``) and the reconciler, which ends the node
executions left on a run that ended already. The hooks hear of each change after the commit.

Both live here because they call each other: ending a run hands its slot on, and handing a
slot on ends the waiting runs that must not start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autoexec.engine.context import Engine
from autoexec.engine.launch import launch
from autoexec.statuses import GRAPH_TRANSITIONS, SUSPENDED, ExecutionStatus, sources_of
from autoexec.store import admission as store
from autoexec.store import executions as repo
from autoexec.store.admission import WaitingRun, lock_user
from autoexec.store.reviews import cancel_reviews
from autoexec.store.transaction import Transaction
from autoexec.store.transitions import terminate_nodes, transition_graph

S = ExecutionStatus
# What a stopped run leaves: node executions not started, waiting for inputs, or suspended.
STOPPED_NODES = frozenset({S.QUEUED, S.INCOMPLETE, *SUSPENDED})
# What a run that never started leaves: its starting node executions.
UNSTARTED_NODES = frozenset({S.QUEUED, S.INCOMPLETE})


@dataclass(frozen=True)
class Ended:
    """What ending a run did besides its own transition."""

    terminated_nodes: int  # node executions it left waiting, now TERMINATED


def end_run(
    engine: Engine,
    session: Transaction,
    graph_exec_id: str,
    status: ExecutionStatus,
    *,
    error: str | None = None,
    stats: Callable[[], dict[str, Any]] | None = None,
    allowed_from: frozenset[ExecutionStatus] | None = None,
    left: frozenset[ExecutionStatus] = frozenset(),
    record: Callable[[Transaction], object] | None = None,
    user_id: str | None = None,
    ended_before: bool = False,
) -> Ended | None:
    """End the run as ``status`` (only from ``allowed_from``, if given) in the caller's
    transaction; what it did, or None if this call did not end it.

    In order: with ``user_id`` the user's admission lock is taken (before the run's row, the
    order every admission takes them in); if ``left`` holds QUEUED node executions or there
    is a ``record``, the run's row is locked (waiting for a delivery under way), ``record``
    writes what the caller ends with the run (whether or not this call ends it), and the
    charges of the run's node executions that never started are refunded (their rows locked:
    no claim starts one); then the run moves to ``status`` with ``error`` and ``stats``
    (computed after the refunds), its node executions in ``left`` end TERMINATED (the reviews
    of those in REVIEW closed) and, with ``user_id``, the user's free slots are handed to the
    oldest waiting runs. ``ended_before``: the run already has ``status`` (the reconciler
    ends what it left), so only its node executions are ended, with ``error``.
    """
    if user_id is not None:
        lock_user(session, user_id)
    if S.QUEUED in left or record is not None:
        locked = repo.get_execution_state(session, graph_exec_id, lock=True)
        if record is not None:
            record(session)
        if not _may_end(locked.status, status, allowed_from, ended_before):
            return None
        engine.metering.refund_unstarted(session, graph_exec_id)  # a repeat is a no-op
    if not ended_before:
        fields: dict[str, Any] = {"error": error}
        if stats is not None:
            fields["stats"] = stats()
        if not transition_graph(
            session, graph_exec_id, status, allowed_from=allowed_from, **fields
        ):
            return None
    ended = Ended(_end_nodes(session, graph_exec_id, left, error if ended_before else None))
    if user_id is not None:
        fill_free_slots(engine, session, user_id)  # the freed slot, in this commit
    return ended


def _may_end(
    current: ExecutionStatus,
    status: ExecutionStatus,
    allowed_from: frozenset[ExecutionStatus] | None,
    ended_before: bool,
) -> bool:
    """Whether ``transition_graph`` will apply (the caller holds the run's row lock)."""
    if ended_before:
        return current is status
    sources = sources_of(status, GRAPH_TRANSITIONS)
    return current in (sources if allowed_from is None else sources & allowed_from)


def _end_nodes(
    session: Transaction, graph_exec_id: str, left: frozenset[ExecutionStatus], error: str | None
) -> int:
    if not left:
        return 0
    fields = {} if error is None else {"error": error}
    terminated = terminate_nodes(session, graph_exec_id, left, **fields)
    if S.REVIEW in left:
        cancel_reviews(session, graph_exec_id)  # nothing will resume them
    return terminated


def fill_free_slots(engine: Engine, session: Transaction, user_id: str) -> None:
    """Move the user's oldest waiting runs to RUNNING while slots are free, under the user's
    lock (taken by the caller), and start each before the caller commits: its starting nodes
    are sent (``launch``), or else its ``run_graph``, whose step does the rest."""
    for run in admit_waiting(engine, session, user_id):
        start_admitted(engine, session, run)


def start_admitted(engine: Engine, session: Transaction, run: WaitingRun) -> None:
    if not launch(engine, session, run):
        engine.dispatcher.run_graph(run.id)


def admit_waiting(engine: Engine, session: Transaction, user_id: str) -> list[WaitingRun]:
    """Move the oldest waiting runs that may start into the free slots; those moved, oldest
    first."""
    limit = engine.settings.max_concurrent_runs_per_user
    fetched, running = store.waiting_and_running(session, user_id, limit)
    free, waiting = limit - running, fetched
    admitted: list[WaitingRun] = []
    seen: set[str] = set()
    while waiting and len(admitted) < free:
        for run in waiting[: free - len(admitted)]:
            seen.add(run.id)
            if move_to_running(engine, session, run):
                admitted.append(run)
        # Fewer slots were filled than runs looked at only if some were refused: look on.
        waiting = [run for run in waiting if run.id not in seen]
        if not waiting and len(admitted) < free and len(fetched) == limit:
            waiting = fetched = store.oldest_waiting(session, user_id, limit, exclude=seen)
    return admitted


def move_to_running(engine: Engine, session: Transaction, run: WaitingRun) -> bool:
    if refuse_if_stopped(engine, session, run):
        return False
    return transition_graph(session, run.id, S.RUNNING, allowed_from=frozenset({S.QUEUED}))


def refuse_if_stopped(engine: Engine, session: Transaction, run: WaitingRun) -> bool:
    """End a waiting run that must not start (SPEC §5: cancelled, or its parent or root
    execution was terminated); True if it was refused."""
    if run.cancel_requested_at is not None:
        reason = "cancelled before it started"
    elif store.any_terminated(session, run.ancestors):
        reason = "its parent execution was terminated"
    else:
        return False
    end_run(engine, session, run.id, S.TERMINATED, error=reason, left=UNSTARTED_NODES)
    return True
