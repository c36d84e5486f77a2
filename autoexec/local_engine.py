"""One engine per embedded home, reachable from every terminal.

On the embedded stack a run lives in the process that runs the engine: its in-memory broker, its
Redis stand-in and its worker thread. That process serves its home over a Unix socket
(``$AUTOEXEC_HOME/engine.sock``), and the commands of other processes that must reach the run
where it lives (start a run, cancel, approve or reject a review, rerun, top up, follow the live
events) are sent there instead of into their own empty broker. Reads go to the shared SQLite
file directly.

The socket speaks :mod:`multiprocessing.connection` (pickled calls, each connection
authenticated with the key in ``engine.key``, readable by its owner only). Whoever holds the
lock on ``engine.lock`` serves; the lock goes with the process, so a killed engine leaves no
owner behind.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from multiprocessing.connection import Client, Connection, Listener
from pathlib import Path
from types import TracebackType
from typing import Any

from autoexec import errors

log = logging.getLogger(__name__)

SOCKET_NAME = "engine.sock"
KEY_NAME = "engine.key"
LOCK_NAME = "engine.lock"
# The api functions another process sends here: each one either dispatches work to the engine's
# broker or follows its live events. Everything else reads or writes only the shared database.
FORWARDED = frozenset(
    {"execute_graph", "cancel", "approve", "reject", "rerun", "top_up", "subscribe"}
)

CLOSE_WAIT_SECONDS = 5.0
STARTS_A_RUN = frozenset({"execute_graph", "rerun"})  # (first, user_id, ...) -> execution id

Api = Callable[[str], Callable[..., Any]]


def _key(home: Path) -> bytes:
    """The home's key, made on first use: written to a private file, then linked into place,
    so that two processes starting at once both end up reading the one that won."""
    path = home / KEY_NAME
    if not path.exists():
        descriptor, draft = tempfile.mkstemp(dir=home, prefix=".engine-key-")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
            with suppress(FileExistsError):
                os.link(draft, path)
        finally:
            os.unlink(draft)
    return path.read_text().strip().encode()


class LocalEngineServer:
    """Serves this process's engine to the other processes of ``home`` while it is open."""

    def __init__(self, home: Path, api: Api) -> None:
        self.home = home
        self._api = api
        self._listener: Listener | None = None
        self._lock_file: int | None = None
        self._served: dict[str, str] = {}  # execution id -> its user
        self._served_lock = threading.Lock()
        self._busy = threading.Condition()
        self._calls = 0  # calls being answered now

    def start(self) -> bool:
        """Serve the home; False (and nothing started) if another process serves it."""
        lock_file = os.open(self.home / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_file)
            return False
        self._lock_file = lock_file
        socket_path = self.home / SOCKET_NAME
        socket_path.unlink(missing_ok=True)  # left by an engine that was killed
        self._listener = Listener(str(socket_path), family="AF_UNIX", authkey=_key(self.home))
        threading.Thread(target=self._accept, name="autoexec-local-engine", daemon=True).start()
        return True

    def close(self) -> None:
        """Stop serving, once the calls being answered have their answers (a few seconds at
        most: a live-event stream may go on longer)."""
        with self._busy:
            self._busy.wait_for(lambda: self._calls == 0, CLOSE_WAIT_SECONDS)
        listener, self._listener = self._listener, None  # first: the accept loop then ends
        if listener is not None:
            with suppress(OSError):
                listener.close()
            (self.home / SOCKET_NAME).unlink(missing_ok=True)
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the lock
            self._lock_file = None

    def served_runs(self) -> dict[str, str]:
        """The executions other processes started here (they live in this process), with
        their users."""
        with self._served_lock:
            return dict(self._served)

    def _accept(self) -> None:
        listener = self._listener
        while listener is not None and self._listener is listener:
            try:
                connection = listener.accept()
            except Exception:  # closed, or a client that failed authentication
                continue
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: Connection) -> None:
        with self._busy:
            self._calls += 1
        try:
            self._answer(connection)
        finally:
            with self._busy:
                self._calls -= 1
                self._busy.notify_all()

    def _answer(self, connection: Connection) -> None:
        with connection:
            try:
                name, args, kwargs = connection.recv()
            except (EOFError, OSError):
                return
            if name not in FORWARDED:
                connection.send(("error", "AutoexecError", f"{name!r} is not served here"))
                return
            try:
                if name == "subscribe":
                    self._stream(connection, args, kwargs)
                    return
                result = self._api(name)(*args, **kwargs)
            except Exception as exc:  # sent to the caller, who raises it
                _send_error(connection, exc)
                return
            if name in STARTS_A_RUN and isinstance(result, str):
                user_id = kwargs.get("user_id", args[1] if len(args) > 1 else None)
                with self._served_lock:
                    self._served[result] = str(user_id)
            connection.send(("ok", result))

    def _stream(self, connection: Connection, args: Any, kwargs: Any) -> None:
        with self._api("subscribe")(*args, **kwargs) as events:
            try:
                for event in events:
                    connection.send(("event", event))
            except (BrokenPipeError, ConnectionResetError):
                return  # the follower went away
        connection.send(("end", None))


