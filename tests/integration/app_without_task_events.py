"""``celery -A tests.integration.app_without_task_events worker``: autoexec's app with task
events off. A worker's event dispatcher publishes on a connection of the broker's write URL,
and the worker restarts its consumer when that connection is lost: without events, a test
can cut the write URL while the worker goes on consuming."""

from autoexec.celery_app import app

app.conf.worker_send_task_events = False

__all__ = ["app"]
