"""Celery overrides for autoexec.

Any Celery setting defined here wins over autoexec's defaults (which come from the
AUTOEXEC_* environment variables). This file is read when the worker's working directory (or
PYTHONPATH) contains it. Example:

    worker_concurrency = 4
    task_time_limit = 3600
"""
