"""``celery -A tests.integration.app_without_task_events worker``: autoexec's app with task
events off. A worker's event dispatcher publishes on a connection of the broker's write URL,
and the worker restarts its consumer when that connection is lost: without events, a test
can cut the write URL while the worker goes on consuming.

Its publishes also retry for about five seconds (Celery's default gives up after about half
a second): once the test restores the write URL, the requeued message's re-run must be able
to publish, even if the test process is slow to restore it."""

from autoexec.celery_app import app

app.conf.worker_send_task_events = False
app.conf.task_publish_retry_policy = {
    "max_retries": 20,
    "interval_start": 0,
    "interval_step": 0.25,
    "interval_max": 0.25,
}

__all__ = ["app"]
