"""Cluster coordination in Redis: locks, wake-up flags, stop flags, deadline timers. All key
names live here.

The same code runs on a real Redis and on the embedded stack's in-process stand-in (fakeredis,
selected by a ``memory://`` Redis URL). This is the only module that talks to a Redis client:
the rest of autoexec uses the ``Coordinator`` and the ``GraphLock`` and ``PubSub`` it gives, and
catches ``CoordinationError`` (any failure to reach or use Redis) and ``LockLost``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

MEMORY_SCHEME = "memory://"

# Re-exported, so that no other module names the Redis client: any failure to reach or use
# the coordination store; a lock released or extended after it expired; Redis unreachable.
CoordinationError = RedisError
LockLost = LockError
UNREACHABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)

T = TypeVar("T")


class GraphLock(Protocol):
    """A cluster-wide lock with an owner token and a time-to-live (``Coordinator.graph_lock``)."""

    def acquire(self, blocking: bool | None = None) -> bool: ...

    def release(self) -> None: ...

    def reacquire(self) -> bool: ...


class PubSub:
    """One pub/sub subscription (``Coordinator.subscribe``); its calls raise
    ``CoordinationError`` when Redis fails."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            self._pubsub.subscribe(name)
        except BaseException:
            self._pubsub.close()
            raise
        self._reconnect_callback: Callable[[], None] | None = None

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the client re-subscribed by itself after a reconnect
        (messages published meanwhile were lost)."""
        self._reconnect_callback = callback
        connection = self._pubsub.connection
        if connection is not None:  # the client keeps a weak reference: a bound method
            connection.register_connect_callback(self._reconnected)

    def _reconnected(self, _connection: Any) -> None:
        if self._reconnect_callback is not None:
            self._reconnect_callback()

    def get_message(self, timeout: float) -> str | bytes | None:
        """The next message's data, or None if none came within ``timeout`` seconds."""
        message = self._pubsub.get_message(timeout=timeout)
        return None if message is None else message["data"]

    def close(self) -> None:
        self._pubsub.close()


class Keys:
    """Every Redis key autoexec uses."""

    prefix = "autoexec"

    @classmethod
    def wake(cls, graph_exec_id: str) -> str:
        return f"{cls.prefix}:wake:{graph_exec_id}"

    @classmethod
    def graph_lock(cls, graph_exec_id: str) -> str:
        return f"{cls.prefix}:lock:graph:{graph_exec_id}"

    @classmethod
    def missed(cls, graph_exec_id: str) -> str:
        return f"{cls.prefix}:missed:{graph_exec_id}"

    @classmethod
    def deferred(cls, graph_exec_id: str) -> str:
        return f"{cls.prefix}:deferred:{graph_exec_id}"

    @classmethod
    def stop(cls, graph_exec_id: str) -> str:
        return f"{cls.prefix}:stop:{graph_exec_id}"

    @classmethod
    def node_alive(cls, graph_exec_id: str, node_exec_id: int) -> str:
        return f"{cls.prefix}:alive:{graph_exec_id}:{node_exec_id}"

    @classmethod
    def deadline_timer(cls, graph_exec_id: str) -> str:
        return f"{cls.prefix}:deadline-timer:{graph_exec_id}"

    @classmethod
    def events(cls, graph_exec_id: str) -> str:
        """The live events of one graph execution (autoexec.observability.events)."""
        return f"{cls.prefix}:events:graph:{graph_exec_id}"

    @classmethod
    def user_events(cls, user_id: str) -> str:
        """The live events of all of one user's graph executions."""
        return f"{cls.prefix}:events:user:{user_id}"

    @classmethod
    def node_count(cls, user_id: str) -> str:
        """How many node executions of the user were charged (the execution cost, SPEC §6)."""
        return f"{cls.prefix}:node-count:{user_id}"

    @classmethod
    def alert(cls, block_id: str, error_type: str) -> str:
        """Set while a system alert for this block and error type was sent lately."""
        return f"{cls.prefix}:alert:{block_id}:{error_type}"

    @classmethod
    def alerts_held(cls, block_id: str, error_type: str) -> str:
        """How many system alerts for this block and error type were held back since."""
        return f"{cls.prefix}:alerts-held:{block_id}:{error_type}"

    @classmethod
    def zero_balance(cls, user_id: str, graph_id: str, top_ups: int) -> str:
        """Set once the user was told their balance ran out on the graph; a top-up moves the
        count, so the next refusal notifies again."""
        return f"{cls.prefix}:zero-balance:{user_id}:{graph_id}:{top_ups}"


