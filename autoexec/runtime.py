"""One process's autoexec: its settings, and what is built from them once and lives as long as
the process: the database, the coordinator, the engine hooks, the block registry, the engine
and the thread that publishes live events.

The outermost edge of a process builds one and passes what it owns down: the Celery app holds
the runtime of worker, beat and submitting processes (``autoexec.celery_app``); a test or a
tool may build its own from any ``Settings``. No module keeps a runtime of its own.

A forked child must not use its parent's runtime (its threads did not survive the fork, and
connection pools must not be shared across processes): ``for_this_process`` gives the child a
fresh one, from the same settings.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from autoexec.billing.charges import metering_for
from autoexec.billing.notifications import NotificationHook, Sender
from autoexec.blocks.registry import BlockRegistry, load_registry
from autoexec.coordination import Coordinator, make_coordinator
from autoexec.engine.context import Dispatcher, Engine, build_engine
from autoexec.hooks import EngineHook, load_hooks
from autoexec.metering import Metering
from autoexec.observability.events import FLUSH_AT_EXIT_SECONDS, EventPublisher, EventSender
from autoexec.settings import Settings
from autoexec.store.db import Database

T = TypeVar("T")


class Runtime:
    """What one process runs autoexec with, built on first use from ``settings``.

    ``send_notification`` sends an ``autoexec.notify`` task (the Celery app's); the built-in
    notification hook hands it what it sends.
    """

    def __init__(self, settings: Settings, *, send_notification: Sender) -> None:
        self.settings = settings
        self.pid = os.getpid()
        self.send_notification = send_notification
        self._lock = threading.RLock()
        self._built: dict[str, Any] = {}
        self._sender: EventSender | None = None

    def for_this_process(self) -> Runtime:
        """This runtime, or a fresh one from the same settings in a forked child."""
        if self.pid == os.getpid():
            return self
        return Runtime(self.settings, send_notification=self.send_notification)

    @property
    def coordinator(self) -> Coordinator:
        return self._once("coordinator", lambda: make_coordinator(self.settings.redis_url))

    @property
    def hooks(self) -> list[EngineHook]:
        """The built-in hooks, then those of AUTOEXEC_HOOKS (``ConfigurationError`` if one
        cannot be made)."""
        return self._once("hooks", self._make_hooks)

    @property
    def database(self) -> Database:
        """The database; a commit of its sessions calls ``hooks``."""
        return self._once("database", lambda: Database(self.settings.database_url, self.hooks))

    @property
    def registry(self) -> BlockRegistry:
        return self._once("registry", lambda: load_registry(self.settings.block_module_names))

    @property
    def metering(self) -> Metering:
        """Credits when AUTOEXEC_BILLING_ENABLED, else the null metering (no billing code runs)."""
        return self._once(
            "metering", lambda: metering_for(self.settings, self.registry, self.coordinator)
        )

    def engine(self, make_dispatcher: Callable[[], Dispatcher]) -> Engine:
        """The engine of this runtime, built with a dispatcher from ``make_dispatcher`` on first
        use."""
        return self._once("engine", lambda: build_engine(make_dispatcher(), self))

    def send_events(self, events: list[dict[str, Any]]) -> None:
        """Hand committed live events to this process's sender thread (started on first use,
        and again if it died)."""
        with self._lock:
            sender = self._sender
            if sender is None or not sender.thread.is_alive():
                sender = self._sender = EventSender(self.coordinator.publish_all)
                atexit.register(sender.flush, FLUSH_AT_EXIT_SECONDS)
        sender.send(events)

    def flush_events(self, timeout: float = FLUSH_AT_EXIT_SECONDS) -> bool:
        """Wait until the live events handed over so far were published; False if that took
        longer than ``timeout`` seconds (at a process's exit, and for tests)."""
        sender = self._sender
        return True if sender is None else sender.flush(timeout)

    def close(self) -> None:
        """Close the database's pooled connections (a later use opens new ones)."""
        database: Database | None = self._built.get("database")
        if database is not None:
            database.dispose()

    def _make_hooks(self) -> list[EngineHook]:
        # Imported here, when the first engine is built: its metrics must be created after a
        # worker chose prometheus_client's multiprocess mode
        # (autoexec.observability.worker_metrics), which
        # it does after importing the app, which holds the runtime.
        from autoexec.observability.metrics import MetricsHook

        settings = self.settings
        return [
            EventPublisher(self.send_events, settings.event_max_value_bytes),
            MetricsHook(),
            NotificationHook(self.send_notification, settings),
            *load_hooks(settings.hook_names),
        ]

    def _once(self, name: str, make: Callable[[], T]) -> T:
        built = self._built.get(name)
        if built is None:
            with self._lock:
                built = self._built.get(name)
                if built is None:
                    built = self._built[name] = make()
        return built
