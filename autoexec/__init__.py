"""autoexec: a distributed execution engine for agent workflow graphs, built on Celery.

``celery -A autoexec worker`` finds the Celery app here (``autoexec.app``, also
``autoexec.celery``). It is built on first access, so importing the pure modules
(``autoexec.graph``, ``autoexec.dataflow``, ``autoexec.blocks`` ...) loads no Celery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autoexec.celery_app import AutoexecCelery

    app: AutoexecCelery
    celery: AutoexecCelery

__version__ = "0.1.0"

__all__ = ["__version__", "app", "celery"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery"):
        from autoexec.celery_app import app

        return app
    raise AttributeError(f"module 'autoexec' has no attribute {name!r}")
