"""The ``autoexec`` command."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from autoexec.cli.run_inputs import load_input_file, pair_value
from autoexec.errors import AutoexecError, GraphWarning, InputValidationError, NotFoundError
from autoexec.statuses import GRAPH_STATUSES

if TYPE_CHECKING:
    from autoexec.api import ExecutionView
    from autoexec.blocks.registry import BlockRegistry
    from autoexec.cli.stack import Stack

DEFAULT_USER = "local"
DEFAULT_TIMEOUT_SECONDS = 3600.0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOST_CONTACT = 75  # EX_TEMPFAIL: the run may be fine, ask again later
EXIT_TIMEOUT = 124  # as timeout(1)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
RECONCILE_NEEDS_CLUSTER = (
    "reconcile resumes runs on a cluster's workers: set AUTOEXEC_BROKER_URL "
    "(and the database and Redis URLs) to the cluster's"
)


def parse_inputs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``k=v`` pairs; a value that parses as JSON is taken as JSON, else as text; ``k=@path``
    takes the content of the file at ``path`` by the same rule."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(
                f"{pair!r} is not of the form name=value", param_hint="--input"
            )
        try:
            inputs[name] = pair_value(name, raw)
        except InputValidationError as exc:
            raise click.BadParameter(str(exc), param_hint="--input") from None
    return inputs


def _inputs_option(ctx: click.Context, param: click.Parameter, pairs: tuple[str, ...]) -> Any:
    return parse_inputs(pairs)


def _input_file_option(ctx: click.Context, param: click.Parameter, path: Path | None) -> Any:
    if path is None:
        return {}
    try:
        return load_input_file(path)
    except InputValidationError as exc:
        raise click.BadParameter(str(exc), param_hint="--input-file") from None


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


_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help=f"Seconds to follow the run (default {DEFAULT_TIMEOUT_SECONDS:.0f}).",
)

_budget_option = click.option(
    "--budget",
    "credit_budget",
    type=click.IntRange(min=0),
    help="The most credits the run may spend; a node that would take it past fails and the "
    "run ends FAILED (needs AUTOEXEC_BILLING_ENABLED=true).",
)


@click.group()
@click.version_option(package_name="autoexec")
def main() -> None:
    """autoexec: run agent workflow graphs on Celery."""
    from autoexec.logs import CLI_QUIET_LOGGERS, use_log_format_in_cli
    from autoexec.settings import load_settings

    for name in CLI_QUIET_LOGGERS:  # kept from Python's last-resort handler in text
        logging.getLogger(name).addHandler(logging.NullHandler())
    use_log_format_in_cli(load_settings())


_new_option = click.option(
    "--new",
    "as_new",
    is_flag=True,
    help="Save FILE as a new graph even if one of yours has its name (default: a new version "
    "of that graph, said on stderr).",
)


@main.command()
@click.argument("target", metavar="FILE|GRAPH_ID")
@click.option(
    "--input",
    "-i",
    "pairs",
    multiple=True,
    callback=_inputs_option,
    help="A graph input, name=value; name=@path takes the content of a file.",
)
@click.option(
    "--input-file",
    "file_inputs",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    callback=_input_file_option,
    help="A JSON or YAML mapping of graph inputs; --input values override it.",
)
@click.option(
    "--version",
    "graph_version",
    type=click.IntRange(min=1),
    help="The version of a saved GRAPH_ID to run (default: its latest).",
)
@_user_option
@click.option("--dry-run", is_flag=True, help="Run in-process on the reference interpreter.")
@click.option(
    "--embedded/--cluster",
    default=None,
    help="Force the in-process stack, or the configured services (default: embedded unless "
    "AUTOEXEC_BROKER_URL is set).",
)
@click.option("--detach", is_flag=True, help="Print the execution id and return (cluster only).")
@_new_option
@click.option(
    "--max-run-seconds",
    type=click.FloatRange(min=0, min_open=True),
    help="End the run FAILED once it has been RUNNING this long (default: no deadline).",
)
@_budget_option
@_timeout_option
def run(
    target: str,
    pairs: dict[str, Any],
    file_inputs: dict[str, Any],
    graph_version: int | None,
    user_id: str,
    dry_run: bool,
    embedded: bool | None,
    detach: bool,
    as_new: bool,
    max_run_seconds: float | None,
    credit_budget: int | None,
    timeout: float | None,
) -> None:
    """Run FILE (a JSON or YAML graph, saved first) or the saved graph GRAPH_ID: show progress
    and print its outputs."""
    inputs = {**file_inputs, **pairs}
    graph_file = _graph_file(target, graph_version)
    _refuse_conflicting_options(graph_file, dry_run, detach, timeout, max_run_seconds)
    _refuse_new_without_saving(as_new, graph_file, dry_run)
    if dry_run and credit_budget is not None:
        raise click.UsageError("--budget limits a real run's credits; --dry-run charges nothing")
    if dry_run:
        _dry_run(Path(target), inputs, user_id)
        return
    if detach:
        _refuse_detach_in_this_process(embedded)
    from autoexec.cli.stack import stack_running_the_engine

    with stack_running_the_engine(embedded) as stack:
        graph_exec_id = _submit(
            stack,
            target,
            graph_file,
            graph_version,
            inputs,
            user_id,
            max_run_seconds,
            credit_budget,
            as_new,
        )
        if detach:
            click.echo(graph_exec_id)
            return
        code = _follow_and_report(graph_exec_id, user_id, timeout or DEFAULT_TIMEOUT_SECONDS, stack)
    sys.exit(code)


EMBEDDED_DETACH = (
    "--detach needs a cluster: on the embedded stack the run lives in this process "
    "and would stop with it (set AUTOEXEC_BROKER_URL, or pass --cluster; or start "
    "`autoexec serve` for this home in another terminal)"
)


def _refuse_detach_in_this_process(embedded: bool | None) -> None:
    """A detached run must live elsewhere: on a cluster, or in the process serving the
    embedded home (``autoexec serve``, or another ``autoexec run``)."""
    stack = _select_stack(embedded)
    if stack.embedded and not stack.engine_elsewhere:
        raise click.UsageError(EMBEDDED_DETACH)


def _graph_file(target: str, graph_version: int | None) -> Path | None:
    """``target`` as a graph file if such a file exists, else None (a saved graph id)."""
    path = Path(target)
    if not path.is_file():
        return None
    if graph_version is not None:
        raise click.UsageError(
            f"--version selects a version of a saved graph, but {target!r} is a file: "
            "run its graph id (see `autoexec graphs`) with --version"
        )
    return path


def _refuse_conflicting_options(
    graph_file: Path | None,
    dry_run: bool,
    detach: bool,
    timeout: float | None,
    max_run_seconds: float | None,
) -> None:
    if dry_run and max_run_seconds is not None:
        raise click.UsageError("--max-run-seconds limits a real run; --dry-run has no deadline")
    if dry_run and graph_file is None:
        raise click.UsageError("--dry-run runs a graph file: give the path of a JSON or YAML graph")
    if detach and dry_run:
        raise click.UsageError("--detach cannot be used with --dry-run, which runs in-process")
    if detach and timeout is not None:
        raise click.UsageError("--timeout limits following a run: it does nothing with --detach")


def _refuse_new_without_saving(as_new: bool, graph_file: Path | None, dry_run: bool) -> None:
    if as_new and dry_run:
        raise click.UsageError("--new saves the graph file as a new graph; --dry-run saves nothing")
    if as_new and graph_file is None:
        raise click.UsageError(
            "--new saves a graph file as a new graph: give the path of a JSON or YAML graph, "
            "not a saved graph id"
        )


def _registry() -> BlockRegistry:
    """The blocks the settings name, for commands that run no engine (no services needed)."""
    from autoexec.blocks.registry import load_registry
    from autoexec.settings import load_settings

    return load_registry(load_settings().block_module_names)


def _select_stack(embedded: bool | None = None) -> Stack:
    from autoexec.cli.stack import select_stack

    return select_stack(embedded)


def _dry_run(file: Path, inputs: dict[str, Any], user_id: str) -> None:
    from autoexec.engine.submission import RunRequest, validate_request
    from autoexec.graph import Graph, load_definition, validate_graph
    from autoexec.reference import run_reference
    from autoexec.settings import load_settings

    definition = load_definition(file)
    registry = _registry()
    validate_graph(definition, registry)
    graph = Graph.model_validate(
        {
            **definition.model_dump(),
            "id": definition.id or "dry-run",
            "version": 1,
            "user_id": user_id,
        }
    )
    max_input_bytes = load_settings().max_input_bytes
    validate_request(graph, RunRequest(graph.id, user_id, inputs), registry.get, max_input_bytes)
    result = run_reference(graph, registry.get, inputs)
    click.echo(f"status: {result.status.value}")
    if result.error:
        click.echo(f"error: {result.error}", err=True)
    click.echo(_dump(result.outputs))
    sys.exit(0 if result.status.value == "COMPLETED" else EXIT_FAILED)


def _submit(
    stack: Stack,
    target: str,
    graph_file: Path | None,
    graph_version: int | None,
    inputs: dict[str, Any],
    user_id: str,
    max_run_seconds: float | None,
    credit_budget: int | None,
    as_new: bool = False,
) -> str:
    """Save the graph file (or find the saved graph) and start an execution; returns its id."""
    if graph_file is not None:
        graph_id, graph_version = _save_graph_file(graph_file, user_id, as_new)
    else:
        graph_id, graph_version = _saved_graph(target, graph_version, user_id)
    graph_exec_id: str = stack.api.execute_graph(
        graph_id,
        user_id,
        inputs,
        graph_version=graph_version,
        max_run_seconds=max_run_seconds,
        credit_budget=credit_budget,
    )
    click.echo(f"graph {graph_id} v{graph_version}: execution {graph_exec_id}", err=True)
    return graph_exec_id


def _save_graph_file(graph_file: Path, user_id: str, as_new: bool = False) -> tuple[str, int]:
    """Save a graph file; what the save warns about (nodes that can never run, a version added
    to the graph of its name) goes to stderr once, as ``warning: ...``."""
    from autoexec import api
    from autoexec.graph import load_definition

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GraphWarning)
        saved = api.save_graph(load_definition(graph_file), user_id, new=as_new)
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    return saved


def _saved_graph(graph_id: str, graph_version: int | None, user_id: str) -> tuple[str, int]:
    from autoexec import api

    latest = {graph["id"]: graph["version"] for graph in api.list_graphs(user_id)}
    if graph_id not in latest:
        raise NotFoundError(
            f"{graph_id!r} is neither a graph file nor a graph id of user {user_id!r}: "
            "give the path of a JSON or YAML graph, or an id listed by `autoexec graphs`"
        )
    if graph_version is not None and graph_version > latest[graph_id]:
        raise NotFoundError(
            f"graph {graph_id!r} has no version {graph_version}: "
            f"its latest version is {latest[graph_id]}"
        )
    return graph_id, graph_version or latest[graph_id]


def _follow_and_report(graph_exec_id: str, user_id: str, timeout: float, stack: Stack) -> int:
    """Follow a submitted run to its end and show it; the exit code.

    Past submission a service error cannot mean that the run failed: it may go on unseen.
    """
    try:
        return _follow_or_stop(graph_exec_id, user_id, timeout, stack)
    except service_errors() as exc:
        click.echo(
            f"lost contact: the execution may still be running: autoexec status {graph_exec_id}",
            err=True,
        )
        click.echo(f"reason: {_service_error_reason(exc)}", err=True)
        return EXIT_LOST_CONTACT


def _follow_or_stop(graph_exec_id: str, user_id: str, timeout: float, stack: Stack) -> int:
    from autoexec.cli.progress import follow

    try:
        view = follow(graph_exec_id, user_id, timeout, stack.api)
    except KeyboardInterrupt:
        if stack.embedded:  # a second Ctrl-C must not leave the run half cancelled
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        return _stop_following(graph_exec_id, user_id, stack, EXIT_INTERRUPTED)
    except TimeoutError:
        click.echo(f"timeout: the run did not end within {timeout:g}s", err=True)
        return _stop_following(graph_exec_id, user_id, stack, EXIT_TIMEOUT)
    if stack.engine_here:
        view = _end_what_still_runs(view, user_id)
    return _show(view)


def _end_what_still_runs(view: ExecutionView, user_id: str) -> ExecutionView:
    """A run stopped by a limit may end while a node of it still runs; on the embedded stack
    that node's worker is this process, which exits now: the node ends TERMINATED."""
    if not any(n.status.value in ("QUEUED", "RUNNING") for n in view.node_executions):
        return view
    from autoexec import api
    from autoexec.embedded import end_node_executions

    end_node_executions(view.id, "the run ended; the embedded worker stopped with it")
    return api.get_execution(view.id, user_id)


