"""A webhook receiver for tests: an HTTP server on loopback, in a thread, that records every
POSTed JSON body. It can answer the first few requests with an error, or hang every request
until the test ends (``hang``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.waiting import wait_until


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0  # answer this many requests with ``failure``
    failure: int = 503
    hang: bool = False  # never answer until the receiver stops
    failing_users: dict[str, int] = field(default_factory=dict)  # user id: failures left
    received: list[dict[str, Any]] = field(default_factory=list)  # bodies, in arrival order
    headers: list[dict[str, str]] = field(default_factory=list)
    answered: int = 0
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for body in self.received if body["type"] == kind]

    def of_user(self, kind: str, user_id: str) -> list[dict[str, Any]]:
        return [body for body in self.of_type(kind) if body["user_id"] == user_id]

    def about(self, kind: str, graph_exec_id: str) -> list[dict[str, Any]]:
        return [
            body for body in self.of_type(kind) if body["data"]["graph_exec_id"] == graph_exec_id
        ]

    def wait_for(
        self, what: Callable[[], list[dict[str, Any]]], count: int = 1
    ) -> list[dict[str, Any]]:
        """``what()`` once it has ``count`` bodies or more (fails after a minute)."""
        wait_until(lambda: len(what()) >= count, f"{count} notifications")
        return what()

    def _take(self, body: dict[str, Any], headers: dict[str, str]) -> int:
        """Record one request; the status to answer with."""
        with self.lock:
            self.received.append(body)
            self.headers.append(headers)
            failing = len(self.received) <= self.fail_first
            left = self.failing_users.get(body.get("user_id", ""), 0)
            if left:
                self.failing_users[body["user_id"]] = left - 1
        return self.failure if failing or left else 200

    def fail_user(self, user_id: str, times: int) -> None:
        """Answer the next ``times`` notifications of ``user_id`` with ``failure``."""
        with self.lock:
            self.failing_users[user_id] = times


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = receiver._take(body, dict(self.headers))
            if receiver.hang:
                receiver.released.wait()
            self.send_response(status)
            if 300 <= status < 400:  # a redirect a client could follow
                self.send_header("Location", "/hooks/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()
            with receiver.lock:
                receiver.answered += 1

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


@contextmanager
def webhook_receiver(
    fail_first: int = 0, failure: int = 503, hang: bool = False
) -> Iterator[Receiver]:
    receiver = Receiver(fail_first=fail_first, failure=failure, hang=hang)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/autoexec?token=secret"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
