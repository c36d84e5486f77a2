"""Engine hooks: what billing, notifications, metrics and live events plug into.

The store notes each change it makes (a graph or node execution's status, a node's output) on
the transaction's session; once that transaction has committed, and never inside it, every hook
gets the changes in the order they were made, then one ``committed`` call. A rolled-back
transaction's changes are dropped. A hook that raises is logged and skipped: it never fails a
run. Hooks run on the engine's thread right after the commit, so they must be quick (the
built-in ones do one Redis round trip, publish a message per notification, or only update
memory).

A runtime (``autoexec.runtime``) builds its hooks from its settings: the built-in ones (live
events, Prometheus metrics, notifications) and those named in AUTOEXEC_HOOKS
(``pkg.module:Name,...``; each is called with no arguments to make the hook). Its database's
sessions carry them (``session_info``), so a commit calls the hooks of the runtime whose
session it was. The engine's core imports none of them.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

from autoexec.errors import ConfigurationError
from autoexec.statuses import SUSPENDED, TERMINAL, ExecutionStatus

log = logging.getLogger(__name__)

S = ExecutionStatus


@dataclass(frozen=True)
class GraphExecutionChange:
    """A graph execution's new status."""

    graph_exec_id: str
    user_id: str
    graph_id: str
    graph_version: int
    status: ExecutionStatus
    error: str | None = None
    stats: dict[str, Any] | None = None


@dataclass(frozen=True)
class NodeRef:
    """Which node execution a change is about."""

    graph_exec_id: str
    user_id: str
    node_exec_id: int
    node_id: str
    block_id: str


@dataclass(frozen=True)
class NodeExecutionChange:
    """A node execution's new status."""

    node: NodeRef
    status: ExecutionStatus
    error: str | None = None
    stats: dict[str, Any] | None = None
    queued_seconds: float | None = None  # queued → started, on a start


@dataclass(frozen=True)
class NodeOutput:
    """A node's ``seq``-th output, recorded once."""

    node: NodeRef
    seq: int
    name: str
    value: Any


@dataclass(frozen=True)
class BalanceChange:
    """A ledger row written (SPEC §6): a top-up, a charge, a refund or an adjustment."""

    user_id: str
    kind: str
    amount: int  # signed: a charge is negative
    balance_before: int
    balance_after: int
    transaction_id: int
    graph_id: str | None = None
    graph_exec_id: str | None = None
    node_exec_id: int | None = None


@dataclass(frozen=True)
class ChargeRefused:
    """A node's charge was refused (not enough credits, or past the run's budget): the node
    failed with ``error`` and its run stopped dispatching. ``top_ups`` counts the user's
    top-ups so far (a new one re-arms the zero-balance notice)."""

    user_id: str
    graph_id: str
    graph_exec_id: str
    node_exec_id: int
    error: str
    balance: int
    top_ups: int
    over_budget: bool


Change = GraphExecutionChange | NodeExecutionChange | NodeOutput | BalanceChange | ChargeRefused


class EngineHook(Protocol):
    """What the engine calls after each commit; subclass ``Hook`` to implement a few."""

    def execution_queued(self, change: GraphExecutionChange) -> None: ...
    def execution_started(self, change: GraphExecutionChange) -> None: ...
    def execution_ended(self, change: GraphExecutionChange) -> None: ...
    def execution_suspended(self, change: GraphExecutionChange) -> None: ...
    def node_queued(self, change: NodeExecutionChange) -> None: ...
    def node_started(self, change: NodeExecutionChange) -> None: ...
    def node_output(self, output: NodeOutput) -> None: ...
    def node_ended(self, change: NodeExecutionChange) -> None: ...
    def node_suspended(self, change: NodeExecutionChange) -> None: ...
    def balance_changed(self, change: BalanceChange) -> None: ...
    def charge_refused(self, change: ChargeRefused) -> None: ...
    def committed(self) -> None:
        """After the changes of one transaction (a hook that batches sends them here)."""


class Hook:
    """An ``EngineHook`` that does nothing: override the methods you need."""

    def execution_queued(self, change: GraphExecutionChange) -> None:
        return None

    def execution_started(self, change: GraphExecutionChange) -> None:
        return None

    def execution_ended(self, change: GraphExecutionChange) -> None:
        return None

    def execution_suspended(self, change: GraphExecutionChange) -> None:
        return None

    def node_queued(self, change: NodeExecutionChange) -> None:
        return None

    def node_started(self, change: NodeExecutionChange) -> None:
        return None

    def node_output(self, output: NodeOutput) -> None:
        return None

    def node_ended(self, change: NodeExecutionChange) -> None:
        return None

    def node_suspended(self, change: NodeExecutionChange) -> None:
        return None

    def balance_changed(self, change: BalanceChange) -> None:
        return None

    def charge_refused(self, change: ChargeRefused) -> None:
        return None

    def committed(self) -> None:
        return None