def _stop_following(graph_exec_id: str, user_id: str, stack: Stack, code: int) -> int:
    """Ctrl-C or the timeout: a run that cannot outlive this process (embedded) is cancelled,
    another one goes on and the user is told how to find it."""
    from autoexec import api

    if stack.embedded:  # the run cannot outlive the engine of a terminal session
        stack.api.cancel(graph_exec_id, user_id)
    if stack.engine_here:
        from autoexec.embedded import end_node_executions

        end_node_executions(graph_exec_id)
    view = api.get_execution(graph_exec_id, user_id)
    if view.status.value == "TERMINATED" and stack.embedded:
        click.echo(f"cancelled: execution {graph_exec_id}", err=True)
    elif view.is_finished:
        return _show(view)
    else:
        click.echo(
            f"still {view.status.value} — autoexec status {graph_exec_id} / "
            f"autoexec cancel {graph_exec_id}",
            err=True,
        )
    return code


def _show(view: ExecutionView) -> int:
    """Print the status and outputs of an ended run (the error and what never ran on
    stderr); the exit code."""
    from autoexec.cli.views import credits_line, never_ran_lines
    from autoexec.tasks import get_engine

    click.echo(f"status: {view.status.value}")
    if view.error:
        click.echo(f"error: {view.error}", err=True)
    if get_engine().settings.billing_enabled:
        click.echo(f"credits: {credits_line(view.credits_spent, view.credit_budget)}", err=True)
    for line in never_ran_lines(view):
        click.echo(line, err=True)
    click.echo(_dump(view.outputs))
    return 0 if view.status.value == "COMPLETED" else EXIT_FAILED