def _send_error(connection: Connection, exc: Exception) -> None:
    with suppress(OSError):
        connection.send(("error", type(exc).__name__, str(exc)))


def _raise(kind: str, message: str) -> None:
    if kind == "TimeoutError":
        raise TimeoutError(message)
    error = getattr(errors, kind, None)
    if isinstance(error, type) and issubclass(error, errors.AutoexecError):
        try:
            raise error(message)
        except TypeError:  # an error class with another constructor
            pass
    raise errors.AutoexecError(f"{kind}: {message}")


class LocalEngineClient:
    """Calls the engine of the process that serves ``home``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self._authkey = _key(home)

    def _connect(self) -> Connection:
        return Client(str(self.home / SOCKET_NAME), family="AF_UNIX", authkey=self._authkey)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._connect() as connection:
            connection.send((name, args, kwargs))
            reply = _receive(connection, self.home)
        if reply[0] == "error":
            _raise(reply[1], reply[2])
        return reply[1]

    def subscribe(self, *args: Any, **kwargs: Any) -> RemoteSubscription:
        connection = self._connect()
        connection.send(("subscribe", args, kwargs))
        return RemoteSubscription(connection)


class RemoteSubscription:
    """``api.subscribe``'s events as the serving process sends them."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def __iter__(self) -> Iterator[Any]:
        while True:
            reply = _receive(self._connection, None)
            if reply[0] == "end":
                return
            if reply[0] == "error":
                _raise(reply[1], reply[2])
            yield reply[1]

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> RemoteSubscription:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _receive(connection: Connection, home: Path | None) -> Any:
    try:
        return connection.recv()
    except (EOFError, ConnectionResetError):
        raise errors.AutoexecError(
            f"the engine serving {home or 'this home'} stopped before it answered: "
            "see `autoexec status` for what happened"
        ) from None


def client_for(home: Path) -> LocalEngineClient | None:
    """A client of the process that serves ``home``, or None if none does."""
    if not (home / SOCKET_NAME).exists() or not (home / KEY_NAME).exists():
        return None
    client = LocalEngineClient(home)
    try:
        client._connect().close()
    except (ConnectionRefusedError, FileNotFoundError):
        return None  # a socket left by an engine that was killed
    return client


class ApiThroughEngine:
    """``autoexec.api`` for a process that does not run the engine of its embedded home: the
    calls in :data:`FORWARDED` go to the process that does, the rest run here."""

    def __init__(self, client: LocalEngineClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name == "subscribe":
            return self._client.subscribe
        if name in FORWARDED:
            return lambda *args, **kwargs: self._client.call(name, *args, **kwargs)
        from autoexec import api

        return getattr(api, name)
