"""Metering (SPEC §6) as the engine sees it: an interface it is given (``Engine.metering``)
and calls at fixed points, never asking whether metering is on.

- ``check_budget`` and ``check_can_start`` when a run is submitted;
- ``dispatch_meter(...).before_dispatch`` when a node execution is about to be queued;
- ``charge_usage`` when a node execution's run ended;
- ``refund_unstarted`` when a run ends with node executions that never started;
- ``child_budget`` and ``add_child_spend`` when a child run starts and ends.

``NO_METERING`` (metering off) does nothing at any of them: the engine then runs no metering
code. The credit ledger (``autoexec.billing.charges.CreditMetering``) charges credits. Every call
runs in the caller's transaction, which holds the run's row lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from sqlalchemy.orm import Session

from autoexec.errors import InputValidationError
from autoexec.store.credits import NodeCharge
from autoexec.store.tables import GraphExecution


class DispatchMeter(Protocol):
    """The dispatch charges of one transaction to one run."""

    def before_dispatch(self, node: Callable[[], NodeCharge]) -> int | None:
        """Charge a node execution about to be queued; the amount charged, or None if the run
        dispatches nothing more (the node execution stays INCOMPLETE and the run ends FAILED).
        ``node`` writes the node execution (its id keys the charge) and describes it: a meter
        that charges nothing need not call it. Raises ``Refused`` (the node execution fails
        with its error) if the charge cannot be paid."""
        ...


class Metering(Protocol):
    def check_budget(self, credit_budget: int | None) -> None:
        """Refuse a run's credit budget this metering cannot hold the run to."""
        ...

    def check_can_start(self, session: Session, user_id: str) -> None:
        """Refuse a new (not a child) run of ``user_id``, raising why."""
        ...

    def dispatch_meter(
        self, session: Session, graph_exec_id: str, loaded: GraphExecution | None = None
    ) -> DispatchMeter:
        """The dispatch charges of this transaction to the run; ``loaded``: the run as this
        transaction read it under its row lock, so nothing more is read."""
        ...

    def charge_usage(
        self, session: Session, graph_exec_id: str, node: NodeCharge, stats: Mapping[str, Any]
    ) -> int:
        """Charge what the node execution's run used, by its stats; the amount charged."""
        ...

    def refund_unstarted(self, session: Session, graph_exec_id: str) -> int:
        """Give back, once each, the charges of the run's node executions that never started
        (it is ending); the amount refunded."""
        ...

    def child_budget(self, session: Session, parent_exec_id: str) -> int | None:
        """What a child run of ``parent_exec_id`` may spend (None: no limit)."""
        ...

    def add_child_spend(self, session: Session, parent_exec_id: str, child_exec_id: str) -> None:
        """Count an ended child's spend in its parent's."""
        ...


class _FreeDispatch:
    def before_dispatch(self, node: Callable[[], NodeCharge]) -> int | None:
        return 0


_FREE_DISPATCH = _FreeDispatch()


class NoMetering:
    """Metering off: nothing costs anything, and a credit budget could never stop a run."""

    def check_budget(self, credit_budget: int | None) -> None:
        if credit_budget is not None:
            raise InputValidationError(
                "credit_budget needs metering on (AUTOEXEC_BILLING_ENABLED=true): with it off "
                "nothing costs credits, so a budget would never stop the run"
            )

    def check_can_start(self, session: Session, user_id: str) -> None:
        return None

    def dispatch_meter(
        self, session: Session, graph_exec_id: str, loaded: GraphExecution | None = None
    ) -> DispatchMeter:
        return _FREE_DISPATCH

    def charge_usage(
        self, session: Session, graph_exec_id: str, node: NodeCharge, stats: Mapping[str, Any]
    ) -> int:
        return 0

    def refund_unstarted(self, session: Session, graph_exec_id: str) -> int:
        return 0

    def child_budget(self, session: Session, parent_exec_id: str) -> int | None:
        return None

    def add_child_spend(self, session: Session, parent_exec_id: str, child_exec_id: str) -> None:
        return None


NO_METERING: Metering = NoMetering()
