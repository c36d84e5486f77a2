"""Signed task messages (``AUTOEXEC_TASK_SIGNING_KEY``).

The user-scoped tasks, ``autoexec.run_graph`` and ``autoexec.cancel_graph``, act for the user
their message names. With a key set, each of their messages carries in its
``x-autoexec-signature`` header the HMAC-SHA256 (hex) of its task id, task name and arguments
made with the key: autoexec's own sends are signed (``autoexec.celery_app``), and a worker runs
only a message whose signature it recomputes with its key (``autoexec.poison`` dead-letters the
others, the reason stored for the sender). A broker client without the key can then neither
act as another user nor change a signed message; sending a signed one again runs nothing new
(a task id is used once: ``run_graph``'s is its execution's id).

What is signed is :func:`signed_text`, compact JSON with sorted keys of
``[task_id, name, args, kwargs]``: an app without autoexec signs with the standard library
(docs/operations.md shows how).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from autoexec.errors import AutoexecError

SIGNATURE_HEADER = "x-autoexec-signature"
SIGNED_TASKS = frozenset({"autoexec.run_graph", "autoexec.cancel_graph"})


class SignatureError(AutoexecError):
    """A user-scoped task message without a valid signature; the message says why, never
    with the key."""


def needs_signature(task_name: str) -> bool:
    return task_name in SIGNED_TASKS


def signed_text(
    task_id: str, task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> bytes:
    """The bytes a signature is made over: the same for the sender's arguments as for what
    the worker decodes of them (tuples are lists, keys text, other values their ``str``)."""
    as_json = json.loads(json.dumps([task_id, task_name, list(args), dict(kwargs)], default=str))
    compact = json.dumps(as_json, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return compact.encode()


def signature(
    key: str, task_id: str, task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> str:
    """The hex HMAC-SHA256 of the message's :func:`signed_text` with ``key``."""
    text = signed_text(task_id, task_name, args, kwargs)
    return hmac.new(key.encode(), text, hashlib.sha256).hexdigest()


def check_signature(
    key: str,
    given: object,
    task_id: str,
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> None:
    """Raise :class:`SignatureError` unless ``given`` is the message's signature with ``key``."""
    if not given:
        raise SignatureError(
            f"{task_name} message is not signed: the workers run it only with the "
            f"{SIGNATURE_HEADER} header that AUTOEXEC_TASK_SIGNING_KEY makes (send it through "
            "autoexec with the key set, or sign it as docs/operations.md shows)"
        )
    expected = signature(key, task_id, task_name, args, kwargs)
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise SignatureError(
            f"{task_name} message's {SIGNATURE_HEADER} header does not match its task id, "
            "name and arguments: signed with another key than the workers' "
            "AUTOEXEC_TASK_SIGNING_KEY, or changed after it was signed"
        )


def links_a_signed_task(embed: object) -> bool:
    """Whether a message's callbacks, errbacks, chain or chord (``embed``) would send a
    user-scoped task: the worker would send it, signed with its key, for whoever sent the
    message, which therefore needs the key."""
    if isinstance(embed, Mapping):
        if needs_signature(str(embed.get("task"))):
            return True
        return any(links_a_signed_task(value) for value in embed.values())
    if isinstance(embed, list | tuple):
        return any(links_a_signed_task(value) for value in embed)
    return False