class SkipWhileDown:
    """A circuit breaker: once Redis was found unreachable through it, every call fails at
    once for ``pause`` seconds, so that callers with another way to know (the database) take
    it without waiting on Redis's timeouts again and again."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.down_until = 0.0

    def call(self, command: Callable[[], T]) -> T:
        if time.monotonic() < self.down_until:
            raise RedisConnectionError(
                f"Redis was unreachable less than {self.pause:g}s ago; not asked again yet"
            )
        try:
            return command()
        except UNREACHABLE:
            self.down_until = time.monotonic() + self.pause
            raise


class Coordinator:
    """Redis primitives the engine needs, over one client."""

    WAKE_TTL_SECONDS = 60
    # The stop flag is the fast path by which the nodes running at a stop learn of it (they
    # read it every 0.5 s); the database is the truth, which they read every few seconds, as
    # a node task does before it runs. So the flag need only outlive the nodes running when
    # it was set: 30 minutes is RabbitMQ's default consumer_timeout, past which no node task keeps
    # its message (AUTOEXEC_NODE_TIMEOUT_SECONDS stays under it), and a node allowed longer
    # still stops, from the database. One key per cancel lives that long, not 7 days.
    STOP_TTL_SECONDS = 30 * 60
    # How long the stop path skips Redis after finding it down (see ``stop_client``).
    STOP_PATH_PAUSE_SECONDS = 5.0

    def __init__(
        self,
        client: redis.Redis,
        events_client: redis.Redis | None = None,
        stop_client: redis.Redis | None = None,
    ) -> None:
        self.client = client
        # Publishing events must never hold a run up: its own client, with short timeouts.
        self.events_client = events_client or client
        # A cancel and the stop watches of running nodes must stop a run within 2 s (SPEC §7)
        # with Redis down too; the database is their truth and their fallback. So the stop
        # flags and the marks of running nodes have a client of their own, with short
        # timeouts, and skip Redis for a while once it was found down.
        self.stop_client = stop_client or client
        self.stop_path = SkipWhileDown(self.STOP_PATH_PAUSE_SECONDS)

    def request_wake(self, graph_exec_id: str) -> bool:
        """Flag that the graph has work; True if the caller must enqueue the orchestrator."""
        return bool(self.client.set(Keys.wake(graph_exec_id), 1, nx=True, ex=self.WAKE_TTL_SECONDS))

    def clear_wake(self, graph_exec_id: str) -> None:
        self.client.delete(Keys.wake(graph_exec_id))

    def mark_missed(self, graph_exec_id: str, ttl_seconds: float) -> None:
        """Note for the lock owner that a step arrived while it held the lock."""
        self.client.set(Keys.missed(graph_exec_id), 1, px=max(int(ttl_seconds * 1000), 1))

    def take_missed(self, graph_exec_id: str) -> bool:
        return self.client.getdel(Keys.missed(graph_exec_id)) is not None

    def graph_lock(self, graph_exec_id: str, ttl_seconds: float) -> GraphLock:
        """The cluster-wide lock of one graph execution: an owner token and a time-to-live."""
        lock: GraphLock = self.client.lock(Keys.graph_lock(graph_exec_id), timeout=ttl_seconds)
        return lock

    def subscribe(self, channel: str) -> PubSub:
        """Subscribe to ``channel`` (``Keys.events``, ``Keys.user_events``)."""
        return PubSub(self.client, channel)

    def lock_ttl(self, graph_exec_id: str) -> float:
        """Seconds left on the graph lock (0 if nobody holds it)."""
        millis = self.client.pttl(Keys.graph_lock(graph_exec_id))
        return max(int(millis), 0) / 1000

    def defer_once(self, graph_exec_id: str, seconds: float) -> bool:
        """True for the first caller in a ``seconds`` window: it schedules the deferred step."""
        key = Keys.deferred(graph_exec_id)
        return bool(self.client.set(key, 1, nx=True, px=max(int(seconds * 1000), 1)))

    def request_stop(self, graph_exec_id: str) -> None:
        """Tell the execution's running node tasks to stop (cancelled, or past a limit)."""
        self.stop_path.call(
            lambda: self.stop_client.set(Keys.stop(graph_exec_id), 1, ex=self.STOP_TTL_SECONDS)
        )

    def stop_requested(self, graph_exec_id: str) -> bool:
        return bool(self.stop_path.call(lambda: self.stop_client.exists(Keys.stop(graph_exec_id))))

    # A node task renews its node's mark every few seconds while it handles it; a RUNNING
    # node without one has no task left (see ``autoexec.engine.reconciler``).
    NODE_ALIVE_TTL_SECONDS = 60

    def note_node_alive(
        self, graph_exec_id: str, node_exec_id: int, seconds: float = NODE_ALIVE_TTL_SECONDS
    ) -> None:
        """Mark the node execution as handled by a live task for the next ``seconds``."""
        key = Keys.node_alive(graph_exec_id, node_exec_id)
        # On the stop watch's way to the database: the stop path's client (a lost mark costs a
        # re-run at worst, and the next one comes within seconds).
        self.stop_path.call(lambda: self.stop_client.set(key, 1, px=max(int(seconds * 1000), 1)))

    def nodes_alive(self, nodes: list[tuple[str, int]]) -> list[bool]:
        """For each ``(graph_exec_id, node_exec_id)``: whether a live task handles it."""
        if not nodes:
            return []
        keys = [
            Keys.node_alive(graph_exec_id, node_exec_id) for graph_exec_id, node_exec_id in nodes
        ]
        return [value is not None for value in self.client.mget(keys)]

    def deadline_timer_pending(self, graph_exec_id: str) -> bool:
        return bool(self.client.exists(Keys.deadline_timer(graph_exec_id)))

    def note_deadline_timer(self, graph_exec_id: str, seconds: float) -> None:
        """Remember that a step is scheduled in ``seconds`` to check the run's deadline."""
        key = Keys.deadline_timer(graph_exec_id)
        self.client.set(key, 1, px=max(int(seconds * 1000), 1))

    NODE_COUNT_TTL_SECONDS = 30 * 24 * 3600
    ZERO_BALANCE_TTL_SECONDS = 30 * 24 * 3600

    def count_node_execution(self, user_id: str) -> int:
        """Count one more node execution of the user; the count so far (kept 30 days after
        the last one)."""
        key = Keys.node_count(user_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, self.NODE_COUNT_TTL_SECONDS)
        return int(pipe.execute()[0])

    def first_zero_balance_notice(self, user_id: str, graph_id: str, top_ups: int) -> bool:
        """True the first time since the user's last top-up that this is asked for the graph."""
        key = Keys.zero_balance(user_id, graph_id, top_ups)
        return bool(self.client.set(key, 1, nx=True, ex=self.ZERO_BALANCE_TTL_SECONDS))

    def alert_due(self, block_id: str, error_type: str, seconds: float) -> int | None:
        """None if an alert for this block and error type went out less than ``seconds``
        ago (this one is counted as held back); else how many were held back since that one."""
        if self.client.set(Keys.alert(block_id, error_type), 1, nx=True, px=int(seconds * 1000)):
            return int(self.client.getdel(Keys.alerts_held(block_id, error_type)) or 0)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(Keys.alerts_held(block_id, error_type))
        pipe.expire(Keys.alerts_held(block_id, error_type), self.ZERO_BALANCE_TTL_SECONDS)
        pipe.execute()
        return None

    def publish_all(self, messages: list[tuple[str, str]]) -> None:
        """Publish each ``(channel, message)`` in order, in one round trip."""
        pipeline = self.events_client.pipeline(transaction=False)
        for channel, message in messages:
            pipeline.publish(channel, message)
        pipeline.execute()


