"""The ``SuspensionKind`` protocol and the registry of kinds.

The core calls a kind at fixed moments and never names one: while the node task runs
(``launch``, ``prepare``), in the transaction that suspends the node (``persist``), after its
commit (``after_commit``), when a re-delivered node task finds the node suspended
(``send_again``), when the reconciler finds it suspended in a run with no progress
(``repair``), when a cancel revokes a run's tasks (``task_ids``), after a run ends
(``after_run_end``) and in the reference interpreter (``in_reference``). ``Kind`` is the base
with a no-op for each, so a kind implements only what it does.

The built-in kinds are loaded by name on the first lookup (the core imports none of them);
another kind is registered with ``register`` by the module that defines it, which the process
imports (a block module named in AUTOEXEC_BLOCK_MODULES, for example).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from autoexec.blocks.base import Block, RunContext, Suspend, Yield
from autoexec.engine.context import Engine
from autoexec.graph import Node
from autoexec.hooks import NodeRef
from autoexec.statuses import ExecutionStatus
from autoexec.store.transaction import Transaction

SuspendT = TypeVar("SuspendT", bound=Suspend)

BUILTIN_KINDS = (
    "autoexec.engine.suspensions.review:KIND",
    "autoexec.engine.suspensions.child_run:KIND",
    "autoexec.engine.suspensions.fan_out:KIND",
)

# Runs a node instead of its block: given the block, the node's inputs and the engine (None in
# the reference interpreter), what the node yields, ending with a ``Suspend`` if it suspends.
Launch = Callable[[type[Block[Any]], Mapping[str, Any], Engine | None], Iterator[Yield]]


@dataclass(frozen=True)
class ReferenceNode:
    """A suspended node in the reference interpreter, which resumes it at once."""

    block: type[Block[Any]]
    inputs: dict[str, Any]
    context: RunContext
    # The interpreter's own means (``autoexec.reference.Resumer``): a review's decider, the
    # child graphs, a nested run.
    reference: Any


class SuspensionKind(Protocol[SuspendT]):
    """One way a node suspends: what it waits for, and how it resumes."""

    @property
    def suspends(self) -> type[SuspendT]:
        """The ``Suspend`` type this kind handles (and its subclasses)."""

    @property
    def status(self) -> ExecutionStatus:
        """The status the node waits in (REVIEW or WAITING)."""

    @property
    def meters_run(self) -> bool:
        """Whether the suspended node's own run is metered (a fan-out's is not: its elements
        are what ran)."""

    def launch(self, node: Node) -> Launch | None:
        """What runs instead of ``node``'s block, if this kind takes the node over."""

    def prepare(self, engine: Engine, node: NodeRef, suspension: SuspendT) -> SuspendT:
        """Before the node suspends: check that what it would wait for can happen (raise the
        error the node fails with instead); the suspension to record."""

    def stats(self, suspension: SuspendT) -> dict[str, Any]:
        """Entries the suspended node's stats keep (what ``send_again`` reads back)."""

    def persist(
        self, engine: Engine, session: Transaction, node: NodeRef, suspension: SuspendT
    ) -> None:
        """What the node waits for, written in the transaction that suspends it."""

    def after_commit(self, engine: Engine, node: NodeRef, suspension: SuspendT) -> None:
        """What is sent once the suspension is committed."""

    def send_again(self, engine: Engine, node_exec_id: int) -> None:
        """A re-delivered node task found the node suspended: what ``after_commit`` sent may
        have been lost in a crash; send it again if so (a copy must be harmless)."""

    def repair(self, engine: Engine, node_exec_id: int) -> bool:
        """The reconciler found the node suspended in a run with no progress: finish what the
        database says is finished (never send work that may still be running); True if it
        did."""

    def task_ids(self, session: Transaction, graph_exec_id: str) -> list[str]:
        """The ids of the tasks the run's suspended nodes wait for, to revoke on a cancel."""

    def after_run_end(self, engine: Engine, graph_exec_id: str) -> None:
        """After the commit that ends a run: resume what waits for it."""

    def in_reference(self, suspension: SuspendT, node: ReferenceNode) -> list[tuple[str, Any]]:
        """What the node yields when the reference interpreter resumes it at once; raises
        what it fails with."""