@main.command()
@click.argument("graph_exec_id")
@_user_option
@click.option("--nodes", "all_rows", is_flag=True, help="List every node execution and output.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole execution as JSON.")
def status(graph_exec_id: str, user_id: str, all_rows: bool, as_json: bool) -> None:
    """Summarize an execution in at most ~40 lines: status, times, node counts, outputs,
    errors, nodes that never ran, then the node executions (failed first)."""
    from autoexec import api
    from autoexec.cli.views import OUTPUT_WIDTH, SUMMARY_ROWS, execution_json, execution_summary
    from autoexec.tasks import get_engine

    _select_stack()
    view = api.get_execution(graph_exec_id, user_id)
    if as_json:
        click.echo(execution_json(view))
        return
    metered = get_engine().settings.billing_enabled
    width = shutil.get_terminal_size((OUTPUT_WIDTH, 24)).columns
    rows = None if all_rows else SUMMARY_ROWS
    for line in execution_summary(view, datetime.now(UTC), width, metered, rows):
        click.echo(line)


@main.command()
@click.argument("graph_exec_id")
@_user_option
@_timeout_option
def watch(graph_exec_id: str, user_id: str, timeout: float | None) -> None:
    """Show an execution live until it ends: progress and the running and latest node
    executions (one line per event when stdout is not a terminal). Exit code 0 if it
    COMPLETED, else 1."""
    from autoexec.cli.progress import watch as watch_execution

    stack = _select_stack()
    try:
        board = watch_execution(graph_exec_id, user_id, sys.stdout, timeout, stack.api)
    except TimeoutError:
        click.echo(f"timeout: the run did not end within {timeout:g}s", err=True)
        sys.exit(EXIT_TIMEOUT)
    status = board.status.value if board.status else "UNKNOWN"
    click.echo(f"status: {status}")
    sys.exit(0 if status == "COMPLETED" else EXIT_FAILED)


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
    from autoexec.cli.views import executions_table

    _select_stack()
    rows = api.list_executions(user_id, status_name, graph_id, limit)
    if not rows:
        click.echo("no executions", err=True)
        return
    for line in executions_table(rows, datetime.now(UTC)):
        click.echo(line)


