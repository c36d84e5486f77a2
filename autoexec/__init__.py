"""autoexec: a distributed execution engine for agent workflow graphs, built on Celery.

``celery -A autoexec worker`` finds the Celery app here.
"""

from autoexec.celery_app import app

__version__ = "0.1.0"

celery = app

__all__ = ["__version__", "app", "celery"]
