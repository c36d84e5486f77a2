"""The ``autoexec`` command."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from autoexec.errors import AutoexecError
from autoexec.statuses import GRAPH_STATUSES

if TYPE_CHECKING:
    from autoexec import api

DEFAULT_USER = "local"
EXIT_FAILED = 1
EXIT_USAGE = 2


def parse_inputs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON is taken as JSON, else as text."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(
                f"{pair!r} is not of the form name=value", param_hint="--input"
            )
        try:
            inputs[name] = json.loads(raw)
        except json.JSONDecodeError:
            inputs[name] = raw
    return inputs


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


F = TypeVar("F", bound=Callable[..., Any])


def _user_option(function: F) -> F:
    option = click.option(
        "--user",
        "user_id",
        default=lambda: os.environ.get("AUTOEXEC_USER", DEFAULT_USER),
        show_default="$AUTOEXEC_USER or local",
        help="The user the graph runs for.",
    )
    return option(function)


@click.group()
@click.version_option(package_name="autoexec")
def main() -> None:
    """autoexec: run agent workflow graphs on Celery."""


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--input", "-i", "pairs", multiple=True, help="A graph input, name=value.")
@_user_option
@click.option("--dry-run", is_flag=True, help="Run in-process on the reference interpreter.")
@click.option(
    "--embedded/--cluster",
    default=None,
    help="Force the in-process stack, or the configured services (default: embedded unless "
    "AUTOEXEC_BROKER_URL is set).",
)
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait for the end.")
def run(
    file: Path,
    pairs: tuple[str, ...],
    user_id: str,
    dry_run: bool,
    embedded: bool | None,
    timeout: float,
) -> None:
    """Save FILE (a JSON or YAML graph), execute it, show progress and print its outputs."""
    inputs = parse_inputs(pairs)
    if dry_run:
        _dry_run(file, inputs, user_id)
        return
    stack: AbstractContextManager[None] = nullcontext()
    if _select_stack(embedded):
        from autoexec.embedded import embedded_worker

        stack = embedded_worker()
    with stack:
        status = _run_and_show(file, inputs, user_id, timeout)
    sys.exit(0 if status == "COMPLETED" else EXIT_FAILED)


def _select_stack(embedded: bool | None = None) -> bool:
    """Use the embedded stack when asked, or when no broker is configured; True if embedded."""
    if embedded is None:
        embedded = "AUTOEXEC_BROKER_URL" not in os.environ
    if embedded:
        from autoexec.embedded import configure_embedded
        from autoexec.settings import get_settings
        from autoexec.store.migrate import upgrade_database

        configure_embedded()
        upgrade_database(get_settings().database_url)
    return embedded


def _dry_run(file: Path, inputs: dict[str, Any], user_id: str) -> None:
    from autoexec.blocks.registry import get_registry
    from autoexec.engine.submission import RunRequest, validate_request
    from autoexec.graph import Graph, load_definition, validate_graph
    from autoexec.reference import run_reference

    definition = load_definition(file)
    registry = get_registry()
    validate_graph(definition, registry)
    graph = Graph.model_validate(
        {
            **definition.model_dump(),
            "id": definition.id or "dry-run",
            "version": 1,
            "user_id": user_id,
        }
    )
    validate_request(graph, RunRequest(graph.id, user_id, inputs))
    result = run_reference(graph, registry.get, inputs)
    click.echo(f"status: {result.status.value}")
    if result.error:
        click.echo(f"error: {result.error}", err=True)
    click.echo(_dump(result.outputs))
    sys.exit(0 if result.status.value == "COMPLETED" else EXIT_FAILED)


def _run_and_show(file: Path, inputs: dict[str, Any], user_id: str, timeout: float) -> str:
    from autoexec import api
    from autoexec.graph import load_definition

    graph_id, version = api.save_graph(load_definition(file), user_id)
    graph_exec_id = api.execute_graph(graph_id, user_id, inputs, graph_version=version)
    click.echo(f"graph {graph_id} v{version}: execution {graph_exec_id}", err=True)
    return follow_and_show(graph_exec_id, user_id, timeout)


def follow_and_show(graph_exec_id: str, user_id: str, timeout: float) -> str:
    """Show progress until the run ends, then print its status, error, outputs and the nodes
    that never ran; returns the final status."""
    from autoexec.progress import follow

    view = follow(graph_exec_id, user_id, timeout)
    show_end(view)
    return view.status.value


def show_end(view: api.ExecutionView) -> None:
    """The end of a run: status and outputs on stdout, the error and what never ran on stderr."""
    from autoexec.views import never_ran_lines

    click.echo(f"status: {view.status.value}")
    if view.error:
        click.echo(f"error: {view.error}", err=True)
    for line in never_ran_lines(view):
        click.echo(line, err=True)
    click.echo(_dump(view.outputs))


@main.command()
@click.argument("graph_exec_id")
@_user_option
@click.option("--json", "as_json", is_flag=True, help="Print the whole execution as JSON.")
def status(graph_exec_id: str, user_id: str, as_json: bool) -> None:
    """Show an execution: status, times, node counts, outputs, errors, nodes that never ran."""
    from autoexec import api
    from autoexec.views import execution_summary

    _select_stack()
    view = api.get_execution(graph_exec_id, user_id)
    if as_json:
        click.echo(_dump(view.model_dump(mode="json")))
        return
    for line in execution_summary(view, datetime.now(UTC)):
        click.echo(line)


class StatusChoice(click.Choice[str]):
    """A graph execution status, in any case; shown and returned in capitals."""

    def __init__(self) -> None:
        super().__init__([status.value for status in GRAPH_STATUSES])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        wanted = str(value).upper()
        if wanted not in self.choices:
            self.fail(f"{value!r} is not one of {', '.join(map(str, self.choices))}", param, ctx)
        return wanted


@main.command()
@click.option(
    "--status",
    "status_name",
    type=StatusChoice(),
    help="Only executions with this status.",
)
@click.option("--graph", "graph_id", help="Only executions of this graph id.")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Show at most this many executions.",
)
@_user_option
def executions(status_name: str | None, graph_id: str | None, limit: int, user_id: str) -> None:
    """List the user's executions, newest first."""
    from autoexec import api
    from autoexec.views import executions_table

    _select_stack()
    rows = api.list_executions(user_id, status_name, graph_id, limit)
    if not rows:
        click.echo("no executions", err=True)
        return
    for line in executions_table(rows, datetime.now(UTC)):
        click.echo(line)


