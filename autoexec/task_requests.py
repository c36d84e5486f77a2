"""How a worker reports a task in task events (what Flower shows), where Celery's report could
carry a user's data."""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request

HIDDEN = "(hidden from task events: it may quote input values; the task result has it)"


class RunGraphRequest(Request):
    """``autoexec.run_graph``'s failures show in task events by their type only: a refused
    submission's message may quote the input value it refused. The caller's result keeps the
    whole message."""

    def send_event(self, type: str, **fields: Any) -> None:
        if "exception" in fields:
            fields = {**fields, "exception": _type_only(fields["exception"]), "traceback": ""}
        super().send_event(type, **fields)


def _type_only(exception: object) -> str:
    return f"{str(exception).split('(', 1)[0]}{HIDDEN}"
