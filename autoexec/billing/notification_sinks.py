"""Where notifications go (AUTOEXEC_NOTIFICATION_SINKS): ``log`` writes one log line per
notification; ``webhook`` POSTs it as JSON to AUTOEXEC_NOTIFICATION_WEBHOOK_URL.

A webhook attempt is one POST through this process's ``httpx`` client (:func:`http_client`)
on one of a few daemon threads of the process (:class:`DeliveryThreads`), never on the thread
of a task: a receiver that answers slowly or never holds a thread for at most
AUTOEXEC_NOTIFICATION_WEBHOOK_TIMEOUT_SECONDS, and a worker slot not at all. Attempts waiting
for a thread are bounded; past that, an attempt fails at once (and is retried later, like any
failed attempt).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from autoexec.backoff import backoff_delay
from autoexec.errors import NotificationDeliveryError
from autoexec.settings import Settings

log = logging.getLogger("autoexec.billing.notifications")

LOG, WEBHOOK = "log", "webhook"
MAX_PENDING_ATTEMPTS = 100  # per process, waiting for a delivery thread
MAX_BACKOFF_SECONDS = 300.0  # a countdown well under RabbitMQ's 30-minute consumer timeout
# Worth trying again: the receiver timed out, was rate-limited or failed.
RETRY_STATUSES = frozenset({408, 425, 429})
HEADERS = {"Content-Type": "application/json", "User-Agent": "autoexec"}


# User values a log line leaves out (a run's outputs, an error's text): logs are read by more
# people than a webhook's receiver; ids, statuses and numbers stay.
NOT_LOGGED = ("outputs", "error")


def log_notification(body: dict[str, Any]) -> None:
    """The ``log`` sink: the notification as one line of JSON, without user values."""
    data = body.get("data", {})
    shown = {**body, "data": {k: v for k, v in data.items() if k not in NOT_LOGGED}}
    if "outputs" in data:
        shown["data"]["output_names"] = sorted(data["outputs"])
    log.info("notification %s %s", body["type"], json.dumps(shown, default=str, ensure_ascii=False))


# httpx logs every request with its whole URL at INFO, and a webhook URL's path or query may
# be a secret: the lines of webhook POSTs are left out (a failed one is logged with the scheme
# and host only); other uses of httpx in the process keep theirs.
_posting_webhook: ContextVar[bool] = ContextVar("posting_webhook", default=False)


class _WithoutWebhookPosts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _posting_webhook.get()


logging.getLogger("httpx").addFilter(_WithoutWebhookPosts())


@contextmanager
def _unlogged_by_httpx() -> Iterator[None]:
    token = _posting_webhook.set(True)
    try:
        yield
    finally:
        _posting_webhook.reset(token)


_clients: dict[int, httpx.Client] = {}
_clients_lock = threading.Lock()


def http_client() -> httpx.Client:
    """This process's client for webhook POSTs, made on first use. Its delivery threads share
    it (an ``httpx.Client`` may be shared between threads) and reuse its connections; a forked
    child makes its own, so no two processes ever write to one connection.

    It follows no redirect (a redirected POST would be re-sent as a GET without its body: a
    3xx is a failure) and trusts the system's certificate authorities, not ``certifi``'s."""
    pid = os.getpid()
    with _clients_lock:
        client = _clients.get(pid)
        if client is None:
            client = _clients[pid] = httpx.Client(
                verify=ssl.create_default_context(), follow_redirects=False
            )
    return client


@dataclass(frozen=True)
class Webhook:
    """The ``webhook`` sink: one POST of a notification's JSON per call."""

    url: str
    timeout: float

    @classmethod
    def configured(cls, settings: Settings) -> Webhook:
        return cls(
            str(settings.notification_webhook_url), settings.notification_webhook_timeout_seconds
        )

    @property
    def shown(self) -> str:
        """The URL as logs show it: scheme and host only (its path or query may be a secret)."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")

    def post(self, body: dict[str, Any]) -> None:
        """POST ``body``; raise :class:`NotificationDeliveryError` unless it was taken (2xx).
        The ``Idempotency-Key`` header repeats the notification's id."""
        try:
            with _unlogged_by_httpx():
                response = http_client().post(
                    self.url,
                    content=json.dumps(body, default=str, ensure_ascii=False).encode(),
                    headers=HEADERS | {"Idempotency-Key": str(body["id"])},
                    # The limit for connecting, for each write and each read of the answer.
                    timeout=httpx.Timeout(self.timeout),
                )
        except httpx.RequestError as exc:  # refused, reset, timed out, a broken answer
            error = f"{self.shown}: {type(exc).__name__}: {exc}"
            raise NotificationDeliveryError(error, retry=True) from None
        if not response.is_success:
            status = response.status_code
            retry = status >= 500 or status in RETRY_STATUSES
            raise NotificationDeliveryError(f"{self.shown} answered {status}", retry)


@dataclass(frozen=True)
class Retries:
    """How often a failed webhook attempt is tried again, and after how long."""

    limit: int
    backoff: float
    jitter: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    @classmethod
    def configured(cls, settings: Settings) -> Retries:
        return cls(
            settings.notification_webhook_retries, settings.notification_webhook_backoff_seconds
        )

    def allow(self, attempt: int) -> bool:
        """Whether attempt ``attempt`` (0 for the first) may be followed by another."""
        return attempt < self.limit

    def delay(self, attempt: int) -> float:
        """Seconds before the attempt after ``attempt``: doubling from ``backoff`` up to
        ``MAX_BACKOFF_SECONDS``, of which a random half to all (:func:`backoff_delay`)."""
        return backoff_delay(self.backoff, attempt, MAX_BACKOFF_SECONDS, self.jitter)


class DeliveryThreads:
    """A few daemon threads that run webhook attempts, started on first use (after a fork);
    at most ``pending`` attempts wait for one."""

    def __init__(self, threads: int, pending: int = MAX_PENDING_ATTEMPTS) -> None:
        self.threads = threads
        self._jobs: queue.Queue[Callable[[], None]] = queue.Queue(maxsize=pending)
        self._started = False
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue ``job`` for a thread; False (and nothing queued) if too many already wait."""
        self._start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            return False
        return True

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            for number in range(self.threads):
                name = f"autoexec-notify-{number}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            self._started = True

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                job()
            except Exception:
                log.exception("a notification delivery failed")


_pools: dict[tuple[int, int], DeliveryThreads] = {}
_pools_lock = threading.Lock()


def delivery_threads(threads: int) -> DeliveryThreads:
    """This process's delivery threads (a forked child makes its own)."""
    key = (os.getpid(), threads)
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = DeliveryThreads(threads)
    return pool
