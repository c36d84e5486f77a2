"""Every ``AUTOEXEC_*`` setting, in one place.

Settings are read from the environment (:func:`load_settings`, or :func:`settings_with` for
the environment with some variables set over it) by the outermost edge of a process, which
builds its ``autoexec.runtime.Runtime`` from them and passes them down; nothing is cached or
configured at import time, and nothing here writes the environment. An invalid value fails
with a message that names the environment variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from autoexec.errors import ConfigurationError

ENV_PREFIX = "AUTOEXEC_"
NOTIFICATION_SINKS = ("log", "webhook")
MIN_SIGNING_KEY_CHARS = 16


class Settings(BaseSettings):
    """Configuration of autoexec; each field is the environment variable ``AUTOEXEC_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/autoexec"
    result_backend: str | None = None

    graph_queue: str = "autoexec.graphs"
    node_queue: str = "autoexec.nodes"
    # Celery's default queue: a bare ``send_task("autoexec.run_graph", ...)`` from an app that
    # knows nothing of autoexec's routes lands here, and autoexec workers consume it too.
    inbox_queue: str = "celery"
    # Where a message no autoexec task can run goes (with the reason in a header); no worker
    # consumes it: an operator reads it.
    dead_queue: str = "autoexec.dead"
    block_modules: str = ""
    # Extra engine hooks (autoexec.hooks), ``pkg.module:Name`` comma-separated.
    hooks: str = ""

    max_concurrent_runs_per_user: int = Field(default=10, ge=1)
    graph_lock_ttl_seconds: float = Field(default=10.0, gt=0)
    delivery_batch_size: int = Field(default=200, ge=1)
    max_node_executions_per_run: int = Field(default=100_000, ge=1)
    # A node whose worker is lost this many times (killed, crashed, out of memory) while it
    # runs ends FAILED instead of being re-delivered again.
    max_worker_losses: int = Field(default=3, ge=1)
    # How deep ``agent_executor`` child executions may nest: a top-level run is at depth 0.
    max_subgraph_depth: int = Field(default=10, ge=0)
    # The time limit of a node with none of its own (node, then block ``timeout_seconds``);
    # 0: none. Under RabbitMQ's 30-minute consumer timeout, which a longer task would trip.
    node_timeout_seconds: float = Field(default=1500.0, ge=0)
    # On a cold shutdown (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT) a worker lets its
    # running nodes finish for this long, then hands them back to the queue.
    worker_shutdown_timeout_seconds: float = Field(default=25.0, ge=0)
    # The reconciler resumes a run that made no progress (no status change, no output) for
    # this long; it runs every interval under ``celery -A autoexec beat``.
    reconcile_after_seconds: float = Field(default=300.0, ge=0)
    reconcile_interval_seconds: float = Field(default=60.0, gt=0)

    billing_enabled: bool = False
    execution_cost_count_threshold: int = Field(default=100, ge=1)
    execution_cost_per_threshold: int = Field(default=1, ge=0)
    low_balance_threshold: int = Field(default=100, ge=0)

    # Notifications (autoexec.billing.notifications): where they go, a comma list of log, webhook
    # (empty: none), and how the webhook is called.
    notification_sinks: str = "log"
    notification_webhook_url: str | None = Field(default=None, validate_default=True)
    notification_webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    notification_webhook_retries: int = Field(default=5, ge=0)
    notification_webhook_backoff_seconds: float = Field(default=2.0, ge=0, le=300)
    notification_webhook_threads: int = Field(default=4, ge=1)
    notification_max_output_bytes: int = Field(default=4096, ge=64)
    # At most one SYSTEM_ALERT per block and error type in this many seconds (0: no limit).
    alert_interval_seconds: float = Field(default=300.0, ge=0)

    event_max_value_bytes: int = Field(default=4096, ge=64)
    max_output_bytes: int = Field(default=10_000_000, ge=1024)
    # The largest graph input (as JSON) a submission may carry; a bigger one is refused.
    max_input_bytes: int = Field(default=10_000_000, ge=1024)
    metrics_port: int = Field(default=9808, ge=0, le=65535)
    # text: Celery's log lines; json: one JSON object per line (autoexec.logs).
    log_format: Literal["text", "json"] = "text"
    # When set, the user-scoped task messages (run_graph, cancel_graph) carry an HMAC of their
    # id, name and arguments made with it, and workers run only those (autoexec.signing).
    task_signing_key: SecretStr | None = None

    @field_validator("broker_url", "redis_url", "database_url")
    @classmethod
    def _has_scheme(cls, value: str) -> str:
        if "://" not in value:
            raise ValueError(f"{value!r} is not a URL (expected scheme://...)")
        return value

    @field_validator("notification_sinks")
    @classmethod
    def _known_sinks(cls, value: str) -> str:
        unknown = [name for name in _names(value) if name not in NOTIFICATION_SINKS]
        if unknown:
            raise ValueError(
                f"unknown sink {', '.join(map(repr, unknown))}; "
                f"use a comma list of {', '.join(NOTIFICATION_SINKS)} (or nothing for none)"
            )
        return value

    @field_validator("notification_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("not an http:// or https:// URL")
        if value is None and "webhook" in _names(info.data.get("notification_sinks", "")):
            raise ValueError(
                f"not set, but {ENV_PREFIX}NOTIFICATION_SINKS has webhook: set it to the URL "
                "notifications are POSTed to, or drop webhook from the sinks"
            )
        return value

    @field_validator("task_signing_key", mode="before")
    @classmethod
    def _signing_key(cls, value: object) -> object:
        if value == "":
            return None  # set but empty: as if unset
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and len(text) < MIN_SIGNING_KEY_CHARS:
            # The key itself is never part of a message.
            raise ValueError(
                f"shorter than {MIN_SIGNING_KEY_CHARS} characters; make one with "
                "python -c 'import secrets; print(secrets.token_hex(32))'"
            )
        return value

    @property
    def effective_result_backend(self) -> str:
        """The Celery result backend: ``AUTOEXEC_RESULT_BACKEND``, else the Redis URL."""
        return self.result_backend or self.redis_url

    @property
    def block_module_names(self) -> list[str]:
        return _names(self.block_modules)

    @property
    def hook_names(self) -> list[str]:
        return _names(self.hooks)

    @property
    def notification_sink_names(self) -> list[str]:
        return _names(self.notification_sinks)


def _names(comma_separated: str) -> list[str]:
    return [name.strip() for name in comma_separated.split(",") if name.strip()]


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment (plus ``overrides``), naming any bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None


def settings_with(env: Mapping[str, str]) -> Settings:
    """Settings from the environment with the ``AUTOEXEC_*`` variables of ``env`` set over it
    (other names are ignored); the environment itself is left as it is."""
    overrides = {
        name.removeprefix(ENV_PREFIX).lower(): value
        for name, value in env.items()
        if name.startswith(ENV_PREFIX)
    }
    return load_settings(**overrides)


def get_settings() -> Settings:
    """Settings read from the environment now (not cached): for edges that run before, or
    outside, any runtime (migrations, the dead-letter queue's name). A running process's
    settings are its runtime's."""
    return load_settings()