class Kind(Generic[SuspendT]):
    """A ``SuspensionKind`` that does nothing at each moment; subclasses set ``suspends`` and
    ``status`` and override what they do."""

    suspends: ClassVar[type[Suspend]]
    status: ClassVar[ExecutionStatus]
    meters_run: ClassVar[bool] = True

    def launch(self, node: Node) -> Launch | None:
        return None

    def prepare(self, engine: Engine, node: NodeRef, suspension: SuspendT) -> SuspendT:
        return suspension

    def stats(self, suspension: SuspendT) -> dict[str, Any]:
        return {}

    def persist(
        self, engine: Engine, session: Transaction, node: NodeRef, suspension: SuspendT
    ) -> None:
        return None

    def after_commit(self, engine: Engine, node: NodeRef, suspension: SuspendT) -> None:
        return None

    def send_again(self, engine: Engine, node_exec_id: int) -> None:
        return None

    def repair(self, engine: Engine, node_exec_id: int) -> bool:
        return False

    def task_ids(self, session: Transaction, graph_exec_id: str) -> list[str]:
        return []

    def after_run_end(self, engine: Engine, graph_exec_id: str) -> None:
        return None

    def in_reference(self, suspension: SuspendT, node: ReferenceNode) -> list[tuple[str, Any]]:
        raise TypeError(f"the reference interpreter cannot resume {type(suspension).__name__}")


class UnknownSuspensionError(TypeError):
    """A block yielded a ``Suspend`` no registered kind handles."""


class SuspensionKinds:
    """The kinds of this process, by the ``Suspend`` type each handles."""

    def __init__(self, builtin: tuple[str, ...] = BUILTIN_KINDS) -> None:
        self._builtin = builtin
        self._by_type: dict[type[Suspend], SuspensionKind[Any]] = {}
        self._loaded = False
        self._lock = threading.Lock()

    def register(self, kind: SuspensionKind[Any]) -> None:
        """Make ``kind`` the kind of its ``suspends`` type (replacing one registered before)."""
        self._by_type[kind.suspends] = kind

    def of(self, suspension: Suspend) -> SuspensionKind[Any]:
        """The kind that handles ``suspension``."""
        by_type = self._kinds()
        for cls in type(suspension).__mro__:
            kind = by_type.get(cls)
            if kind is not None:
                return kind
        raise UnknownSuspensionError(
            f"no suspension kind handles {type(suspension).__name__}: register one with "
            "autoexec.engine.suspensions.registry.register"
        )

    def all(self) -> list[SuspensionKind[Any]]:
        return list(self._kinds().values())

    def launch_for(self, node: Node) -> Launch | None:
        """What runs instead of ``node``'s block, if a kind takes it over."""
        return next((launch for kind in self.all() if (launch := kind.launch(node))), None)

    def send_again(self, engine: Engine, node_exec_id: int) -> None:
        for kind in self.all():
            kind.send_again(engine, node_exec_id)

    def repair(self, engine: Engine, node_exec_id: int) -> bool:
        return any([kind.repair(engine, node_exec_id) for kind in self.all()])

    def task_ids(self, session: Transaction, graph_exec_id: str) -> list[str]:
        return [task_id for kind in self.all() for task_id in kind.task_ids(session, graph_exec_id)]

    def after_run_end(self, engine: Engine, graph_exec_id: str) -> None:
        for kind in self.all():
            kind.after_run_end(engine, graph_exec_id)

    def _kinds(self) -> dict[type[Suspend], SuspensionKind[Any]]:
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    for spec in self._builtin:
                        self._load(spec)
                    self._loaded = True
        return self._by_type

    def _load(self, spec: str) -> None:
        module_name, _, attribute = spec.partition(":")
        kind: SuspensionKind[Any] = getattr(importlib.import_module(module_name), attribute)
        self._by_type.setdefault(kind.suspends, kind)


KINDS = SuspensionKinds()


def register(kind: SuspensionKind[Any]) -> None:
    """Register ``kind`` in this process (call it where the kind is defined)."""
    KINDS.register(kind)
