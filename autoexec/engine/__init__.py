"""The engine: orchestration steps and node execution, and the Celery tasks that run them."""
