"""Settings come from ``AUTOEXEC_*`` variables; a bad value names its variable."""

from __future__ import annotations

import os

import pytest

from autoexec.errors import ConfigurationError
from autoexec.settings import ENV_PREFIX, Settings, load_settings, settings_with


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the defaults, whatever the developer's shell exports."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"{ENV_PREFIX}{name.upper()}", raising=False)


def test_defaults() -> None:
    settings = load_settings()
    assert settings.broker_url == "amqp://guest:guest@127.0.0.1:5672//"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.database_url.startswith("postgresql")
    assert settings.graph_queue == "autoexec.graphs"
    assert settings.node_queue == "autoexec.nodes"
    assert settings.max_concurrent_runs_per_user == 10
    assert settings.billing_enabled is False
    assert settings.block_module_names == []


def test_result_backend_defaults_to_redis() -> None:
    assert load_settings().effective_result_backend == "redis://127.0.0.1:6379/0"
    assert load_settings(result_backend="redis://other:6379/1").effective_result_backend == (
        "redis://other:6379/1"
    )


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER", "3")
    monkeypatch.setenv("AUTOEXEC_BROKER_URL", "amqp://u:p@rabbit:5672/vhost")
    monkeypatch.setenv("AUTOEXEC_BLOCK_MODULES", "pkg.mod, other.mod,")

    settings = load_settings()

    assert settings.max_concurrent_runs_per_user == 3
    assert settings.broker_url == "amqp://u:p@rabbit:5672/vhost"
    assert settings.block_module_names == ["pkg.mod", "other.mod"]


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.max_concurrent_runs_per_user = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER", "abc"),
        ("AUTOEXEC_MAX_CONCURRENT_RUNS_PER_USER", "0"),
        ("AUTOEXEC_BROKER_URL", "nonsense"),
        ("AUTOEXEC_DATABASE_URL", "localhost/autoexec"),
        ("AUTOEXEC_GRAPH_LOCK_TTL_SECONDS", "-1"),
        ("AUTOEXEC_BILLING_ENABLED", "perhaps"),
        ("AUTOEXEC_LOG_FORMAT", "xml"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()

    assert variable in str(excinfo.value)


def test_node_execution_limit_defaults_high_and_refuses_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().max_node_executions_per_run == 100_000
    monkeypatch.setenv("AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN", "0")
    with pytest.raises(ConfigurationError, match="AUTOEXEC_MAX_NODE_EXECUTIONS_PER_RUN"):
        load_settings()


def test_worker_losses_and_node_timeout_defaults_and_refusals(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert settings.max_worker_losses == 3
    # Under RabbitMQ's default consumer timeout (30 minutes), which a longer task would trip.
    assert 0 < settings.node_timeout_seconds < 30 * 60
    monkeypatch.setenv("AUTOEXEC_MAX_WORKER_LOSSES", "0")
    with pytest.raises(ConfigurationError, match="AUTOEXEC_MAX_WORKER_LOSSES"):
        load_settings()
    monkeypatch.setenv("AUTOEXEC_MAX_WORKER_LOSSES", "3")
    monkeypatch.setenv("AUTOEXEC_NODE_TIMEOUT_SECONDS", "-1")
    with pytest.raises(ConfigurationError, match="AUTOEXEC_NODE_TIMEOUT_SECONDS"):
        load_settings()


def test_worker_shutdown_timeout_is_celerys_soft_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoexec.celery_app import celery_config

    assert celery_config(load_settings())["worker_soft_shutdown_timeout"] == 25.0
    monkeypatch.setenv("AUTOEXEC_WORKER_SHUTDOWN_TIMEOUT_SECONDS", "3")
    assert celery_config(load_settings())["worker_soft_shutdown_timeout"] == 3.0


def test_reconciler_defaults_and_refuses_a_negative_age(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.reconcile_after_seconds == 300
    assert settings.reconcile_interval_seconds == 60
    monkeypatch.setenv("AUTOEXEC_RECONCILE_AFTER_SECONDS", "0")
    assert load_settings().reconcile_after_seconds == 0
    monkeypatch.setenv("AUTOEXEC_RECONCILE_AFTER_SECONDS", "-1")
    with pytest.raises(ConfigurationError, match="AUTOEXEC_RECONCILE_AFTER_SECONDS"):
        load_settings()


def test_reconcile_interval_must_be_positive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOEXEC_RECONCILE_INTERVAL_SECONDS", "0")
    with pytest.raises(ConfigurationError, match="AUTOEXEC_RECONCILE_INTERVAL_SECONDS"):
        load_settings()


def test_log_format_is_text_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().log_format == "text"
    monkeypatch.setenv("AUTOEXEC_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("AUTOEXEC_LOG_FORMAT", "JSON")
    with pytest.raises(ConfigurationError, match="AUTOEXEC_LOG_FORMAT: Input should be"):
        load_settings()


def test_settings_with_sets_variables_over_the_environment_without_writing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTOEXEC_NODE_QUEUE", "from.environment")
    monkeypatch.setenv("AUTOEXEC_GRAPH_QUEUE", "graphs.from.environment")
    settings = settings_with({"AUTOEXEC_NODE_QUEUE": "set.over", "PATH": "not a setting"})
    assert (settings.node_queue, settings.graph_queue) == ("set.over", "graphs.from.environment")
    assert os.environ["AUTOEXEC_NODE_QUEUE"] == "from.environment"


def test_settings_with_names_a_bad_variable() -> None:
    with pytest.raises(ConfigurationError, match="AUTOEXEC_METRICS_PORT"):
        settings_with({"AUTOEXEC_METRICS_PORT": "abc"})