@main.command()
@click.argument("graph_exec_id")
@_user_option
@click.option("--detach", is_flag=True, help="Print the new execution id and return at once.")
@_budget_option
@_timeout_option
def rerun(
    graph_exec_id: str,
    user_id: str,
    detach: bool,
    credit_budget: int | None,
    timeout: float | None,
) -> None:
    """Run an execution's graph version again with the same inputs, masks, skips, deadline
    and credit budget (or --budget)."""
    _refuse_conflicting_options(None, False, detach, timeout, None)
    if detach:
        _refuse_detach_in_this_process(None)
    from autoexec.cli.stack import stack_running_the_engine

    with stack_running_the_engine() as stack:
        new_id = stack.api.rerun(graph_exec_id, user_id, credit_budget=credit_budget)
        click.echo(f"rerun of {graph_exec_id}: execution {new_id}", err=True)
        if detach:
            click.echo(new_id)
            return
        code = _follow_and_report(new_id, user_id, timeout or DEFAULT_TIMEOUT_SECONDS, stack)
    sys.exit(code)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_new_option
@_user_option
def save(file: Path, as_new: bool, user_id: str) -> None:
    """Save FILE (a JSON or YAML graph) without running it; print ``GRAPH_ID vVERSION``."""
    _select_stack()
    graph_id, version = _save_graph_file(file, user_id, as_new)
    click.echo(f"{graph_id} v{version}")


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

    api = _select_stack().api
    click.echo(api.cancel(graph_exec_id, user_id))


