"""docker/docker-compose.yml runs the whole stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker" / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    result: dict[str, Any] = compose["services"]
    return result


def command_of(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


@pytest.mark.parametrize(
    "name", ["rabbitmq", "redis", "postgres", "migrate", "worker", "beat", "flower"]
)
def test_service_exists(services: dict[str, Any], name: str) -> None:
    assert name in services


def test_worker_consumes_both_queues(services: dict[str, Any]) -> None:
    command = command_of(services["worker"])
    assert "celery -A autoexec worker" in command
    assert "autoexec.graphs,autoexec.nodes" in command


@pytest.mark.parametrize(
    ("name", "expected"),
    [("beat", "celery -A autoexec beat"), ("flower", "celery -A autoexec flower")],
)
def test_beat_and_flower_commands(services: dict[str, Any], name: str, expected: str) -> None:
    assert expected in command_of(services[name])


def test_worker_waits_for_migrations(services: dict[str, Any]) -> None:
    assert command_of(services["migrate"]) == "autoexec db upgrade"
    assert "migrate" in services["worker"]["depends_on"]


@pytest.mark.parametrize("name", ["migrate", "worker", "beat", "flower"])
def test_autoexec_services_point_at_the_other_services(services: dict[str, Any], name: str) -> None:
    env = services[name]["environment"]
    assert "@rabbitmq:5672" in env["AUTOEXEC_BROKER_URL"]
    assert env["AUTOEXEC_REDIS_URL"].startswith("redis://redis:6379")
    assert "@postgres:5432/autoexec" in env["AUTOEXEC_DATABASE_URL"]


def test_postgres_trusts_local_connections(services: dict[str, Any]) -> None:
    env = services["postgres"]["environment"]
    assert env["POSTGRES_HOST_AUTH_METHOD"] == "trust"
    assert env["POSTGRES_DB"] == "autoexec"


def test_rabbitmq_has_management_ui(services: dict[str, Any]) -> None:
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["image"].startswith("rabbitmq:3-management")
    assert {"5672:5672", "15672:15672"} <= set(rabbitmq["ports"])


def test_worker_hands_running_nodes_back_on_docker_stop(services: dict[str, Any]) -> None:
    worker = services["worker"]
    # SIGTERM becomes Celery's cold shutdown, soft first (AUTOEXEC_WORKER_SHUTDOWN_TIMEOUT_SECONDS)
    assert worker["environment"]["REMAP_SIGTERM"] == "SIGQUIT"
    assert worker["stop_grace_period"] == "40s"  # longer than the 25 s soft shutdown
