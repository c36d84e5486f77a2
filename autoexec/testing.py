"""Test your blocks and graphs in-process: the whole engine in the test's thread, no services.

::

    from autoexec import testing
    from autoexec.statuses import ExecutionStatus

    def test_my_graph() -> None:
        with testing.engine(blocks=[MyBlock]) as t:
            graph_id = t.save_graph(MY_GRAPH)
            run = t.run(graph_id, {"x": 1})
            assert run.status is ExecutionStatus.COMPLETED
            assert run.outputs == {"result": [2]}

:func:`engine` gives a :class:`TestEngine`: a migrated SQLite file database (in a temporary
directory, or the file you name), an in-process Redis stand-in for coordination and an
:class:`InMemoryDispatcher` that queues the work a cluster would send to its workers. Nothing
runs until you ask: :meth:`TestEngine.run` submits a run and drains the queue, and
:meth:`TestEngine.drain` runs queued work (in the order it was queued, each piece through the
same engine function a Celery task calls) until none is left. Runs, reviews, cancels and
credits go through ``autoexec.api`` with this engine.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import event

from autoexec import api
from autoexec.billing import notifications
from autoexec.billing.ledger import CreditTransactionView
from autoexec.blocks.base import Block
from autoexec.engine import node_execution, orchestrator
from autoexec.engine.admission import start_run
from autoexec.engine.context import Engine
from autoexec.engine.suspensions import fan_out
from autoexec.graph import GraphDefinition
from autoexec.runtime import Runtime
from autoexec.settings import Settings, load_settings
from autoexec.statuses import TERMINAL
from autoexec.store import executions as repo
from autoexec.store.executions import NodeTask
from autoexec.store.migrate import upgrade_database

__all__ = [
    "ADVANCE_GRAPH",
    "DEFAULT_USER",
    "EXECUTE_NODE",
    "FAN_OUT_ELEMENT",
    "GATHER_FAN_OUT",
    "NOTIFY",
    "RUN_GRAPH",
    "InMemoryDispatcher",
    "Job",
    "TestEngine",
    "engine",
]

DEFAULT_USER = "test-user"
DRAIN_TIMEOUT_SECONDS = 60.0

# The kinds of queued work: one per Celery task the engine sends.
RUN_GRAPH = "run_graph"
ADVANCE_GRAPH = "advance_graph"
EXECUTE_NODE = "execute_node"
FAN_OUT_ELEMENT = "fan_out_element"
GATHER_FAN_OUT = "gather_fan_out"
NOTIFY = "notify"


@dataclass(frozen=True)
class Job:
    """One piece of queued work: what a Celery message would carry."""

    kind: str
    task_id: str
    graph_exec_id: str | None = None
    node: NodeTask | None = None  # execute_node
    node_exec_id: int | None = None  # fan-out element or gather
    index: int = 0  # fan-out element
    rerun: bool = False  # execute_node sent again by its own retry, or by the reconciler
    notification: notifications.NotificationRequest | None = None
    sink: str | None = None
    attempt: int = 0
    due: float = 0.0  # time.monotonic() from which it may run

    @property
    def node_id(self) -> str | None:
        return self.node.node_id if self.node else None

    def __str__(self) -> str:
        """The kind and what it is about, e.g. ``execute_node calc <task id>``."""
        if self.node is not None:
            return f"{self.kind} {self.node.node_id} {self.task_id}"
        if self.kind == FAN_OUT_ELEMENT:
            return f"{self.kind} {self.node_exec_id} {self.index}"
        if self.kind == GATHER_FAN_OUT:
            return f"{self.kind} {self.node_exec_id}"
        if self.notification is not None:
            return f"{self.kind} {self.notification.kind} {self.notification.id}"
        return f"{self.kind} {self.graph_exec_id}"


@dataclass
class _Chord:
    """A fan-out's element results, gathered once every element has run."""

    graph_exec_id: str
    elements: int
    results: dict[int, dict[str, Any]] = field(default_factory=dict)


