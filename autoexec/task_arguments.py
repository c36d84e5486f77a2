"""The arguments a task message carries, checked against the task's signature before it runs,
and what monitoring is shown of them.

A message with arguments its task cannot take would fail in the pool with a ``TypeError``, or
worse, half-way through its body; checked in the consumer it is rejected before anything
runs. Input values never reach task events or logs: ``autoexec.run_graph`` is shown by which
graph, user and input names it runs, not the values.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

# Only the names of these run_graph arguments are shown; their values are the user's data.
_VALUE_ARGUMENTS = ("inputs", "nodes_input_masks")


class ArgumentsError(Exception):
    """A task message's arguments do not fit its task; the message says which and why."""


def check_arguments(
    run: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """Raise :class:`ArgumentsError` unless ``run(*args, **kwargs)`` binds and every argument
    validates against its annotation (the message names arguments, never their values)."""
    signature = inspect.signature(run)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise ArgumentsError(str(exc)) from None
    try:
        _arguments_model(run).model_validate(bound.arguments)
    except ValidationError as exc:
        raise ArgumentsError(_describe(exc)) from None


@cache
def _arguments_model(run: Callable[..., Any]) -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (
            Any if param.annotation is param.empty else param.annotation,
            ... if param.default is param.empty else param.default,
        )
        for name, param in inspect.signature(run).parameters.items()
    }
    # String annotations (``from __future__ import annotations``) resolve in run's module.
    return create_model(
        f"{getattr(run, '__name__', 'task')}_arguments",
        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True),
        __module__=run.__module__,
        **fields,
    )


def _describe(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()
    )


def shown_run_graph_kwargs(kwargs: Mapping[str, Any]) -> str:
    """What task events and logs show of ``autoexec.run_graph``'s keyword arguments."""
    shown = {
        name: _names_only(value) if name in _VALUE_ARGUMENTS else value
        for name, value in kwargs.items()
    }
    return repr(shown)


def _names_only(value: object) -> object:
    return sorted(map(str, value)) if isinstance(value, Mapping) else "<hidden>"


SHOWN_KWARGS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "autoexec.run_graph": shown_run_graph_kwargs,
}


def shown_kwargs(task_name: str, kwargs: Mapping[str, Any] | None) -> str | None:
    """The kwargsrepr to send for ``task_name``, or None to let Celery show the kwargs."""
    show = SHOWN_KWARGS.get(task_name)
    return show(kwargs or {}) if show is not None else None
