"""The first step of a run, taken by the transaction that admits it.

A run just admitted usually has nothing to deliver: its starting node executions were queued
at submission. Then the admitting transaction claims their task ids and sends them itself,
before it commits, instead of sending the run an orchestrator step that would do only that.
A node task that arrives before the commit waits for it: its claim updates a row this
transaction has changed. Should the commit be lost after all, the node may run while its run
is still QUEUED; its outputs stay undelivered until the run is admitted again, and then the
run gets a full step (it has outputs to deliver). A run with outputs to deliver (a starting
node that failed its ready check), a deadline timer to arm, a node limit already passed or no
node to send gets the full step instead.
"""

from __future__ import annotations

from autoexec.engine.context import Engine
from autoexec.store.admission import WaitingRun, claim_starting_nodes, has_step_work
from autoexec.store.executions import ExecutionState
from autoexec.store.transaction import Transaction


def launch(engine: Engine, session: Transaction, run: WaitingRun) -> bool:
    """Send the starting node executions of ``run``, moved to RUNNING in this transaction;
    False if the run needs a full orchestrator step instead (nothing was sent)."""
    if run.max_run_seconds is not None:
        return False  # the step arms the deadline timer
    if run.node_execution_count > engine.settings.max_node_executions_per_run:
        return False  # the step enforces the limit (``limits.limit_stop``)
    jobs = claim_starting_nodes(session, run.id)
    for job in jobs or []:
        engine.dispatcher.execute_node(job)
    return bool(jobs)


def step_due(session: Transaction, execution: ExecutionState) -> bool:
    """Whether a RUNNING execution that a ``run_graph`` message finds already started needs
    the step that message would take: the message may be re-delivered after a crash that kept
    the step from being taken, or have arrived after another transaction started the run (the
    usual case, with nothing left to do)."""
    if execution.max_run_seconds is not None or execution.cancel_requested_at is not None:
        return True  # the step arms the deadline timer, or enforces the cancel
    return has_step_work(session, execution.id)
