"""The Celery app: queues, routes, reliability settings, configured lazily from the settings of
the process's runtime, which the app holds (``app.runtime``).

With ``autoexec.tasks`` this is the only module that uses Celery: the rest of autoexec
reaches it through the engine's dispatcher and the runtime's notification sender.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from celery import Celery, signals
from celery.utils.log import get_multiprocessing_logger
from kombu import Exchange, Queue
from kombu.exceptions import OperationalError

from autoexec import embedded_broker  # noqa: F401  (registers the autoexec-memory:// transport)
from autoexec.billing.notifications import NOTIFY_TASK, NotificationRequest
from autoexec.logs import format_as_json, wants_json
from autoexec.observability.worker_metrics import connect_worker_signals
from autoexec.runtime import Runtime
from autoexec.settings import Settings, settings_with
from autoexec.signing import SIGNATURE_HEADER, needs_signature, signature
from autoexec.task_arguments import shown_kwargs

# The broker did not take a message (unreachable, or refusing writes): re-exported, so that
# what catches it need not import Celery's transport.
BrokerError = OperationalError

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


# A lost notification costs less than an engine thread held up by a broker that does not answer.
SEND_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}


class AutoexecCelery(Celery):
    """The Celery app; what it sends shows no input values in task events and logs. It holds
    this process's runtime (``runtime``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._env: dict[str, str] = {}
        self._runtime: Runtime | None = None
        self._runtime_lock = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        """This process's runtime, built on first use from the environment (with what
        ``configure`` set over it); a forked pool process gets its own."""
        with self._runtime_lock:
            runtime = self._runtime
            if runtime is None:
                runtime = self._make_runtime(settings_with(self._env))
            self._runtime = runtime = runtime.for_this_process()
            return runtime

    @property
    def configured_env(self) -> dict[str, str]:
        """The variables ``configure`` has set over the environment so far."""
        return dict(self._env)

    def configure(self, env: Mapping[str, str], replace: bool = False) -> Runtime:
        """Set ``env``'s ``AUTOEXEC_*`` variables over the environment (and over those set
        before, unless ``replace``) for this process: a new runtime, and the app's queues and
        connections as its settings say. The environment itself is left as it is. For the
        embedded stack, tests and benchmarks."""
        self._env = dict(env) if replace else {**self._env, **env}
        runtime = self._make_runtime(settings_with(self._env))
        with self._runtime_lock:
            previous, self._runtime = self._runtime, runtime
        if previous is not None:
            previous.close()
        self.conf.update(celery_config(runtime.settings))
        self._forget_connections()
        return runtime

    def _make_runtime(self, settings: Settings) -> Runtime:
        return Runtime(settings, send_notification=self.send_notification)

    def _forget_connections(self) -> None:
        """Celery keeps its broker connection pools and result backend as built from the
        settings of their first use, with no public way to rebuild them: drop them, so the
        next use connects where the new settings say."""
        setattr(self, "_pool", None)  # noqa: B010 - Celery's private caches
        setattr(self.amqp, "_producer_pool", None)  # noqa: B010
        setattr(self, "_backend_cache", None)  # noqa: B010
        local = getattr(self, "_local", None)
        if local is not None and hasattr(local, "backend"):
            delattr(local, "backend")

    def send_notification(
        self,
        request: NotificationRequest,
        sink: str | None = None,
        attempt: int = 0,
        countdown: float | None = None,
    ) -> None:
        """Send ``request`` as an ``autoexec.notify`` task (routed to the graph queue).

        Nobody waits for its result: without ``ignore_result``, Celery would subscribe this
        process to the result in Redis (the result backend) when sending, and unsubscribe
        when the result object is dropped, waiting out its reconnection retries (19 s) with
        Redis down, in the hooks after the commit of a cancel, say."""
        kwargs = {"request": request.message(), "sink": sink, "attempt": attempt}
        self.send_task(
            NOTIFY_TASK,
            kwargs=kwargs,
            countdown=countdown,
            retry_policy=SEND_RETRY_POLICY,
            ignore_result=True,
        )

    def send_task(self, name: str, *args: Any, **options: Any) -> Any:
        kwargs = options.get("kwargs", args[1] if len(args) > 1 else None)
        shown = shown_kwargs(name, kwargs)
        if shown is not None:
            options.setdefault("kwargsrepr", shown)
        if needs_signature(name):
            self._sign(name, options.get("args", args[0] if args else None), kwargs, options)
        return super().send_task(name, *args, **options)

    def _sign(self, name: str, args: Any, kwargs: Any, options: dict[str, Any]) -> None:
        """With AUTOEXEC_TASK_SIGNING_KEY, add the message's signature to its headers
        (``autoexec.signing``): over its task id, which is therefore chosen here."""
        key = self.runtime.settings.task_signing_key
        if key is None:
            return
        task_id = options.get("task_id") or str(uuid.uuid4())
        made = signature(key.get_secret_value(), task_id, name, args or (), kwargs or {})
        options["task_id"] = task_id
        options["headers"] = {**(options.get("headers") or {}), SIGNATURE_HEADER: made}


def create_app() -> AutoexecCelery:
    app = AutoexecCelery("autoexec", include=["autoexec.tasks"])
    app.add_defaults(lambda: celery_config(app.runtime.settings))
    app.config_from_object("celeryconfig", silent=True)
    _connect_signals(app)
    return app


def _connect_signals(app: AutoexecCelery) -> None:
    """Celery's processes (worker, beat) log in the configured format once Celery has set up
    its handlers (the pool processes inherit them); a pool process publishes the live events
    it holds before it leaves (with ``os._exit``, which runs no atexit handler); a worker
    serves its metrics."""

    def log_format(logger: logging.Logger, **_: Any) -> None:
        if wants_json(app.runtime.settings):
            format_as_json(logger)
            format_as_json(get_multiprocessing_logger())

    def flush_events(**_: Any) -> None:
        runtime = app._runtime  # this process's, if it made one: nothing to flush otherwise
        if runtime is not None and runtime.pid == os.getpid():
            runtime.flush_events()

    signals.after_setup_logger.connect(log_format, weak=False)
    signals.after_setup_task_logger.connect(log_format, weak=False)
    signals.worker_process_shutdown.connect(flush_events, weak=False, dispatch_uid=__name__)
    connect_worker_signals(lambda: app.runtime.settings)


app = create_app()