EMBEDDED_DETACH = (
    "--detach needs a cluster (set AUTOEXEC_BROKER_URL): on the embedded stack the run "
    "cannot outlive this command"
)


@main.command()
@click.argument("graph_exec_id")
@_user_option
@click.option("--detach", is_flag=True, help="Print the new execution id and return at once.")
@click.option("--timeout", default=3600.0, show_default=True, help="Seconds to wait for the end.")
def rerun(graph_exec_id: str, user_id: str, detach: bool, timeout: float) -> None:
    """Run an execution's graph version again with the same inputs, masks and skips."""
    from autoexec import api

    embedded = _select_stack()
    if detach and embedded:
        raise click.UsageError(EMBEDDED_DETACH)
    with _worker_for(embedded):
        new_id = api.rerun(graph_exec_id, user_id)
        click.echo(f"rerun of {graph_exec_id}: execution {new_id}", err=True)
        if detach:
            click.echo(new_id)
            return
        status = follow_and_show(new_id, user_id, timeout)
    sys.exit(0 if status == "COMPLETED" else EXIT_FAILED)


def _worker_for(embedded: bool) -> AbstractContextManager[None]:
    """The in-process worker on the embedded stack; nothing on a cluster."""
    if not embedded:
        return nullcontext()
    from autoexec.embedded import embedded_worker

    return embedded_worker()


@main.command()
@_user_option
def graphs(user_id: str) -> None:
    """List the user's graphs (latest versions)."""
    from autoexec import api

    _select_stack()
    for graph in api.list_graphs(user_id):
        click.echo(f"{graph['id']}  v{graph['version']}  {graph['name']}  ({graph['nodes']} nodes)")


@main.command()
@click.argument("graph_exec_id")
@_user_option
def cancel(graph_exec_id: str, user_id: str) -> None:
    """Cancel an execution."""
    from autoexec import api

    _select_stack()
    click.echo(api.cancel(graph_exec_id, user_id))


@main.command()
def blocks() -> None:
    """List the registered blocks with their pins."""
    from autoexec.blocks.registry import get_registry

    for block in get_registry().all():
        info = block.describe()
        required = set(info["required_inputs"])
        pins = ", ".join(f"{p}*" if p in required else p for p in info["inputs"])
        click.echo(f"{info['id']}: {info['description']}")
        click.echo(f"    inputs: {pins}   outputs: {', '.join(info['outputs'])}")


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
def upgrade() -> None:
    """Create the database if needed and migrate it to the latest schema."""
    from autoexec.store.migrate import upgrade_database

    upgrade_database()
    click.echo("database is up to date")


def entrypoint() -> None:
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from sqlalchemy.exc import OperationalError as DatabaseError

    try:
        main(standalone_mode=True)
    except AutoexecError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except (DatabaseError, RedisConnectionError, BrokerError, ConnectionError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        click.echo(f"error: cannot reach a service ({type(exc).__name__}): {reason}", err=True)
        click.echo("check AUTOEXEC_DATABASE_URL, AUTOEXEC_REDIS_URL, AUTOEXEC_BROKER_URL", err=True)
        sys.exit(EXIT_USAGE)
