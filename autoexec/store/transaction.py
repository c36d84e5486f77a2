"""What the layers above the store hold of the database: a transaction to pass to store
functions, and the error that says the database could not do its part.

``Transaction`` is a type alias of SQLAlchemy's ``Session``, not a wrapper: ``Database.session()``
yields sessions, and store functions take them as they are, so naming the type here costs no
call and no statement while the engine imports no SQLAlchemy. The engine only passes a
transaction on; every statement is written in a store module.
"""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

Transaction: TypeAlias = Session

# The database failed to do its part (connection lost, server down, a timeout): a task
# retries, it is no fault of the run.
DatabaseOperationalError = OperationalError

__all__ = ["DatabaseOperationalError", "Transaction"]
