"""What every engine step needs, built once per process and passed explicitly."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from autoexec.blocks.registry import BlockRegistry
from autoexec.coordination import Coordinator
from autoexec.dataflow import RunSpec
from autoexec.engine.timer import Timer
from autoexec.graph import Graph
from autoexec.metering import NO_METERING, Metering
from autoexec.settings import Settings
from autoexec.store.db import Database
from autoexec.store.executions import ExecutionState, NodeTask

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Sends the engine's work to workers (Celery in production)."""

    # What its sends raise when the broker cannot be reached: a failure of the engine's own
    # (its task retries until the broker is back), never of the block being run.
    unavailable: tuple[type[Exception], ...]

    def run_graph(self, graph_exec_id: str) -> None: ...

    def advance_graph(self, graph_exec_id: str, countdown: float | None = None) -> None: ...

    def execute_node(self, task: NodeTask) -> None: ...

    def revoke(self, task_ids: list[str]) -> None: ...

    def fan_out(self, node_exec_id: int, graph_exec_id: str, elements: int) -> None: ...


@dataclass(frozen=True)
class Engine:
    settings: Settings
    db: Database
    coordinator: Coordinator
    registry: BlockRegistry
    dispatcher: Dispatcher
    metering: Metering = NO_METERING  # what runs cost: the credit ledger, or nothing
    # Output flushes and stop watches that are due later (one thread, started on first use).
    timer: Timer = field(default_factory=Timer)

    def wake(self, graph_exec_id: str, force: bool = False) -> None:
        """Make sure one orchestrator step will run for this graph (wake-ups coalesce).

        ``force`` publishes even if the flag is set: a re-delivered task cannot know whether
        the process that set the flag died before publishing.
        """
        if not self.coordinator.request_wake(graph_exec_id) and not force:
            return
        try:
            self.dispatcher.advance_graph(graph_exec_id)
        except Exception:
            self.coordinator.clear_wake(graph_exec_id)
            raise


class EngineParts(Protocol):
    """What an engine is built from: a process's runtime (``autoexec.runtime.Runtime``)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def database(self) -> Database: ...
    @property
    def coordinator(self) -> Coordinator: ...
    @property
    def registry(self) -> BlockRegistry: ...
    @property
    def metering(self) -> Metering: ...


def build_engine(dispatcher: Dispatcher, runtime: EngineParts) -> Engine:
    """The engine of ``runtime``; its database builds the hooks, so a hook that cannot be
    loaded stops the process at its start."""
    return Engine(
        settings=runtime.settings,
        db=runtime.database,
        coordinator=runtime.coordinator,
        registry=runtime.registry,
        dispatcher=dispatcher,
        metering=runtime.metering,
    )


def run_spec(
    engine: Engine, graph: Graph, execution: ExecutionState, with_inputs: bool = False
) -> RunSpec:
    """The dataflow spec of an execution; graph inputs are only needed to start it."""
    return RunSpec(
        graph=graph,
        blocks=engine.registry.get,
        inputs=execution.inputs if with_inputs else {},
        nodes_input_masks=execution.nodes_input_masks,
        nodes_to_skip=frozenset(execution.nodes_to_skip),
    )
