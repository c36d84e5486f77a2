"""Differential tests: random graphs on the distributed engine against the reference interpreter.

``graph_strategies`` generates valid graphs of built-in blocks whose result does not depend on
the order in which outputs arrive. Each graph runs on the real cluster (``celery -A autoexec
worker -c 2`` on RabbitMQ, Redis and PostgreSQL) and on ``autoexec.reference.run_reference``;
both must give the same final status, the same graph outputs and the same node executions, all
compared as multisets (parallel runs may reorder them). A graph may hold ``human_review``
nodes (the engine side decides each pending review as the case drew it for its node; the
reference gets the same decisions through its review decider), ``agent_executor`` nodes (the
child graphs are saved for the same user first; the reference runs them inline) and fan-out
nodes (SPEC §8.3).

A pure test first checks the generator's promise: every generated graph gives the same result
under random interleavings of node runs and yields as under the reference, so that a difference
on the cluster is the engine's, not the generator's.

Settings (environment):
- ``AUTOEXEC_DIFFERENTIAL_GRAPHS``: graphs per cluster run (default 100, and a third of that
  on a worker that delivers one output per orchestrator step);
- ``AUTOEXEC_DIFFERENTIAL_SEED``: explore other graphs (default: the same graphs every run).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from autoexec import api
from autoexec.block_run.failures import error_message
from autoexec.blocks.base import ERROR_PIN, AwaitReview
from autoexec.blocks.registry import load_registry
from autoexec.dataflow import (
    FailedNode,
    RunSpec,
    YieldedOutput,
    deliver,
    final_status,
    graph_outputs,
    start,
)
from autoexec.engine.context import Engine
from autoexec.engine.submission import RunRequest, validate_request
from autoexec.graph import Graph, GraphDefinition, validate_graph
from autoexec.reference import (
    MemoryExecution,
    MemoryStore,
    ReferenceResult,
    Resumer,
    ReviewDecider,
    deliver_failures,
    node_outputs,
    run_reference,
)
from autoexec.statuses import TERMINAL, ExecutionStatus
from autoexec.store.graphs import load_graph
from tests.integration.conftest import Cluster, private_queues, worker_process
from tests.integration.graph_strategies import Case, graph_cases

S = ExecutionStatus
GRAPHS = int(os.environ.get("AUTOEXEC_DIFFERENTIAL_GRAPHS", "100"))
SMALL_BATCH_GRAPHS = max(GRAPHS // 3, 1)
SEED = os.environ.get("AUTOEXEC_DIFFERENTIAL_SEED")
WAIT_SECONDS = 150.0
REGISTRY = load_registry()
ROOT = Path(__file__).resolve().parents[2]


# --- comparing runs order-insensitively ----------------------------------------------------


def canon(value: Any) -> str:
    """A canonical JSON text: equal values give equal texts whatever their dict key order."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def canon_outputs(outputs: dict[str, list[Any]]) -> str:
    """A node execution's outputs, each pin's values as a sorted multiset."""
    return canon({pin: sorted(canon(v) for v in values) for pin, values in outputs.items()})


