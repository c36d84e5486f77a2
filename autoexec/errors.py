"""The exceptions autoexec raises.

::

    AutoexecError
    ├── ConfigurationError        an AUTOEXEC_* setting is invalid
    ├── GraphValidationError      a graph definition is wrong (names the node and pin)
    ├── BlockNotFoundError        no block is registered under that id
    ├── BlockDisabledError        the block exists but is disabled
    ├── InputValidationError      submission inputs, masks or skips are wrong
    ├── NotFoundError             no such graph / execution for this user
    ├── InvalidTransitionError    a status change that SPEC §2 does not allow
    └── InsufficientBalanceError  not enough credits (SPEC §6)

    UserWarning
    └── GraphWarning              a saved graph is legal but suspicious (e.g. unreachable nodes)
"""

from __future__ import annotations


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


class BlockDisabledError(AutoexecError):
    """This block is disabled and cannot run."""


class InputValidationError(AutoexecError):
    """The submission's inputs are invalid."""


class NotFoundError(AutoexecError):
    """Not found."""


class InvalidTransitionError(AutoexecError):
    """That status change is not allowed."""


class InsufficientBalanceError(AutoexecError):
    """Not enough credits; top up to continue."""


class GraphWarning(UserWarning):
    """A saved graph is legal but will not do what it seems to (e.g. nodes that never run)."""
