"""A new suspension kind, defined in this file alone: a block suspends with it, a real worker
leaves its node waiting in the kind's status, and the kind resumes it from this process.

The worker imports this module as a block module (AUTOEXEC_BLOCK_MODULES): that defines the
block and registers the kind there, as it does here. No core module names the kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy.orm import Session

from autoexec import api
from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext, Suspend, Yield
from autoexec.blocks.registry import load_registry
from autoexec.engine.context import Engine
from autoexec.engine.suspensions.registry import Kind, ReferenceNode, register
from autoexec.engine.suspensions.resume import Resumption, resume_node
from autoexec.graph import Graph
from autoexec.reference import run_reference
from autoexec.statuses import ExecutionStatus
from autoexec.store import executions as repo
from tests.integration.conftest import Cluster, environment, private_queues, worker_process
from tests.integration.test_engine import graph, node, user
from tests.integration.test_reviews import node_status, wait_for_status

S = ExecutionStatus
SIGNAL_KEY = "signal"
# This file as the worker imports it (pytest imports it as a top-level module).
THIS_MODULE = "tests.integration.test_suspension_kinds"


@dataclass(frozen=True)
class AwaitSignal(Suspend):
    """Suspend the node until a signal called ``name`` comes; it then yields the signal's
    value next to what it was given."""

    name: str
    given: Any


class SignalKind(Kind[AwaitSignal]):
    """Waits in WAITING; keeps the signal's name and the node's value in the node's stats."""

    suspends = AwaitSignal
    status = S.WAITING

    def stats(self, suspension: AwaitSignal) -> dict[str, Any]:
        return {SIGNAL_KEY: {"name": suspension.name, "given": suspension.given}}

    def in_reference(self, suspension: AwaitSignal, node: ReferenceNode) -> list[tuple[str, Any]]:
        return [("pair", [suspension.given, f"{suspension.name}!"])]


register(SignalKind())


def send_signal(engine: Engine, graph_exec_id: str, node_exec_id: int, value: Any) -> None:
    """Resume the node waiting for a signal: it yields ``[given, value]`` on ``pair``."""

    def resolve(session: Session) -> Resumption:
        waiting = repo.get_node_execution(session, node_exec_id).stats[SIGNAL_KEY]
        return Resumption([("pair", [waiting["given"], value])])

    resume_node(engine, graph_exec_id, node_exec_id, resolve)


class WaitForSignalInput(BlockInput):
    name: str = Field(description="The signal to wait for.")
    value: Any = Field(description="What the node pairs with the signal's value.")


class WaitForSignalOutput(BlockOutput):
    pair: list[Any] = Field(default_factory=list, description="[value, the signal's value]")


class WaitForSignalBlock(Block[WaitForSignalInput]):
    id: ClassVar[str] = "wait_for_signal_test"
    name: ClassVar[str] = "Wait for a signal (test)"
    Input = WaitForSignalInput
    Output = WaitForSignalOutput

    def run(self, data: WaitForSignalInput, ctx: RunContext) -> Iterator[Yield]:
        yield AwaitSignal(data.name, data.value)


SIGNALLED = graph(
    [
        node("x", "agent_input", name="x"),
        node("wait", WaitForSignalBlock.id, name="go"),
        node("out", "agent_output", name="pair"),
    ],
    [("x", "result", "wait", "value"), ("wait", "pair", "out", "value")],
)


def test_a_kind_defined_in_a_test_suspends_a_node_on_a_worker_and_resumes_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    owner = user()
    with private_queues(cluster) as queues:
        blocks = f"{queues.env['AUTOEXEC_BLOCK_MODULES']},{THIS_MODULE}"
        env = {**queues.env, "AUTOEXEC_BLOCK_MODULES": blocks}
        with environment(env) as engine, worker_process(env, 1, tmp_path / "w.log", "kind"):
            graph_id, _ = api.save_graph(SIGNALLED, owner, engine=engine)
            exec_id = api.execute_graph(graph_id, owner, {"x": 41}, engine=engine)
            view = wait_for_status(engine, exec_id, owner, S.WAITING)
            assert node_status(view, "wait") is S.WAITING
            [waiting] = [n for n in view.node_executions if n.node_id == "wait"]
            assert waiting.stats[SIGNAL_KEY] == {"name": "go", "given": 41}

            send_signal(engine, exec_id, waiting.id, "now")
            ended = api.wait(exec_id, owner, timeout=60, engine=engine)
    assert ended.status is S.COMPLETED, ended.error
    assert ended.outputs == {"pair": [[41, "now"]]}
    assert node_status(ended, "wait") is S.COMPLETED


def test_the_reference_interpreter_resumes_the_new_kind_through_it() -> None:
    registry = load_registry([__name__])
    definition = Graph.model_validate({**SIGNALLED, "id": "g", "version": 1, "user_id": "u"})
    result = run_reference(definition, registry.get, {"x": 1})
    assert result.status is S.COMPLETED
    assert result.outputs == {"pair": [[1, "go!"]]}
