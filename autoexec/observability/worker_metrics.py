"""A ``celery worker`` serves Prometheus metrics on AUTOEXEC_METRICS_PORT (0: off).

Under the prefork pool the metrics are counted in the pool processes, so prometheus_client runs
in multiprocess mode: at start, before the pool forks and before any metric exists, the worker
points PROMETHEUS_MULTIPROC_DIR at a fresh directory of its own (a shared or reused one would mix
in another worker's or a previous run's counts); each pool process writes its values there; the
main process serves their sum with the active-runs count read from the database.

Only the ``celery worker`` command sends ``celeryd_init``: the embedded stack's in-process
worker keeps plain in-process metrics and opens no port.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import signals

from autoexec.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class _Serving:
    directory: str | None = None
    server: Any = None
    worker: Any = None  # the WorkController of this process
    settings_of: Callable[[], Settings] | None = None  # the app's runtime's


def _settings() -> Settings:
    assert _serving.settings_of is not None, "connect_worker_signals first"
    return _serving.settings_of()


_serving = _Serving()


def connect_worker_signals(settings_of: Callable[[], Settings]) -> None:
    """Make ``celery worker`` processes count and serve metrics (once per process), as the
    settings ``settings_of`` gives say."""
    _serving.settings_of = settings_of
    signals.celeryd_init.connect(_prepare_multiprocess_directory, dispatch_uid=__name__)
    signals.worker_init.connect(_note_worker, dispatch_uid=__name__)
    signals.worker_ready.connect(_serve, dispatch_uid=__name__)
    signals.worker_process_shutdown.connect(_mark_process_dead, dispatch_uid=__name__)
    signals.worker_shutdown.connect(_stop_serving, dispatch_uid=__name__)


def _prepare_multiprocess_directory(**_: Any) -> None:
    if _settings().metrics_port == 0:
        return
    _serving.directory = tempfile.mkdtemp(prefix="autoexec-metrics-")
    os.environ[MULTIPROC_VARIABLE] = _serving.directory
    _use_multiprocess_values()


def _note_worker(sender: Any = None, **_: Any) -> None:
    _serving.worker = sender


def _use_multiprocess_values() -> None:
    """prometheus_client picks its value class from PROMETHEUS_MULTIPROC_DIR when first
    imported, and the celery command may have imported it already (Flower's command plugin
    does): pick again, before any autoexec metric exists."""
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def _serve(**_: Any) -> None:
    port = _settings().metrics_port
    if port == 0 or _serving.directory is None:
        return
    from prometheus_client import start_http_server

    try:
        server, _thread = start_http_server(port, registry=_registry())
    except OSError as exc:
        log.warning(
            "AUTOEXEC_METRICS_PORT=%d cannot be served (%s): this worker serves no metrics; "
            "give each worker on this machine its own AUTOEXEC_METRICS_PORT, or 0 for none",
            port,
            exc,
        )
        return
    _serving.server = server
    log.info("Prometheus metrics on port %d (/metrics)", port)


def _registry() -> CollectorRegistry:
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from autoexec.observability.active_runs import ActiveRunsCollector
    from autoexec.store.db import Database

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=_serving.directory)  # type: ignore[no-untyped-call]
    registry.register(ActiveRunsCollector(Database(_settings().database_url)))
    if _serving.worker is not None:
        registry.register(PoolCollector(_serving.worker))
    return registry


class PoolCollector:
    """The worker's pool size and how many of its slots run a task now (utilization is
    busy / size), read in the main process, which hands the tasks to the pool."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        from celery.worker import state
        from prometheus_client.core import GaugeMetricFamily

        size = GaugeMetricFamily("autoexec_worker_pool_size", "Task slots of this worker's pool.")
        size.add_metric([], float(self.worker.concurrency or 0))
        busy = GaugeMetricFamily(
            "autoexec_worker_pool_busy", "Slots of this worker's pool running a task now."
        )
        busy.add_metric([], float(len(state.active_requests)))
        return iter((size, busy))


def _mark_process_dead(pid: int | None = None, **_: Any) -> None:
    if os.environ.get(MULTIPROC_VARIABLE):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


def _stop_serving(**_: Any) -> None:
    if _serving.server is not None:
        _serving.server.shutdown()
        _serving.server.server_close()
        _serving.server = None
    if _serving.directory is not None:
        shutil.rmtree(_serving.directory, ignore_errors=True)
        _serving.directory = None
