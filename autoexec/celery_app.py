"""The Celery app: queues, routes, reliability settings. Configured lazily from the settings."""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from autoexec.logs import use_log_format_in_celery
from autoexec.settings import Settings, get_settings
from autoexec.task_arguments import shown_kwargs
from autoexec.worker_metrics import connect_worker_signals

GRAPH_TASKS = (
    "autoexec.run_graph",
    "autoexec.advance_graph",
    "autoexec.cancel_graph",
    "autoexec.reconcile",
    "autoexec.gather_fan_out",
    "autoexec.notify",  # returns at once: a webhook's POST runs on a thread of its own
)
NODE_TASKS = ("autoexec.execute_node", "autoexec.fan_out_element")


def direct_queue(name: str) -> Queue:
    """A queue bound to its own direct exchange, under its own name only."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from autoexec's; ``celeryconfig.py`` may override any of them."""
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.effective_result_backend,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        # No STARTED state: Celery would write it to the result backend (Redis) before the task
        # body, outside its retry policy; with Redis down the message was acked and the run lost.
        "task_track_started": False,
        # Dead-letters a message no task can run instead of dying on it (autoexec.poison).
        "worker_consumer": "autoexec.poison:PoisonSafeConsumer",
        "result_expires": 86400,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.graph_queue,
        "task_queues": (
            direct_queue(settings.graph_queue),
            direct_queue(settings.node_queue),
            direct_queue(settings.inbox_queue),
        ),
        "task_routes": {
            **{name: {"queue": settings.graph_queue} for name in GRAPH_TASKS},
            **{name: {"queue": settings.node_queue} for name in NODE_TASKS},
        },
        "worker_hijack_root_logger": False,
        "worker_soft_shutdown_timeout": settings.worker_shutdown_timeout_seconds,
        "timezone": "UTC",
        "beat_schedule": reconcile_schedule(settings),
    }


def reconcile_schedule(settings: Settings) -> dict[str, Any]:
    """``celery -A autoexec beat`` sends one reconciler pass per interval, with the age set in
    beat's environment; a pass not started within the interval expires (the next one does its
    work), so no backlog of passes builds up while workers are down."""
    interval = settings.reconcile_interval_seconds
    return {
        "autoexec.reconcile": {
            "task": "autoexec.reconcile",
            "schedule": interval,
            "kwargs": {"older_than_seconds": settings.reconcile_after_seconds},
            "options": {"expires": interval},
        }
    }


class AutoexecCelery(Celery):
    """The Celery app; what it sends shows no input values in task events and logs."""

    def send_task(self, name: str, *args: Any, **options: Any) -> Any:
        kwargs = options.get("kwargs", args[1] if len(args) > 1 else None)
        shown = shown_kwargs(name, kwargs)
        if shown is not None:
            options.setdefault("kwargsrepr", shown)
        return super().send_task(name, *args, **options)


def create_app() -> Celery:
    app = AutoexecCelery("autoexec", include=["autoexec.engine.tasks"])
    app.add_defaults(lambda: celery_config(get_settings()))
    app.config_from_object("celeryconfig", silent=True)
    use_log_format_in_celery()
    connect_worker_signals()
    return app


app = create_app()