SERVICE_TIMEOUTS: dict[str, Any] = {"socket_timeout": 10, "socket_connect_timeout": 5}
# One try, half a second at most: a lost event costs less than a slowed run.
EVENTS_TIMEOUTS: dict[str, Any] = {
    "socket_timeout": 0.5,
    "socket_connect_timeout": 0.5,
    "retry": Retry(NoBackoff(), 0),
}
# One try, half a second at most: a stop flag Redis did not answer for is read from the
# database (the truth) instead, well within the 2 s a stop may take.
STOP_PATH_TIMEOUTS: dict[str, Any] = {
    "socket_timeout": 0.5,
    "socket_connect_timeout": 0.5,
    "retry": Retry(NoBackoff(), 0),
}


def redis_client(
    url: str, options: dict[str, Any] = SERVICE_TIMEOUTS, memory: Any = None
) -> redis.Redis:
    """A Redis client for ``url``; ``memory://...`` is an in-process stand-in (on the fakeredis
    server ``memory``, a new one if None)."""
    if url.startswith(MEMORY_SCHEME):
        import fakeredis

        client: redis.Redis = fakeredis.FakeRedis(server=memory or fakeredis.FakeServer())
        return client
    return redis.Redis.from_url(url, **options)


def make_coordinator(url: str) -> Coordinator:
    """A coordinator for ``url``, with clients of its own for events and for the stop path; on
    ``memory://`` all clients share one in-process server, owned by the coordinator (one per
    runtime)."""
    memory = None
    if url.startswith(MEMORY_SCHEME):
        import fakeredis

        memory = fakeredis.FakeServer()
    return Coordinator(
        redis_client(url, memory=memory),
        redis_client(url, EVENTS_TIMEOUTS, memory),
        redis_client(url, STOP_PATH_TIMEOUTS, memory),
    )
