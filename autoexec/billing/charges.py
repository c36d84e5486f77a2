"""Metering (SPEC §6): a node's block cost is charged once per node execution, before it is
dispatched (``RUN``, plus the every-Nth execution cost) and when it ends (``BYTE`` per output
byte, ``SECOND`` per started second of run time).

Each charge is written in the transaction that queues (or ends) the node, under its graph
execution's row lock, with a ledger key made of the node execution id and the kind of charge:
a re-delivered task, a retry, a resume or a concurrent step never charges twice, and a crash
charges nothing that did not also happen. A charge the balance (or the run's budget) cannot
cover fails its node; the run then dispatches nothing more, lets what runs finish, and ends
FAILED with the reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from autoexec.block_run.failures import error_message
from autoexec.blocks.base import Block, BlockCost, CostType
from autoexec.blocks.registry import BlockRegistry
from autoexec.coordination import CoordinationError, Coordinator
from autoexec.dataflow import elements_of
from autoexec.errors import BudgetExceededError, InsufficientBalanceError
from autoexec.hooks import ChargeRefused, note
from autoexec.metering import NO_METERING, Metering
from autoexec.settings import Settings
from autoexec.store import credits as ledger
from autoexec.store.credits import CHARGE, REFUND, Entry, NodeCharge, Refused, RunAccount
from autoexec.store.tables import GraphExecution

log = logging.getLogger(__name__)


def applicable_cost(block: type[Block[Any]], inputs: Mapping[str, Any]) -> BlockCost | None:
    """The block's first cost whose filter matches ``inputs`` (every filter pin equal)."""
    for cost in block.costs:
        if all(pin in inputs and inputs[pin] == value for pin, value in cost.filter.items()):
            return cost
    return None


def dispatch_amount(cost: BlockCost | None) -> int:
    return cost.amount if cost is not None and cost.type is CostType.RUN else 0


def usage_amount(cost: BlockCost | None, stats: Mapping[str, Any]) -> int:
    """What a node's run used, by its stats: ``output_size`` bytes, ``walltime`` seconds
    (every second begun counts)."""
    if cost is None or cost.type is CostType.RUN:
        return 0
    if cost.type is CostType.BYTE:
        return cost.amount * int(stats.get("output_size", 0))
    return cost.amount * math.ceil(float(stats.get("walltime", 0.0)))


_RUNS = "autoexec.billing.charges.runs"


def block_runs(node: NodeCharge) -> list[Mapping[str, Any]]:
    """The inputs of each run of the node's block: one per element of a fan-out node's list
    (none over an empty list), else the node's inputs."""
    if node.fan_out is None:
        return [node.inputs]
    try:
        elements = elements_of(node.inputs, node.fan_out)
    except ValueError:
        return [node.inputs]  # the node fails when it runs, saying why
    return [{**node.inputs, node.fan_out: element} for element in elements]