class InMemoryDispatcher:
    """The engine's ``Dispatcher`` (``autoexec.engine.context``) that queues work in memory.

    Nothing runs on its own: a :class:`TestEngine` runs the queue (``drain``, ``step``), and a
    test may inspect ``queued`` or ``sent`` first. ``on_send``, if set, is called with each job
    before it is queued: to watch what is sent, or to make sending fail by raising (a broker
    that cannot be reached). Thread-safe: an engine timer thread may send while the test's
    thread runs.
    """

    def __init__(self) -> None:
        self.queued: deque[Job] = deque()
        self.sent: list[Job] = []  # everything ever queued, in order
        self.revoked: set[str] = set()
        self.on_send: Callable[[Job], None] | None = None
        # What a failing ``on_send`` raises for a broker that cannot be reached.
        self.unavailable: tuple[type[Exception], ...] = (ConnectionError,)
        self._chords: dict[int, _Chord] = {}
        self._lock = threading.RLock()

    # --- the Dispatcher protocol ----------------------------------------------------------

    def run_graph(self, graph_exec_id: str) -> None:
        self.put(Job(RUN_GRAPH, _task_id(), graph_exec_id=graph_exec_id))

    def advance_graph(self, graph_exec_id: str, countdown: float | None = None) -> None:
        job = Job(ADVANCE_GRAPH, _task_id(), graph_exec_id=graph_exec_id)
        self.put(job, countdown)

    def execute_node(self, task: NodeTask) -> None:
        job = Job(
            EXECUTE_NODE,
            task.task_id,
            graph_exec_id=task.graph_exec_id,
            node=task,
            rerun=task.rerun,
        )
        self.put(job)

    def revoke(self, task_ids: list[str]) -> None:
        with self._lock:
            self.revoked.update(task_ids)
            self.queued = deque(job for job in self.queued if job.task_id not in self.revoked)

    def fan_out(self, node_exec_id: int, graph_exec_id: str, elements: int) -> None:
        """The chord: one job per element; the gather is queued once all of them ran."""
        with self._lock:
            if node_exec_id in self._chords:
                return  # published again: the same task ids, run once
            self._chords[node_exec_id] = _Chord(graph_exec_id, elements)
            for index in range(elements):
                task_id = fan_out.element_task_id(node_exec_id, index)
                job = Job(
                    FAN_OUT_ELEMENT, task_id, graph_exec_id, node_exec_id=node_exec_id, index=index
                )
                self.put(job)

    # --- notifications (the ``autoexec.notify`` task) -------------------------------------

    def notify(
        self,
        request: notifications.NotificationRequest,
        sink: str | None = None,
        attempt: int = 0,
        countdown: float | None = None,
    ) -> None:
        job = Job(NOTIFY, _task_id(), notification=request, sink=sink, attempt=attempt)
        self.put(job, countdown)

    # --- the queue ------------------------------------------------------------------------

    def put(self, job: Job, countdown: float | None = None) -> None:
        if countdown:
            job = replace(job, due=time.monotonic() + countdown)
        with self._lock:
            if self.on_send is not None:
                self.on_send(job)
            self.queued.append(job)
            self.sent.append(job)

    def take(self, now: float | None = None) -> Job | None:
        """The oldest job due by ``now``, taken off the queue; None if none is due."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for job in self.queued:
                if job.due <= now:
                    self.queued.remove(job)
                    return job
        return None

    def next_due(self) -> float | None:
        """When the earliest queued job is due; None if nothing is queued."""
        with self._lock:
            return min((job.due for job in self.queued), default=None)

    def discard(self, keep: Callable[[Job], bool]) -> None:
        with self._lock:
            self.queued = deque(job for job in self.queued if keep(job))

    def element_done(self, node_exec_id: int, result: dict[str, Any]) -> None:
        """Note one element's result; queue the gather once every element has one."""
        with self._lock:
            chord = self._chords[node_exec_id]
            chord.results[int(result["index"])] = result
            if len(chord.results) == chord.elements:
                task_id = fan_out.gather_task_id(node_exec_id)
                gather = Job(
                    GATHER_FAN_OUT, task_id, chord.graph_exec_id, node_exec_id=node_exec_id
                )
                self.put(gather)

    def chord_results(self, node_exec_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._chords[node_exec_id].results.values())

    def nodes(self) -> list[NodeTask]:
        """The node tasks queued now, oldest first."""
        with self._lock:
            return [job.node for job in self.queued if job.node is not None]

    def take_nodes(self) -> list[int]:
        """The node executions queued now, oldest first, taken off the queue: for a test
        that runs each node itself."""
        with self._lock:
            taken = [job.node.node_exec_id for job in self.queued if job.node is not None]
            self.queued = deque(job for job in self.queued if job.node is None)
        return taken

    def take_node(self) -> int:
        """The oldest queued node execution, taken off the queue (``LookupError`` if none)."""
        with self._lock:
            job = next((job for job in self.queued if job.node is not None), None)
            if job is None or job.node is None:
                raise LookupError("no node task is queued")
            self.queued.remove(job)
            return job.node.node_exec_id