def by_pin(pairs: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {}
    for pin, value in pairs:
        grouped.setdefault(pin, []).append(value)
    return grouped


ExecutionKey = tuple[str, str, str, str]  # node_id, inputs, status, outputs


@dataclass(frozen=True)
class Summary:
    status: str
    outputs: dict[str, list[str]]
    executions: Counter[ExecutionKey]
    unhandled_errors: frozenset[str]

    @staticmethod
    def build(
        status: ExecutionStatus,
        outputs: dict[str, list[Any]],
        executions: Iterator[tuple[str, dict[str, Any] | None, ExecutionStatus, dict[str, Any]]],
        unhandled_errors: frozenset[str],
    ) -> Summary:
        return Summary(
            status.value,
            {name: sorted(canon(v) for v in values) for name, values in outputs.items()},
            Counter(
                (node_id, canon(inputs), st_.value, canon_outputs(outs))
                for node_id, inputs, st_, outs in executions
            ),
            unhandled_errors,
        )


def unhandled(graph: Graph, failed: list[tuple[str, str | None]]) -> frozenset[str]:
    return frozenset(err or "" for node_id, err in failed if not graph.error_is_handled(node_id))


def summarize_reference(graph: Graph, result: ReferenceResult) -> Summary:
    records = result.node_executions
    return Summary.build(
        result.status,
        result.outputs,
        ((r.node_id, r.inputs, r.status, by_pin(r.outputs)) for r in records),
        unhandled(graph, [(r.node_id, r.error) for r in records if r.status is S.FAILED]),
    )


def summarize_engine(graph: Graph, view: api.ExecutionView) -> Summary:
    nodes = view.node_executions
    return Summary.build(
        view.status,
        view.outputs,
        ((n.node_id, n.inputs, n.status, n.outputs) for n in nodes),
        unhandled(graph, [(n.node_id, n.error) for n in nodes if n.status is S.FAILED]),
    )


def differences(expected: Summary, actual: Summary, actual_error: str | None) -> list[str]:
    """What ``actual`` (the engine) does differently from ``expected`` (the reference)."""
    problems: list[str] = []
    if actual.status != expected.status:
        problems.append(f"status: reference {expected.status}, engine {actual.status}")
    if actual.outputs != expected.outputs:
        problems.append(f"outputs: reference {expected.outputs}, engine {actual.outputs}")
    missing = expected.executions - actual.executions
    extra = actual.executions - expected.executions
    problems += [f"node execution only on the reference: {key}" for key in sorted(missing)]
    problems += [f"node execution only on the engine: {key}" for key in sorted(extra)]
    if actual.unhandled_errors != expected.unhandled_errors:
        problems.append(
            f"unhandled errors: reference {sorted(expected.unhandled_errors)}, "
            f"engine {sorted(actual.unhandled_errors)}"
        )
    # The graph's error is "the first unhandled error": any one of them, in a parallel run.
    if (actual_error is None) != (not expected.unhandled_errors) or (
        actual_error is not None and actual_error not in expected.unhandled_errors
    ):
        problems.append(
            f"graph error {actual_error!r} is not one of {sorted(expected.unhandled_errors)}"
        )
    return problems


# --- generated cases ----------------------------------------------------------------------


def draw_cases(count: int, offset: int = 0) -> list[Case]:
    """``count`` hypothesis-drawn cases: the same ones every run, unless a seed is given.

    Hypothesis starts with small, simple examples and mutates others into near-copies, so it
    draws four times as many as needed and the batch is spread over the distinct ones.
    """
    drawn: list[Case] = []

    @settings(
        max_examples=4 * count,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(graph_cases())
    def collect(case: Case) -> None:
        drawn.append(case)

    (collect if SEED is None else seed(int(SEED))(collect))()
    distinct = list({case.describe(): case for case in drawn}.values())
    step = max(len(distinct) // count, 1)
    return distinct[offset % step :: step][:count]


def in_memory_graph(case: Case) -> Graph:
    return graph_of(case.definition, "differential")


def graph_of(definition_data: dict[str, Any], graph_id: str) -> Graph:
    definition = GraphDefinition.model_validate(definition_data)
    validate_graph(definition, REGISTRY)
    return Graph(
        id=graph_id,
        version=1,
        user_id="tester",
        **definition.model_dump(exclude={"id"}),
    )


def in_memory_children(case: Case) -> dict[str, Graph]:
    return {graph_id: graph_of(child, graph_id) for graph_id, child in case.children.items()}


def review_decider(case: Case) -> ReviewDecider:
    """Decides each review as the case drew it for its node (each review node's message is
    its node id)."""

    def decide(review: AwaitReview) -> tuple[str, Any]:
        return case.reviews[review.message].output(review.data)

    return decide


def run_on_reference(graph: Graph, case: Case, children: Mapping[str, Graph]) -> ReferenceResult:
    return run_reference(
        graph,
        REGISTRY.get,
        case.inputs,
        case.nodes_input_masks,
        case.nodes_to_skip,
        review=review_decider(case),
        children=children,
    )


# --- the generator's promise: order does not matter ----------------------------------------


def run_interleaved(
    graph: Graph, case: Case, children: Mapping[str, Graph], rng: random.Random
) -> Summary:
    """Like the reference, but node runs start and yield in a random interleaving (as on a
    cluster: any order that keeps each execution's yields in order)."""
    spec = RunSpec(
        graph, REGISTRY.get, case.inputs, case.nodes_input_masks, frozenset(case.nodes_to_skip)
    )
    resumer = Resumer(REGISTRY.get, review_decider(case), children)
    store = MemoryStore()
    queued = list(start(spec, store))
    running: list[tuple[MemoryExecution, Iterator[tuple[str, Any]]]] = []
    while queued or running or store.undelivered:
        queued += deliver_failures(spec, store)  # of executions the ready check failed
        if not (queued or running):
            break
        pick = rng.randrange(len(queued) + len(running))
        if pick < len(queued):
            execution = store.executions[queued.pop(pick)]
            execution.status = S.RUNNING
            running.append((execution, node_outputs(spec, execution, resumer)))
            continue
        slot = pick - len(queued)
        execution, steps = running[slot]
        try:
            pin, value = next(steps)
        except StopIteration:
            execution.status = S.COMPLETED
        except Exception as exc:
            execution.status, execution.error = S.FAILED, error_message(exc)
            execution.outputs.append((ERROR_PIN, execution.error))
            queued += deliver(spec, store, execution.node_id, ERROR_PIN, execution.error)
        else:
            execution.outputs.append((pin, value))
            queued += deliver(spec, store, execution.node_id, pin, value)
            continue
        running.pop(slot)
    return _summarize_memory(graph, store)


def _summarize_memory(graph: Graph, store: MemoryStore) -> Summary:
    executions = list(store.executions.values())
    failed = [e for e in executions if e.status is S.FAILED]
    outputs = graph_outputs(
        YieldedOutput(e.node_id, graph.node(e.node_id).block_id, pin, value, e.inputs or {})
        for e in executions
        for pin, value in e.outputs
    )
    return Summary.build(
        final_status(graph, [FailedNode(e.node_id, e.error or "") for e in failed]),
        outputs,
        ((e.node_id, e.inputs, e.status, by_pin(e.outputs)) for e in executions),
        unhandled(graph, [(e.node_id, e.error) for e in failed]),
    )


@settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=graph_cases(), seeds=st.lists(st.integers(0, 2**32), min_size=4, max_size=4))
def test_generated_graphs_are_valid_and_order_independent(case: Case, seeds: list[int]) -> None:
    graph = in_memory_graph(case)
    request = RunRequest(
        "differential", "tester", case.inputs, 1, case.nodes_input_masks, case.nodes_to_skip
    )
    validate_request(graph, request)
    children = in_memory_children(case)
    expected = summarize_reference(graph, run_on_reference(graph, case, children))
    for one_seed in seeds:
        actual = run_interleaved(graph, case, children, random.Random(one_seed))
        assert actual == expected, case.describe()


# --- the engine against the reference ------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    index: int
    case: Case
    user_id: str
    graph_id: str
    version: int
    exec_id: str
    children: dict[str, tuple[str, int]]  # the id and version each child graph is saved as


def submit(engine: Engine, index: int, case: Case) -> Submitted:
    """Save the case's child graphs and the graph (calling them by their saved ids) for a new
    user, and start it."""
    owner = f"diff-{uuid.uuid4().hex[:8]}"
    children = {
        placeholder: api.save_graph(child, owner, engine=engine)
        for placeholder, child in case.children.items()
    }
    definition = {
        **case.definition,
        "name": f"differential-{index}",
        "nodes": [calling_saved(node, children) for node in case.definition["nodes"]],
    }
    graph_id, version = api.save_graph(definition, owner, engine=engine)
    exec_id = api.execute_graph(
        graph_id,
        owner,
        case.inputs,
        nodes_input_masks=case.nodes_input_masks,
        nodes_to_skip=case.nodes_to_skip,
        engine=engine,
    )
    return Submitted(index, case, owner, graph_id, version, exec_id, children)


def calling_saved(node: dict[str, Any], children: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """``node``, calling the saved child graph if it is an ``agent_executor``."""
    if node["block_id"] != "agent_executor":
        return node
    saved_id, _ = children[node["input_default"]["graph_id"]]
    return {**node, "input_default": {**node["input_default"], "graph_id": saved_id}}


def wait_deciding(engine: Engine, run: Submitted, timeout: float) -> api.ExecutionView:
    """Wait for the run to end, deciding each of its reviews as the case drew it on the way."""
    if not run.case.reviews:
        return api.wait(run.exec_id, run.user_id, timeout=timeout, engine=engine)
    deadline = time.monotonic() + timeout
    while True:
        view = api.get_execution(run.exec_id, run.user_id, engine=engine)
        if view.status in TERMINAL:
            return view
        if time.monotonic() > deadline:
            raise TimeoutError(f"graph execution {run.exec_id} still {view.status.value}")
        if not decide_pending_reviews(engine, run, view):
            time.sleep(0.05)


def decide_pending_reviews(engine: Engine, run: Submitted, view: api.ExecutionView) -> bool:
    """Decide each pending review of the run whose node execution ``view`` shows (a review
    of a newer one waits for the next look); whether any was decided."""
    node_ids = {node.id: node.node_id for node in view.node_executions}
    decided = False
    for review in api.list_reviews(run.user_id, engine=engine):
        node_id = node_ids.get(review.node_exec_id)
        if review.graph_exec_id != run.exec_id or node_id is None:
            continue
        decision = run.case.reviews[node_id]
        if decision.approved:
            api.approve(review.id, run.user_id, data=decision.data, engine=engine)
        else:
            api.reject(review.id, run.user_id, decision.reason, engine=engine)
        decided = True
    return decided


def compare(engine: Engine, run: Submitted, deadline: float) -> tuple[Summary, list[str]]:
    """Run the case on the reference, wait for the engine; the reference's summary and what
    the engine did differently."""
    with engine.db.session() as session:
        graph = load_graph(session, run.graph_id, run.version)  # as stored: same key order
        children = {
            graph_id: load_graph(session, graph_id, version)
            for graph_id, version in run.children.values()
        }
    expected = summarize_reference(graph, run_on_reference(graph, run.case, children))
    timeout = max(deadline - time.monotonic(), 1.0)
    try:
        view = wait_deciding(engine, run, timeout)
    except TimeoutError as exc:
        return expected, [f"the engine did not finish: {exc}"]
    return expected, differences(expected, summarize_engine(graph, view), view.error)


def report(run: Submitted, problems: list[str]) -> str:
    lines = "\n  ".join(problems)
    return (
        f"graph #{run.index} (execution {run.exec_id}) differs:\n  {lines}\n"
        f"case:\n{run.case.describe()}"
    )


def run_batch(engine: Engine, cases: list[Case]) -> list[Summary]:
    """Submit every case at once, then compare each with the reference; fail naming each
    graph that differs, with its definition."""
    runs = [submit(engine, index, case) for index, case in enumerate(cases)]
    deadline = time.monotonic() + WAIT_SECONDS
    compared = [compare(engine, run, deadline) for run in runs]
    failures = [
        report(run, problems) for run, (_, problems) in zip(runs, compared, strict=True) if problems
    ]
    assert not failures, f"{len(failures)} of {len(runs)} graphs differ:\n\n" + "\n\n".join(
        failures
    )
    return [summary for summary, _ in compared]


FEATURES = (
    "graph COMPLETED",
    "graph FAILED",
    "static link",
    "handled error",
    "stream",
    "dynamic pin",
    "mask",
    "skip",
    "node FAILED",
    "node FAILED on invalid input",
    "node INCOMPLETE",
    "node ran 3+ times",
    "review approved as is",
    "review approved with other data",
    "review rejected",
    "child graph",
    "fan-out",
    "fan-out element failed",
)


def coverage(cases: list[Case], summaries: list[Summary]) -> Counter[str]:
    """What the batch exercised, so that a weaker generator is noticed."""
    seen: Counter[str] = Counter()
    for case, summary in zip(cases, summaries, strict=True):
        links = case.definition["links"]
        blocks = {node["block_id"] for node in case.definition["nodes"]}
        seen[f"graph {summary.status}"] += 1
        seen["static link"] += any(link["is_static"] for link in links)
        seen["handled error"] += any(link["source_name"] == ERROR_PIN for link in links)
        seen["dynamic pin"] += any("_#_" in link["sink_name"] for link in links)
        seen["stream"] += "step_through_items" in blocks
        seen["mask"] += bool(case.nodes_input_masks)
        seen["skip"] += bool(case.nodes_to_skip)
        statuses = {key[2] for key in summary.executions}
        seen["node FAILED"] += S.FAILED.value in statuses
        seen["node FAILED on invalid input"] += any(
            "invalid input for node" in key[3] for key in summary.executions
        )
        seen["node INCOMPLETE"] += S.INCOMPLETE.value in statuses
        runs = Counter(key[0] for key in summary.executions.elements())
        seen["node ran 3+ times"] += any(n >= 3 for n in runs.values())
        seen.update(review_features(case))
        seen["child graph"] += "agent_executor" in blocks
        seen["fan-out"] += any(node.get("fan_out") for node in case.definition["nodes"])
        seen["fan-out element failed"] += any(
            "fan-out element" in key[3] for key in summary.executions
        )
    return seen


def review_features(case: Case) -> set[str]:
    return {
        "review rejected"
        if not decision.approved
        else "review approved as is"
        if decision.data is None
        else "review approved with other data"
        for decision in case.reviews.values()
    }


def test_engine_matches_reference_on_random_graphs(cluster: Cluster) -> None:
    cases = draw_cases(GRAPHS)
    assert len(cases) >= min(GRAPHS, 50)
    seen = coverage(cases, run_batch(cluster.engine, cases))
    missing = [feature for feature in FEATURES if not seen[feature]]
    if len(cases) >= 50:  # a small batch (AUTOEXEC_DIFFERENTIAL_GRAPHS) may well miss some
        assert not missing, f"no generated graph has {missing}: {dict(seen)}"


def test_engine_matches_reference_with_one_output_per_step(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The same on a worker whose orchestrator step delivers one output at a time, so every
    run crosses many batch boundaries (the default batch holds 200)."""
    cases = draw_cases(SMALL_BATCH_GRAPHS, offset=1)
    with private_queues(cluster) as queues:
        env = {**queues.env, "AUTOEXEC_DELIVERY_BATCH_SIZE": "1"}
        with worker_process(env, 2, tmp_path / "worker.log", f"batch1-{uuid.uuid4().hex[:8]}"):
            run_batch(queues.engine, cases)


# --- engine/reference differences found by the generator, kept out of it -------------------


def run_both(
    cluster: Cluster, definition: dict[str, Any], inputs: dict[str, Any]
) -> tuple[api.ExecutionView, ReferenceResult]:
    owner = f"diff-{uuid.uuid4().hex[:8]}"
    graph_id, version = api.save_graph(definition, owner, engine=cluster.engine)
    exec_id = api.execute_graph(graph_id, owner, inputs, engine=cluster.engine)
    view = api.wait(exec_id, owner, timeout=60, engine=cluster.engine)
    with cluster.engine.db.session() as session:
        graph = load_graph(session, graph_id, version)
    return view, run_reference(graph, cluster.engine.registry.get, inputs)


def test_dict_key_order_survives_the_engine(cluster: Cluster) -> None:
    definition = {
        "name": "dict-order",
        "nodes": [
            {"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}},
            {"id": "step", "block_id": "step_through_items", "input_default": {}},
            {"id": "text", "block_id": "fill_text_template", "input_default": {"format": "{d}"}},
            {"id": "keys", "block_id": "agent_output", "input_default": {"name": "keys"}},
            {"id": "shown", "block_id": "agent_output", "input_default": {"name": "shown"}},
        ],
        "links": [
            {"source_id": "x", "source_name": "result", "sink_id": "step", "sink_name": "items"},
            {"source_id": "x", "source_name": "result", "sink_id": "text",
             "sink_name": "values_#_d"},
            {"source_id": "step", "source_name": "key", "sink_id": "keys", "sink_name": "value"},
            {"source_id": "text", "source_name": "output", "sink_id": "shown",
             "sink_name": "value"},
        ],
    }  # fmt: skip
    view, reference = run_both(cluster, definition, {"x": {"bb": 1, "a": 2}})
    step = next(n for n in view.node_executions if n.node_id == "step")
    reference_step = next(r for r in reference.node_executions if r.node_id == "step")
    assert reference.outputs["shown"] == ["{'bb': 1, 'a': 2}"]
    assert step.outputs["key"] == [v for pin, v in reference_step.outputs if pin == "key"]
    assert view.outputs["shown"] == reference.outputs["shown"]


@pytest.mark.parametrize(
    ("x", "b"), [(1_000_000_000_000, 100_000_000_000), ("-0", 1)], ids=["1e+23", "-0.0"]
)
def test_numbers_survive_the_engine(cluster: Cluster, x: Any, b: int) -> None:
    definition = {
        "name": "numbers",
        "nodes": [
            {"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}},
            {"id": "calc", "block_id": "calculator",
             "input_default": {"operation": "multiply", "b": b}},
            {"id": "out", "block_id": "agent_output", "input_default": {"name": "product"}},
        ],
        "links": [
            {"source_id": "x", "source_name": "result", "sink_id": "calc", "sink_name": "a"},
            {"source_id": "calc", "source_name": "result", "sink_id": "out",
             "sink_name": "value"},
        ],
    }  # fmt: skip
    view, reference = run_both(cluster, definition, {"x": x})
    graph = in_memory_graph(Case(definition))
    expected = summarize_reference(graph, reference)
    assert differences(expected, summarize_engine(graph, view), view.error) == []


def test_the_embedded_stack_matches_the_reference_on_random_graphs(tmp_path: Path) -> None:
    """The same batch on the embedded stack (SQLite, the in-process broker and worker thread,
    the Redis stand-in), in a process of its own as ``autoexec run`` would be."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOEXEC_")}
    env = {**clean, "AUTOEXEC_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.integration.differential_embedded", str(GRAPHS)]
    batch = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=3 * WAIT_SECONDS
    )
    assert batch.returncode == 0, batch.stderr[-20_000:]
    covered = json.loads(batch.stdout)
    missing = [feature for feature, seen in covered.items() if not seen]
    if GRAPHS >= 50:
        assert not missing, f"no generated graph has {missing}: {covered}"
