"""The exceptions autoexec raises.

::

    AutoexecError
    ├── ConfigurationError        an AUTOEXEC_* setting is invalid
    ├── GraphValidationError      a graph definition is wrong (names the node and pin)
    ├── BlockNotFoundError        no block is registered under that id
    │   └── BlockNotRegisteredError   a node's block is missing on the worker running it
    ├── BlockDisabledError        the block exists but is disabled
    ├── InputValidationError      submission inputs, masks or skips are wrong
    ├── NotFoundError             no such graph / execution for this user
    ├── InvalidTransitionError    a status change that SPEC §2 does not allow
    ├── InsufficientBalanceError  not enough credits (SPEC §6)
    ├── BudgetExceededError       a node would take its run past its credit budget
    ├── ExecutionStoppedError     the graph execution was stopped while a node ran
    └── NotificationDeliveryError a notification sink did not take a notification

    UserWarning
    └── GraphWarning              a saved graph is legal but suspicious (e.g. unreachable nodes)
"""

from __future__ import annotations

import socket
from typing import Self


class AutoexecError(Exception):
    """An autoexec operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class ConfigurationError(AutoexecError):
    """An AUTOEXEC_* setting is invalid; fix the environment variable named in the message."""


class GraphValidationError(AutoexecError):
    """The graph definition is invalid."""


class BlockNotFoundError(AutoexecError):
    """No block is registered under that id; check the block_id or AUTOEXEC_BLOCK_MODULES."""


class BlockNotRegisteredError(BlockNotFoundError):
    """A graph uses a block that the worker running one of its steps does not have."""

    def __init__(self, block_id: str, node_id: str) -> None:
        self.block_id, self.node_id = block_id, node_id
        super().__init__(
            f"block {block_id!r} of node {node_id!r} is not registered on worker "
            f"{socket.gethostname()}: list its module in AUTOEXEC_BLOCK_MODULES or install its "
            "package (entry point group autoexec.blocks) on every worker"
        )


class BlockDisabledError(AutoexecError):
    """This block is disabled and cannot run."""


# What a refused input's repr says in place of its message (see InputValidationError).
MESSAGE_HIDDEN = "message hidden from logs and task events: it may quote input values"


class InputValidationError(AutoexecError):
    """The submission's inputs are invalid.

    The message may quote the values it refuses: the caller, who sent them, reads it (``str``,
    the task result). Its ``repr`` quotes only ``shown``, a wording with no value given where
    it is raised, else nothing of it: Celery's trace log and task events print the ``repr``
    of a task's exception (a refused ``run_graph`` is logged at INFO)."""

    def __init__(self, message: str | None = None, *, shown: str | None = None) -> None:
        super().__init__(message)
        self.shown = shown

    @classmethod
    def quoting_no_value(cls, message: str) -> Self:
        """A refusal whose message quotes no value: logs may show all of it."""
        return cls(message, shown=message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shown or MESSAGE_HIDDEN!r})"


class SubgraphError(InputValidationError):
    """An ``agent_executor`` node cannot start its child graph: an unknown graph, inputs it
    refuses, or nesting past AUTOEXEC_MAX_SUBGRAPH_DEPTH."""


class NotFoundError(AutoexecError):
    """Not found."""


class InvalidTransitionError(AutoexecError):
    """That status change is not allowed."""


class InsufficientBalanceError(AutoexecError):
    """Not enough credits; top up to continue."""


class BudgetExceededError(AutoexecError):
    """A node's charge would take its graph execution past its ``credit_budget``."""


class ExecutionStoppedError(AutoexecError):
    """The graph execution was cancelled or stopped by a limit while this node ran."""


class NotificationDeliveryError(AutoexecError):
    """A notification sink did not take a notification; ``retry`` says whether trying again
    may help (a timeout, a 5xx) or not (the receiver refused it, e.g. a 4xx)."""

    def __init__(self, message: str, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


class GraphWarning(UserWarning):
    """A saved graph is legal but will not do what it seems to (e.g. nodes that never run)."""


class NodeTimeoutError(AutoexecError):
    """A node ran longer than its timeout (node, block or AUTOEXEC_NODE_TIMEOUT_SECONDS)."""


class WorkerLostError(AutoexecError):
    """The worker running a node was lost too many times (AUTOEXEC_MAX_WORKER_LOSSES)."""
