"""Poison messages: a message on an autoexec queue that no task can run is copied to the dead
queue (``AUTOEXEC_DEAD_QUEUE``, the reason in the ``x-autoexec-reason`` header), logged without
its body and rejected without re-queue; the consumer goes on with the next message. When the
message has a task id, the reason is also stored as the task's failure in the result backend, so
the sender's ``AsyncResult.get()`` raises :class:`PoisonMessageError` with it instead of waiting
until its timeout.

Celery's own consumer dies ("Unrecoverable error") on a body that is JSON but not
``[args, kwargs, embed]``: its request unpacks the body in the consumer itself. With ``-c 1``
the worker then stays up consuming nothing, and the broker hands the message to the next
worker, which dies too. :class:`PoisonSafeConsumer` (Celery's ``worker_consumer``) checks each
task message before Celery's handler sees it, and dead-letters what Celery would drop.

With ``AUTOEXEC_TASK_SIGNING_KEY`` set, a user-scoped task message without a valid signature
(``autoexec.signing``) is dead-lettered the same way: no task may run it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery, states
from celery.worker.consumer import Consumer
from kombu import Exchange, Message, Queue
from vine import promise

from autoexec.errors import AutoexecError
from autoexec.settings import Settings, get_settings
from autoexec.signing import (
    SIGNATURE_HEADER,
    SIGNED_TASKS,
    SignatureError,
    check_signature,
    links_a_signed_task,
    needs_signature,
)
from autoexec.task_arguments import ArgumentsError, check_arguments, shown_kwargs

log = logging.getLogger(__name__)

REASON_HEADER = "x-autoexec-reason"
QUEUE_HEADER = "x-autoexec-queue"
DEAD_LETTER_RETRY = {"max_retries": 3, "interval_start": 0, "interval_step": 1}


class PoisonMessageError(AutoexecError):
    """A task message no task can run (unknown argument, wrong type, undecodable body, unknown
    task, a user-scoped task without a valid signature): a worker dead-lettered it. Its text is
    the reason, never the arguments' values nor the signing key."""


@dataclass(frozen=True)
class TaskCall:
    name: str
    args: Sequence[Any]
    kwargs: Mapping[str, Any]


def checked_call(app: Celery, message: Message, signing_key: str | None = None) -> TaskCall:
    """The task call a protocol-2 task message makes, once its body, its signature (with a
    ``signing_key``) and its arguments are checked; raises :class:`PoisonMessageError`
    otherwise."""
    name = str(message.headers["task"])
    try:
        payload = message.decode()
    except Exception as exc:
        raise PoisonMessageError(f"undecodable body: {type(exc).__name__}: {exc}") from None
    args, kwargs = _arguments(payload)
    if signing_key is not None:
        _check_authenticity(signing_key, message, TaskCall(name, args, kwargs), payload)
    task = app.tasks.get(name)
    if task is not None and name.startswith("autoexec."):
        try:
            check_arguments(task.run, args, kwargs)
        except ArgumentsError as exc:
            raise PoisonMessageError(f"bad arguments for {name}: {exc}") from None
    return TaskCall(name, args, kwargs)


def _arguments(payload: Any) -> tuple[Sequence[Any], Mapping[str, Any]]:
    if isinstance(payload, Mapping) and "args" in payload:  # Celery's hybrid protocol
        args, kwargs = payload.get("args", ()), payload.get("kwargs", {})
    elif isinstance(payload, list | tuple) and len(payload) == 3 and isinstance(payload[2], dict):
        args, kwargs = payload[0], payload[1]
    else:
        raise PoisonMessageError("body is not a Celery task message [args, kwargs, embed]")
    if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping):
        raise PoisonMessageError("body is not [args, kwargs, embed] with a list and an object")
    return args, kwargs


def _check_authenticity(key: str, message: Message, call: TaskCall, payload: Any) -> None:
    """A user-scoped task's message must be signed with ``key``, and no message may make the
    worker send one (a callback, a chain, a chord)."""
    try:
        _check_signed(key, message, call, payload)
    except SignatureError as exc:
        raise PoisonMessageError(str(exc)) from None
    except Exception as exc:  # a message it cannot check is refused, never let through
        raise PoisonMessageError(
            f"{call.name} message's signature could not be checked: {type(exc).__name__}"
        ) from None


def _check_signed(key: str, message: Message, call: TaskCall, payload: Any) -> None:
    if needs_signature(call.name):
        headers = message.headers or {}
        task_id = str(headers.get("id") or "")
        given = headers.get(SIGNATURE_HEADER)
        check_signature(key, given, task_id, call.name, call.args, call.kwargs)
    if links_a_signed_task(_embedded_calls(payload)):
        raise SignatureError(
            f"{call.name} message has a callback, chain or chord that sends "
            f"{' or '.join(sorted(SIGNED_TASKS))}: refused with AUTOEXEC_TASK_SIGNING_KEY set "
            "(the worker would sign it for the sender); send that task itself, signed"
        )


def _embedded_calls(payload: Any) -> object:
    """What a task message asks to send after it (its body's third part, or, in the hybrid
    protocol, all but the arguments)."""
    if isinstance(payload, Mapping):
        return {key: value for key, value in payload.items() if key not in ("args", "kwargs")}
    return payload[2]