@main.command()
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0),
    help="Resume what made no progress for this many seconds "
    "[default: AUTOEXEC_RECONCILE_AFTER_SECONDS, 300].",
)
@click.option("--json", "as_json", is_flag=True, help="Print what the pass did as JSON.")
def reconcile(older_than: float | None, as_json: bool) -> None:
    """One reconciler pass: resume executions that made no progress, end what ended runs left."""
    if "AUTOEXEC_BROKER_URL" not in os.environ:
        raise click.UsageError(RECONCILE_NEEDS_CLUSTER)
    from autoexec.engine.reconciler import reconcile as reconcile_once
    from autoexec.tasks import get_engine

    engine = get_engine()
    report = reconcile_once(
        engine, engine.settings.reconcile_after_seconds if older_than is None else older_than
    )
    click.echo(_dump(report.as_dict()) if as_json else "\n".join(report.lines()))


@main.command()
def blocks() -> None:
    """List the registered blocks with their pins."""
    for block in _registry().all():
        info = block.describe()
        required = set(info["required_inputs"])
        pins = ", ".join(f"{p}*" if p in required else p for p in info["inputs"])
        click.echo(f"{info['id']}: {info['description']}")
        click.echo(f"    inputs: {pins}   outputs: {', '.join(info['outputs'])}")


@main.group()
def review() -> None:
    """Human reviews: list the pending ones, approve or reject one."""


@review.command("list")
@_user_option
@click.option("--json", "as_json", is_flag=True, help="Print the reviews as JSON.")
def list_reviews(user_id: str, as_json: bool) -> None:
    """The user's pending reviews, oldest first."""
    from autoexec import api

    _select_stack()
    reviews = api.list_reviews(user_id)
    if as_json:
        click.echo(_dump([r.model_dump(mode="json") for r in reviews]))
        return
    if not reviews:
        click.echo("no pending reviews")
    for pending in reviews:
        click.echo(
            f"{pending.id}  run {pending.graph_exec_id}  {pending.message or '(no message)'}"
        )
        click.echo(f"    data: {json.dumps(pending.data, default=str)}")


