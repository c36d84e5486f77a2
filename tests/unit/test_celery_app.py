"""The Celery app is JSON-only, acknowledges late and routes each task to its queue."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery
from celery.utils.imports import symbol_by_name

from autoexec.celery_app import celery_config, create_app
from autoexec.poison import PoisonSafeConsumer
from autoexec.settings import load_settings


@pytest.fixture(scope="module")
def app() -> Celery:
    return create_app()


@pytest.fixture(scope="module")
def conf(app: Celery) -> Any:
    return app.conf


def test_json_only(conf: Any) -> None:
    assert conf.accept_content == ["json"]
    assert conf.result_accept_content == ["json"]
    assert conf.task_serializer == "json"
    assert conf.result_serializer == "json"


def test_reliability_settings(conf: Any) -> None:
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1


def test_both_queues_declared(conf: Any) -> None:
    assert {queue.name for queue in conf.task_queues} == {
        "autoexec.graphs",
        "autoexec.nodes",
        "celery",  # a bare send_task from an app without autoexec's routes lands here
    }
    assert conf.task_default_queue == "autoexec.graphs"


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("autoexec.execute_node", "autoexec.nodes"),
        ("autoexec.run_graph", "autoexec.graphs"),
        ("autoexec.advance_graph", "autoexec.graphs"),
        ("autoexec.cancel_graph", "autoexec.graphs"),
        ("autoexec.reconcile", "autoexec.graphs"),
        ("autoexec.notify", "autoexec.graphs"),  # returns at once, like an orchestrator step
    ],
)
def test_routes(app: Celery, task: str, queue: str) -> None:
    assert app.amqp.router.route({}, task)["queue"].name == queue


def test_queue_names_follow_the_settings() -> None:
    config = celery_config(load_settings(graph_queue="g", node_queue="n", inbox_queue="i"))
    assert {queue.name for queue in config["task_queues"]} == {"g", "n", "i"}
    assert config["task_routes"]["autoexec.execute_node"] == {"queue": "n"}


def test_nothing_is_written_to_the_result_backend_before_a_task_body(conf: Any) -> None:
    # A STARTED write would happen outside the tasks' retry policy (issue 8).
    assert conf.task_track_started is False


def test_workers_dead_letter_poison_messages(app: Celery) -> None:
    assert symbol_by_name(app.conf.worker_consumer) is PoisonSafeConsumer


def test_beat_schedules_one_reconciler_pass_per_interval() -> None:
    settings = load_settings(reconcile_interval_seconds=15, reconcile_after_seconds=120)
    entry = celery_config(settings)["beat_schedule"]["autoexec.reconcile"]
    assert entry["task"] == "autoexec.reconcile"
    assert entry["schedule"] == 15
    assert entry["kwargs"] == {"older_than_seconds": 120}
    assert entry["options"] == {"expires": 15}


def test_the_reconcile_task_is_registered(app: Celery) -> None:
    import autoexec.tasks  # noqa: F401  (registers the tasks on the app)

    assert "autoexec.reconcile" in app.tasks