# --- noting changes on the session --------------------------------------------------------

_PENDING = "autoexec.changes"
_HOOKS = "autoexec.hooks"


def session_info(hooks: Sequence[EngineHook]) -> dict[str, Any]:
    """What a session factory puts in each session's ``info`` so that its commits call
    ``hooks``."""
    return {_HOOKS: hooks}


def note(session: Session, change: Change) -> None:
    """Note a change made in ``session``'s transaction, for the hooks after its commit."""
    session.info.setdefault(_PENDING, []).append(change)


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    changes = session.info.pop(_PENDING, None)
    if not changes:
        return
    try:
        call_hooks(session.info.get(_HOOKS, ()), _outputs_before_ends(changes))
    except Exception:  # whatever happens here, the commit stands and the caller goes on
        log.exception("could not call the engine hooks")


def _outputs_before_ends(changes: list[Change]) -> list[Change]:
    """A node's end is written before its last outputs in the same transaction (the end's
    UPDATE is what fences the attempt): hooks get those outputs first, then the end."""
    last_output = {
        change.node.node_exec_id: index
        for index, change in enumerate(changes)
        if isinstance(change, NodeOutput)
    }
    ordered: list[Change] = []
    held: dict[int, Change] = {}
    for index, change in enumerate(changes):
        if isinstance(change, NodeExecutionChange) and _ends_before(change, last_output, index):
            held[change.node.node_exec_id] = change
            continue
        ordered.append(change)
        if isinstance(change, NodeOutput) and last_output[change.node.node_exec_id] == index:
            end = held.pop(change.node.node_exec_id, None)
            if end is not None:
                ordered.append(end)
    return ordered


def _ends_before(change: NodeExecutionChange, last_output: dict[int, int], index: int) -> bool:
    """The change ends its node, and outputs of that node come later in the batch."""
    return change.status in TERMINAL and last_output.get(change.node.node_exec_id, -1) > index


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: Any) -> None:
    if not session.in_transaction():
        session.info.pop(_PENDING, None)


# --- calling the hooks ----------------------------------------------------------------------


def call_hooks(hooks: Sequence[EngineHook], changes: Sequence[Change]) -> None:
    """Give ``changes`` (committed) to every hook; a hook that raises is logged, not raised."""
    for hook in hooks:
        for change in changes:
            _call(hook, _method_of(hook, change), change)
        _call(hook, hook.committed, None)


def _method_of(hook: EngineHook, change: Change) -> Any:
    if isinstance(change, NodeOutput):
        return hook.node_output
    # Added with credits: a hook written before them may lack these two.
    if isinstance(change, BalanceChange):
        return getattr(hook, "balance_changed", None)
    if isinstance(change, ChargeRefused):
        return getattr(hook, "charge_refused", None)
    kind = "node" if isinstance(change, NodeExecutionChange) else "execution"
    action = _ACTIONS.get(change.status)
    return getattr(hook, f"{kind}_{action}") if action else None


# The hook method, after "node_" or "execution_", a change to each status calls.
_ACTIONS = {
    S.QUEUED: "queued",
    S.RUNNING: "started",
    **{status: "suspended" for status in SUSPENDED},
    **{status: "ended" for status in TERMINAL},
}


def _call(hook: EngineHook, method: Any, change: Change | None) -> None:
    if method is None:
        return
    try:
        method() if change is None else method(change)
    except Exception:
        log.exception("hook %s failed; the run goes on", type(hook).__name__)


def load_hooks(specs: Sequence[str]) -> list[EngineHook]:
    """The hooks named in AUTOEXEC_HOOKS; a clear error if one cannot be made."""
    return [load_hook(spec) for spec in specs]


def load_hook(spec: str) -> EngineHook:
    """Make the hook ``pkg.module:Name`` names; a clear error if it cannot be found."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ConfigurationError(f"AUTOEXEC_HOOKS: {spec!r} is not of the form pkg.module:Name")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"AUTOEXEC_HOOKS: cannot load {spec!r}: {exc}") from None
    hook = factory()
    missing = [name for name in _METHODS if not callable(getattr(hook, name, None))]
    if missing:
        raise ConfigurationError(
            f"AUTOEXEC_HOOKS: {spec!r} lacks {', '.join(missing)} "
            "(subclass autoexec.hooks.Hook to get them all)"
        )
    return hook  # type: ignore[no-any-return]


_METHODS = (
    "execution_queued",
    "execution_started",
    "execution_ended",
    "execution_suspended",
    "node_queued",
    "node_started",
    "node_output",
    "node_ended",
    "node_suspended",
    "committed",
)