class Charges:
    """The charges of one transaction to one graph execution, whose row lock the caller
    holds: the run's budget, spend and halt are read once and kept in step here."""

    def __init__(
        self,
        metering: CreditMetering,
        session: Session,
        graph_exec_id: str,
        loaded: GraphExecution | None = None,
    ) -> None:
        self.metering, self.session = metering, session
        self.graph_exec_id, self.loaded = graph_exec_id, loaded

    @property
    def run(self) -> RunAccount:
        """Read on first use only: most node ends and deliveries charge nothing."""
        return _run_account(self.session, self.graph_exec_id, self.loaded)

    def before_dispatch(self, written: Callable[[], NodeCharge]) -> int | None:
        """Charge the node's run cost and the execution cost; the amount charged, or None if
        the run was halted (it dispatches nothing more). Refused (the node must fail with its
        error) if the budget or the balance cannot pay."""
        node = written()
        if self.run.halted is not None:
            return None
        block = self.metering.registry.get(node.block_id)
        runs = block_runs(node)
        cost = applicable_cost(block, runs[0]) if runs else None
        block_cost = sum(dispatch_amount(applicable_cost(block, inputs)) for inputs in runs)
        amount = block_cost + self._execution_cost()
        if amount == 0:
            return 0
        budget = self.run.budget
        if budget is not None and self.run.spent + amount > budget:
            raise self._refuse(node, _over_budget(node, amount, self.run), over_budget=True)
        account = ledger.lock_account(self.session, self.run.user_id)
        key = f"node:{node.node_exec_id}:dispatch"
        if account.balance < amount:
            if ledger.already_applied(self.session, key):
                return amount
            error = _insufficient(node, amount, self.run.user_id, account.balance)
            raise self._refuse(node, error, over_budget=False, account=account)
        details = {
            "block_cost": block_cost,
            "execution_cost": amount - block_cost,
            "runs": len(runs),
        }
        entry = self._entry(node, -amount, key, "run", cost, details)
        if ledger.apply(self.session, account, entry) is not None:
            ledger.add_spent(self.session, self.run, amount)
        return amount

    def after_run(self, node: NodeCharge, stats: Mapping[str, Any]) -> int:
        """Charge what the node's run used (BYTE, SECOND); the amount charged. It ran
        already, so the charge takes what the balance has: a shortfall stops the run."""
        cost = applicable_cost(self.metering.registry.get(node.block_id), node.inputs)
        amount = usage_amount(cost, stats)
        if amount == 0:
            return 0
        account = ledger.lock_account(self.session, self.run.user_id)
        taken = min(amount, max(account.balance, 0))
        details = {"used": amount, "uncovered": amount - taken}
        entry = self._entry(node, -taken, f"node:{node.node_exec_id}:usage", "usage", cost, details)
        if ledger.apply(self.session, account, entry) is None:
            return 0  # charged by an earlier attempt at this end
        ledger.add_spent(self.session, self.run, taken)
        if taken < amount:
            error = _insufficient(node, amount, self.run.user_id, account.balance)
            self._refuse(node, error, over_budget=False, account=account)
        return taken

    def refund_unstarted(self) -> int:
        """Give back what was charged for node executions of the run that were stopped
        before they started (a cancel, a run limit): once each. The amount refunded."""
        refunds = ledger.unstarted_charges(self.session, self.run.graph_exec_id)
        if not refunds:
            return 0
        account = ledger.lock_account(self.session, self.run.user_id)
        total = 0
        for node_exec_id, node_id, amount in refunds:
            entry = Entry(
                user_id=self.run.user_id,
                kind=REFUND,
                amount=amount,
                key=f"node:{node_exec_id}:refund",
                reason=f"refund: node {node_id} was stopped before it started",
                details={"graph_exec_id": self.run.graph_exec_id, "node_id": node_id},
                graph_id=self.run.graph_id,
                graph_exec_id=self.run.graph_exec_id,
                node_exec_id=node_exec_id,
            )
            after = ledger.apply(self.session, account, entry)
            if after is not None:
                account = ledger.Account(after, account.top_ups)
                total += amount
        if total:
            ledger.add_spent(self.session, self.run, -total)
        return total

    def _execution_cost(self) -> int:
        """Every ``AUTOEXEC_EXECUTION_COST_COUNT_THRESHOLD``-th node execution of the user
        costs ``AUTOEXEC_EXECUTION_COST_PER_THRESHOLD``. The count is a meter, not money: if
        Redis is down or lost it, this node pays no execution cost (never one twice)."""
        settings = self.metering.settings
        if settings.execution_cost_per_threshold == 0:
            return 0
        try:
            count = self.metering.coordinator.count_node_execution(self.run.user_id)
        except CoordinationError:
            log.warning("execution cost not counted: Redis is unavailable", exc_info=True)
            return 0
        if count % settings.execution_cost_count_threshold != 0:
            return 0
        return settings.execution_cost_per_threshold

    def _entry(
        self,
        node: NodeCharge,
        amount: int,
        key: str,
        what: str,
        cost: BlockCost | None,
        details: dict[str, Any],
    ) -> Entry:
        matched = {pin: node.inputs.get(pin) for pin in cost.filter} if cost else {}
        return Entry(
            user_id=self.run.user_id,
            kind=CHARGE,
            amount=amount,
            key=key,
            reason=f"{node.block_id} {what} (node {node.node_id})",
            details={
                "graph_id": self.run.graph_id,
                "graph_exec_id": self.run.graph_exec_id,
                "node_id": node.node_id,
                "node_exec_id": node.node_exec_id,
                "block_id": node.block_id,
                "cost_type": cost.type.value if cost else None,
                "matched_inputs": matched,
                **details,
            },
            graph_id=self.run.graph_id,
            graph_exec_id=self.run.graph_exec_id,
            node_exec_id=node.node_exec_id,
        )

    def _refuse(
        self,
        node: NodeCharge,
        error: str,
        over_budget: bool,
        account: ledger.Account | None = None,
    ) -> Refused:
        """Stop the run's dispatching and note the refusal for the hooks (notifications)."""
        ledger.halt(self.session, self.run, error)
        if account is None:
            account = ledger.Account(ledger.balance_of(self.session, self.run.user_id), 0)
        note(
            self.session,
            ChargeRefused(
                user_id=self.run.user_id,
                graph_id=self.run.graph_id,
                graph_exec_id=self.run.graph_exec_id,
                node_exec_id=node.node_exec_id,
                error=error,
                balance=account.balance,
                top_ups=account.top_ups,
                over_budget=over_budget,
            ),
        )
        log.info("graph execution %s: %s", self.run.graph_exec_id, error)
        return Refused(error)