def refuses_protocol_1(key: str | None, message: Message) -> str | None:
    """With a key, the reason a task message in Celery's protocol 1 (its task named in its
    body) is refused: autoexec sends protocol 2 only, whose headers carry the signature;
    None for any other message (Celery's handlers judge it)."""
    if key is None:
        return None
    try:
        payload = message.decode()
    except Exception:
        return None  # Celery's decode error handler dead-letters it
    if not isinstance(payload, Mapping) or "task" not in payload:
        return None
    return (
        f"task {str(payload['task'])!r} in Celery's protocol 1, which cannot be signed: with "
        "AUTOEXEC_TASK_SIGNING_KEY set, workers take protocol 2 only"
    )


def signing_key_of(app: Celery) -> str | None:
    """The signing key of the app's runtime (the environment's for a plain Celery app)."""
    runtime = getattr(app, "runtime", None)
    settings: Settings = runtime.settings if runtime is not None else get_settings()
    key = settings.task_signing_key
    return key.get_secret_value() if key is not None else None


def dead_queue(name: str | None = None) -> Queue:
    """The dead-letter queue: ``name``, by default the one the settings name."""
    name = name or get_settings().dead_queue
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


def publish_dead(app: Celery, message: Message, reason: str) -> None:
    """Copy ``message`` as it came (body, content type, headers) to the dead queue."""
    queue = dead_queue()
    headers = {**(message.headers or {}), REASON_HEADER: reason, QUEUE_HEADER: _queue_of(message)}
    with app.producer_or_acquire() as producer:
        producer.publish(
            message.body,
            exchange=queue.exchange,
            routing_key=queue.routing_key,
            declare=[queue],
            content_type=message.content_type or "application/octet-stream",
            content_encoding=message.content_encoding or "binary",
            headers=headers,
            delivery_mode=2,
            retry=True,
            retry_policy=DEAD_LETTER_RETRY,
        )


def store_failure(app: Celery, message: Message, reason: str) -> None:
    """Store ``reason`` as the failure of the message's task (if it names its id), where the
    sender's ``AsyncResult`` looks, unless that task has a result already: a message that
    reuses the id of a task that ran (a forged one, say) must not change what it returned. A
    backend that cannot store it is logged, not raised."""
    task_id = (message.headers or {}).get("id")
    if not task_id:
        return
    try:
        if app.backend.get_state(str(task_id)) in states.READY_STATES:
            log.warning("kept the result of %s: the task has one already", _describe(message))
            return
        app.backend.mark_as_failure(str(task_id), PoisonMessageError(reason))
    except Exception:
        log.exception("could not store the failure of %s", _describe(message))


def _queue_of(message: Message) -> str:
    return str((message.delivery_info or {}).get("routing_key") or "")


def _describe(message: Message) -> str:
    """What the log says of a message: where it came from and its size, not its body."""
    headers = message.headers or {}
    size = len(message.body or b"")
    return (
        f"task {headers.get('task')!r} id {headers.get('id')!r} on queue {_queue_of(message)!r} "
        f"({message.content_type}, {size} bytes)"
    )


class PoisonSafeConsumer(Consumer):
    """Celery's consumer, which dead-letters a message it cannot run instead of dying on it
    or dropping it with its body in the log."""

    connection_errors: tuple[type[BaseException], ...]  # set by Celery's __init__

    def create_task_handler(self, promise: type[promise] = promise) -> Callable[..., Any]:
        handle = super().create_task_handler(promise)
        # Read once, outside the check's fault handling below: a key that cannot be read must
        # stop the worker, not let unsigned messages through.
        signing_key = signing_key_of(self.app)

        def on_task_received(message: Message) -> Any:
            if "task" in (message.headers or {}):  # protocol 2; Celery checks the others
                try:
                    call = checked_call(self.app, message, signing_key)
                except PoisonMessageError as exc:
                    return self.dead_letter(message, str(exc))
                except Exception:
                    # A fault of the check itself must not cost a good message: Celery decides;
                    # unless messages must be signed: one that could not be checked is not run.
                    log.exception("could not check %s", _describe(message))
                    if signing_key is not None:
                        return self.dead_letter(message, "the message could not be checked")
                else:
                    _show_safely(message, call)
            elif reason := refuses_protocol_1(signing_key, message):
                return self.dead_letter(message, reason)
            return handle(message)

        return on_task_received

    def dead_letter(self, message: Message, reason: str) -> None:
        log.error("rejected a message no task can run, %s: %s", _describe(message), reason)
        try:
            publish_dead(self.app, message, reason)
        except Exception:
            log.exception("could not dead-letter %s; it is dropped", _describe(message))
        store_failure(self.app, message, reason)
        message.reject_log_error(log, self.connection_errors)

    def on_decode_error(self, message: Message, exc: Exception) -> None:
        self.dead_letter(message, f"undecodable body: {type(exc).__name__}: {exc}")

    def on_unknown_message(self, body: Any, message: Message) -> None:
        self.dead_letter(message, "not a Celery task message (it names no task)")

    def on_unknown_task(self, body: Any, message: Message, exc: Exception) -> None:
        self.dead_letter(message, f"unknown task {(message.headers or {}).get('task')!r}")

    def on_invalid_task(self, body: Any, message: Message, exc: Exception) -> None:
        self.dead_letter(message, f"invalid task message: {exc}")


def _show_safely(message: Message, call: TaskCall) -> None:
    """Task events and logs of this worker show no input values, whoever sent the message."""
    shown = shown_kwargs(call.name, call.kwargs)
    if shown is not None:
        message.headers["kwargsrepr"] = shown
