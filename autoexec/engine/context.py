"""What every engine step needs, built once per process and passed explicitly."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from autoexec.billing import metering_for
from autoexec.blocks.registry import BlockRegistry, load_registry
from autoexec.coordination import Coordinator, get_coordinator
from autoexec.dataflow import RunSpec
from autoexec.graph import Graph
from autoexec.hooks import installed_hooks
from autoexec.metering import NO_METERING, Metering
from autoexec.settings import Settings, get_settings
from autoexec.store.db import Database, get_database
from autoexec.store.executions import NodeTask
from autoexec.store.tables import GraphExecution

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Sends the engine's work to workers (Celery in production)."""

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


def build_engine(dispatcher: Dispatcher, settings: Settings | None = None) -> Engine:
    settings = settings or get_settings()
    installed_hooks()  # a hook that cannot be loaded stops the process at its start
    coordinator = get_coordinator(settings.redis_url)
    registry = load_registry(settings.block_module_names)
    return Engine(
        settings=settings,
        db=get_database(settings.database_url),
        coordinator=coordinator,
        registry=registry,
        dispatcher=dispatcher,
        metering=metering_for(settings, registry, coordinator),
    )


def run_spec(
    engine: Engine, graph: Graph, execution: GraphExecution, with_inputs: bool = False
) -> RunSpec:
    """The dataflow spec of an execution; graph inputs are only needed to start it."""
    return RunSpec(
        graph=graph,
        blocks=engine.registry.get,
        inputs=execution.inputs if with_inputs else {},
        nodes_input_masks=execution.nodes_input_masks,
        nodes_to_skip=frozenset(execution.nodes_to_skip),
    )