def _run_account(
    session: Session, graph_exec_id: str, loaded: GraphExecution | None = None
) -> RunAccount:
    """One read per transaction and run (none if the caller ``loaded`` the run under its row
    lock in this transaction): the caller holds the run's row lock, so what this transaction
    reads and writes of it (through the account kept here) stays true until it ends."""
    transaction = session.get_transaction()
    cached = session.info.get(_RUNS)
    if cached is None or cached[0] is not transaction:
        cached = session.info[_RUNS] = (transaction, {})
    runs: dict[str, RunAccount] = cached[1]
    if graph_exec_id not in runs:
        runs[graph_exec_id] = (
            ledger.read_run_account(session, graph_exec_id)
            if loaded is None
            else ledger.run_account_of(loaded)
        )
    return runs[graph_exec_id]


class CreditMetering:
    """Metering on the credit ledger (``autoexec.metering.Metering``)."""

    def __init__(
        self, settings: Settings, registry: BlockRegistry, coordinator: Coordinator
    ) -> None:
        self.settings, self.registry, self.coordinator = settings, registry, coordinator

    def check_budget(self, credit_budget: int | None) -> None:
        return None  # every node's charge is held to it

    def check_can_start(self, session: Session, user_id: str) -> None:
        """SPEC §6: a user whose balance is 0 or less cannot submit a run."""
        balance = ledger.balance_of(session, user_id)
        if balance <= 0:
            raise InsufficientBalanceError(
                f"user {user_id!r} has a balance of {balance} credits: top up before running "
                "a graph (autoexec credits top-up N, or api.top_up)"
            )

    def dispatch_meter(
        self, session: Session, graph_exec_id: str, loaded: GraphExecution | None = None
    ) -> Charges:
        return Charges(self, session, graph_exec_id, loaded)

    def charge_usage(
        self, session: Session, graph_exec_id: str, node: NodeCharge, stats: Mapping[str, Any]
    ) -> int:
        return Charges(self, session, graph_exec_id).after_run(node, stats)

    def refund_unstarted(self, session: Session, graph_exec_id: str) -> int:
        return Charges(self, session, graph_exec_id).refund_unstarted()

    def child_budget(self, session: Session, parent_exec_id: str) -> int | None:
        run = Charges(self, session, parent_exec_id).run
        return None if run.budget is None else max(run.budget - run.spent, 0)

    def add_child_spend(self, session: Session, parent_exec_id: str, child_exec_id: str) -> None:
        """In the transaction that resumes the parent's node (once: a node resumes once), so
        the parent's budget covers its children."""
        spent = ledger.read_run_account(session, child_exec_id).spent
        if spent:
            ledger.add_spent(session, Charges(self, session, parent_exec_id).run, spent)


def metering_for(settings: Settings, registry: BlockRegistry, coordinator: Coordinator) -> Metering:
    """The metering the settings ask for: the credit ledger, or none."""
    if not settings.billing_enabled:
        return NO_METERING
    return CreditMetering(settings, registry, coordinator)


def _insufficient(node: NodeCharge, amount: int, user_id: str, balance: int) -> str:
    return error_message(
        InsufficientBalanceError(
            f"node {node.node_id!r} ({node.block_id}) costs {amount} credits, but the balance "
            f"of user {user_id!r} is {balance}; top up to go on"
        )
    )


def _over_budget(node: NodeCharge, amount: int, run: RunAccount) -> str:
    return error_message(
        BudgetExceededError(
            f"node {node.node_id!r} ({node.block_id}) costs {amount} credits; the run has "
            f"spent {run.spent} of its credit_budget of {run.budget}"
        )
    )