def _task_id() -> str:
    return secrets.token_hex(8)


class TestEngine:
    """An engine on SQLite with an in-memory dispatcher and coordinator; see :func:`engine`."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, engine: Engine, dispatcher: InMemoryDispatcher) -> None:
        self.engine = engine
        self.dispatcher = dispatcher
        self._draining = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    # --- graphs and runs ------------------------------------------------------------------

    def save_graph(
        self,
        definition: dict[str, Any] | str | GraphDefinition,
        user_id: str = DEFAULT_USER,
        new: bool = False,
    ) -> str:
        """Validate and store a graph (a new version if it exists, unless ``new``); its id."""
        graph_id, _ = api.save_graph(definition, user_id, engine=self.engine, new=new)
        return graph_id

    def submit(
        self,
        graph_id: str,
        inputs: Mapping[str, Any] | None = None,
        user_id: str = DEFAULT_USER,
        **options: Any,
    ) -> str:
        """Submit a run (``api.execute_graph``'s options) without running it; its id."""
        return api.execute_graph(
            graph_id, user_id, dict(inputs or {}), engine=self.engine, **options
        )

    def run(
        self,
        graph_id: str,
        inputs: Mapping[str, Any] | None = None,
        user_id: str = DEFAULT_USER,
        **options: Any,
    ) -> api.ExecutionView:
        """Submit a run and drain the queue; the run as it is then: ended, or suspended (in
        REVIEW or WAITING) with nothing left to do until a decision."""
        graph_exec_id = self.submit(graph_id, inputs, user_id, **options)
        self.drain()
        return self.execution(graph_exec_id, user_id)

    def execution(self, graph_exec_id: str, user_id: str = DEFAULT_USER) -> api.ExecutionView:
        return api.get_execution(graph_exec_id, user_id, engine=self.engine)

    def cancel(self, graph_exec_id: str, user_id: str = DEFAULT_USER) -> str:
        """Cancel a run, then drain (a run waiting for the freed slot starts); what happened."""
        said = api.cancel(graph_exec_id, user_id, engine=self.engine)
        self.drain()
        return said

    # --- reviews --------------------------------------------------------------------------

    def reviews(self, user_id: str = DEFAULT_USER) -> list[api.ReviewView]:
        """The user's pending reviews, oldest first."""
        return api.list_reviews(user_id, engine=self.engine)

    def approve(
        self, review_id: str, user_id: str = DEFAULT_USER, data: Any = None
    ) -> api.ReviewView:
        """Approve a review, then drain (the run goes on)."""
        decided = api.approve(review_id, user_id, data, engine=self.engine)
        self.drain()
        return decided

    def reject(self, review_id: str, reason: str, user_id: str = DEFAULT_USER) -> api.ReviewView:
        """Reject a review with ``reason``, then drain (the run goes on)."""
        decided = api.reject(review_id, user_id, reason, engine=self.engine)
        self.drain()
        return decided

    # --- credits (with ``billing_enabled``) -----------------------------------------------

    def top_up(self, user_id: str, amount: int, key: str | None = None) -> int:
        return api.top_up(user_id, amount, key, engine=self.engine)

    def balance(self, user_id: str = DEFAULT_USER) -> int:
        return api.get_balance(user_id, engine=self.engine)

    def transactions(
        self, user_id: str = DEFAULT_USER, limit: int = 20
    ) -> list[CreditTransactionView]:
        return api.transactions(user_id, limit, engine=self.engine)

    # --- running the queue ----------------------------------------------------------------

    def drain(self, timeout: float = DRAIN_TIMEOUT_SECONDS) -> int:
        """Run queued work, and the work it queues, until none is left; how many jobs ran.

        Work sent with a delay (a node's retry backoff, a run's deadline timer) runs once due:
        the drain sleeps until then. A timer step of a run that has ended would do nothing and
        is dropped. ``TimeoutError`` if work is still queued after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        ran = 0
        with self._draining:
            while True:
                if self.step():
                    ran += 1
                    continue
                self.dispatcher.discard(self._worth_waiting_for)
                due = self.dispatcher.next_due()
                if due is None:
                    return ran
                if due > deadline:
                    raise TimeoutError(
                        f"work is still queued after {timeout}s: {list(self.dispatcher.queued)}"
                    )
                time.sleep(max(due - time.monotonic(), 0.0))

    def step(self) -> Job | None:
        """Run the oldest job that is due; the job, or None if none is due."""
        job = self.dispatcher.take()
        if job is not None:
            self.perform(job)
        return job

    def perform(self, job: Job) -> None:
        """Run one job as its Celery task would, through the same engine function."""
        engine = self.engine
        if job.kind == RUN_GRAPH:
            assert job.graph_exec_id is not None
            if start_run(engine, job.graph_exec_id):
                orchestrator.advance(engine, job.graph_exec_id)
        elif job.kind == ADVANCE_GRAPH:
            assert job.graph_exec_id is not None
            orchestrator.advance(engine, job.graph_exec_id)
        elif job.kind == EXECUTE_NODE:
            assert job.node is not None
            self._execute_node(job, job.node)
        elif job.kind == FAN_OUT_ELEMENT:
            assert job.node_exec_id is not None
            result = fan_out.run_element(engine, job.node_exec_id, job.index)
            self.dispatcher.element_done(job.node_exec_id, result)
        elif job.kind == GATHER_FAN_OUT:
            assert job.node_exec_id is not None and job.graph_exec_id is not None
            results = self.dispatcher.chord_results(job.node_exec_id)
            fan_out.gather(engine, results, job.node_exec_id, job.graph_exec_id)
        elif job.kind == NOTIFY:
            assert job.notification is not None
            notifications.deliver(
                engine, job.notification, job.sink, job.attempt, self.dispatcher.notify
            )
        else:
            raise ValueError(f"unknown job kind {job.kind!r}")

    def _execute_node(self, job: Job, task: NodeTask) -> None:
        try:
            node_execution.execute_node(
                self.engine, task.node_exec_id, rerun=job.rerun, graph_exec_id=task.graph_exec_id
            )
        except node_execution.RetryNode as retry:
            # The task's retry: the same message again after the backoff, known as a rerun.
            self.dispatcher.put(replace(job, rerun=True, due=0.0), retry.countdown)

    def _worth_waiting_for(self, job: Job) -> bool:
        """False for a delayed step of a run that has ended: it would do nothing."""
        if job.kind != ADVANCE_GRAPH or job.graph_exec_id is None:
            return True
        with self.engine.db.session() as session:
            return repo.status_of(session, job.graph_exec_id) not in TERMINAL


@contextmanager
def engine(
    blocks: Iterable[type[Block[Any]] | ModuleType] = (),
    settings_overrides: Mapping[str, Any] | None = None,
    database: str | Path | None = None,
) -> Iterator[TestEngine]:
    """An in-process engine for a test: yields a :class:`TestEngine`.

    ``blocks``: block classes (or modules of them) to register next to the built-ins.
    ``settings_overrides``: settings by field name (``{"billing_enabled": True}``), over the
    ``AUTOEXEC_*`` environment. ``database``: a SQLite file to use (migrated if needed); by
    default a new one in a temporary directory, removed afterwards.

    Each test engine has its own settings, database, coordinator and hooks, and leaves the
    process's environment as it is: several may be open at once.
    """
    with tempfile.TemporaryDirectory(prefix="autoexec-testing-") as home:
        path = Path(database) if database is not None else Path(home) / "autoexec.sqlite3"
        url = f"sqlite:///{path.resolve()}"
        upgrade_database(url)
        dispatcher = InMemoryDispatcher()
        runtime = Runtime(
            _settings(url, settings_overrides or {}), send_notification=dispatcher.notify
        )
        built = runtime.engine(lambda: dispatcher)
        event.listen(built.db.engine, "connect", _no_sync)
        for block in blocks:
            _register(built, block)
        try:
            yield TestEngine(built, dispatcher)
        finally:
            runtime.flush_events()
            runtime.close()


def _settings(database_url: str, overrides: Mapping[str, Any]) -> Settings:
    """The test engine's own settings: the ``AUTOEXEC_*`` environment with its in-process
    stand-ins and ``overrides`` (by field name) over it; the environment is left as it is."""
    return load_settings(
        **{
            "database_url": database_url,
            "redis_url": f"memory://autoexec-testing-{secrets.token_hex(6)}",
            "broker_url": "memory://autoexec-testing/",
            "result_backend": None,  # fan-out needs none in-process
            **overrides,
        }
    )


def _no_sync(dbapi_connection: Any, _record: Any) -> None:
    """A test's database need not survive a power cut: commits skip the disk sync."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _register(built: Engine, block: type[Block[Any]] | ModuleType) -> None:
    if isinstance(block, ModuleType):
        built.registry.register_module(block)
    else:
        built.registry.register(block)