@review.command()
@click.argument("review_id")
@_user_option
@click.option("--data", "data_json", help="JSON to go on with instead of the data as reviewed.")
def approve(review_id: str, user_id: str, data_json: str | None) -> None:
    """Approve a pending review: its node yields approved_data and the run goes on."""
    data = None
    if data_json is not None:
        try:
            data = json.loads(data_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--data") from None
    stack = _select_stack()
    decided = stack.api.approve(review_id, user_id, data=data)
    click.echo(f"review {decided.id} approved; run {decided.graph_exec_id} goes on")
    _say_if_no_engine_runs(stack)


@review.command()
@click.argument("review_id")
@_user_option
@click.option("--reason", required=True, help="Why the data is rejected.")
def reject(review_id: str, user_id: str, reason: str) -> None:
    """Reject a pending review: its node yields rejected (the reason) and the run goes on."""
    stack = _select_stack()
    decided = stack.api.reject(review_id, user_id, reason)
    click.echo(f"review {decided.id} rejected; run {decided.graph_exec_id} goes on")
    _say_if_no_engine_runs(stack)


def _say_if_no_engine_runs(stack: Stack) -> None:
    if stack.embedded and not stack.engine_elsewhere:
        click.echo(
            "no engine runs for this home now: the run goes on when one starts "
            "(autoexec serve, or autoexec run)",
            err=True,
        )


@main.command()
def serve() -> None:
    """Run the engine of the embedded stack ($AUTOEXEC_HOME) until Ctrl-C: runs started,
    approved or cancelled from other terminals run here."""
    from autoexec.cli.stack import stack_running_the_engine

    with stack_running_the_engine(embedded=True, wait_for_others=False) as stack:
        if not stack.engine_here:
            raise click.ClickException(f"another process runs the engine of {stack.home}")
        click.echo(f"serving {stack.home} (Ctrl-C stops)", err=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


@main.group()
def credits() -> None:
    """Credits (metering is on with AUTOEXEC_BILLING_ENABLED=true): balance, top-ups, history."""


@credits.command("show")
@_user_option
def show_credits(user_id: str) -> None:
    """The user's credit balance."""
    from autoexec import api

    _select_stack()
    click.echo(f"balance: {api.get_balance(user_id)} credits")


@credits.command("top-up")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--key", help="An idempotency key: a top-up repeated with the same key adds nothing.")
@_user_option
def top_up(amount: int, key: str | None, user_id: str) -> None:
    """Add AMOUNT credits to the user's balance; print the balance."""

    api = _select_stack().api
    click.echo(f"balance: {api.top_up(user_id, amount, key)} credits")


@credits.command("history")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Show at most this many transactions.",
)
@_user_option
@click.option("--json", "as_json", is_flag=True, help="Print the transactions as JSON.")
def credit_history(limit: int, user_id: str, as_json: bool) -> None:
    """The user's credit transactions, newest first."""
    from autoexec import api
    from autoexec.cli.views import credit_history_table

    _select_stack()
    rows = api.transactions(user_id, limit)
    if as_json:
        click.echo(_dump([row.model_dump(mode="json") for row in rows]))
    elif not rows:
        click.echo("no credit transactions", err=True)
    else:
        for line in credit_history_table(rows):
            click.echo(line)


@main.group()
def db() -> None:
    """Database schema commands."""


@db.command()
def upgrade() -> None:
    """Create the database if needed and migrate it to the latest schema."""
    from autoexec.store.migrate import upgrade_database

    upgrade_database()
    click.echo("database is up to date")


def service_errors() -> tuple[type[Exception], ...]:
    """The errors that mean a service (database, Redis, broker) did not answer."""
    from sqlalchemy.exc import OperationalError as DatabaseError

    from autoexec.celery_app import BrokerError
    from autoexec.coordination import UNREACHABLE

    return (DatabaseError, *UNREACHABLE, BrokerError, ConnectionError)


def _service_error_reason(exc: Exception) -> str:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return f"cannot reach a service ({type(exc).__name__}): {reason}"


def entrypoint() -> None:
    try:
        main(standalone_mode=True)
    except (SystemExit, KeyboardInterrupt):
        raise  # before service_errors(), which imports the Celery app (a second of start-up)
    except AutoexecError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    except service_errors() as exc:
        click.echo(f"error: {_service_error_reason(exc)}", err=True)
        click.echo("check AUTOEXEC_DATABASE_URL, AUTOEXEC_REDIS_URL, AUTOEXEC_BROKER_URL", err=True)
        sys.exit(EXIT_USAGE)
