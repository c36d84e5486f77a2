"""The ``autoexec`` command without services: input parsing, ``blocks`` and ``run --dry-run``
(the reference interpreter), through click's test runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from autoexec.cli.commands import main, parse_inputs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

DIVIDE_BY_ZERO = {
    "name": "divide by zero",
    "nodes": [
        {
            "id": "divide",
            "block_id": "calculator",
            "input_default": {"operation": "divide", "a": 1, "b": 0},
        },
        {"id": "out", "block_id": "agent_output", "input_default": {"name": "quotient"}},
    ],
    "links": [
        {"source_id": "divide", "source_name": "result", "sink_id": "out", "sink_name": "value"}
    ],
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def printed_outputs(stdout: str) -> tuple[str, dict[str, list[Any]]]:
    """The status line and the outputs that ``autoexec run`` prints on stdout."""
    status_line, _, outputs = stdout.partition("\n")
    return status_line, json.loads(outputs)


# --- parse_inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("x=1", 1),
        ("x=-2.5", -2.5),
        ("x=true", True),
        ("x=null", None),
        ("x=[1, 2, 3]", [1, 2, 3]),
        ('x={"a": {"b": 1}}', {"a": {"b": 1}}),
        ('x="quoted"', "quoted"),
    ],
)
def test_a_value_that_parses_as_json_is_taken_as_json(pair: str, expected: Any) -> None:
    assert parse_inputs((pair,)) == {"x": expected}


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("name=Ada", "Ada"),
        ("name=hello world", "hello world"),
        ("name=", ""),
        ("name=a=b", "a=b"),
        ("name=[1, 2", "[1, 2"),
    ],
)
def test_any_other_value_is_taken_as_text(pair: str, expected: str) -> None:
    assert parse_inputs((pair,)) == {"name": expected}


def test_several_pairs_make_one_dict_and_a_later_pair_wins() -> None:
    assert parse_inputs(("a=1", "b=two", "a=3")) == {"a": 3, "b": "two"}


@pytest.mark.parametrize("pair", ["x", "=1", ""])
def test_a_pair_without_a_name_or_equals_sign_is_a_bad_parameter(pair: str) -> None:
    with pytest.raises(click.BadParameter, match="is not of the form name=value"):
        parse_inputs((pair,))


def test_a_bad_pair_on_the_command_line_is_a_usage_error() -> None:
    result = invoke("run", str(EXAMPLES / "hello.json"), "--input", "x", "--dry-run")
    assert result.exit_code == 2
    assert "'x' is not of the form name=value" in result.stderr


# --- autoexec blocks ------------------------------------------------------------------------


def test_blocks_lists_the_calculator_with_its_pins() -> None:
    result = invoke("blocks")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("calculator: "))
    # Required inputs are starred; every block has the error output.
    assert lines[index + 1].split() == [
        "inputs:", "a*,", "b*,", "operation*,", "round_result",
        "outputs:", "error,", "result",
    ]  # fmt: skip


def test_blocks_lists_every_built_in_block() -> None:
    listed = {line.split(":")[0] for line in invoke("blocks").stdout.splitlines()}
    assert {
        "agent_input", "agent_output", "calculator", "condition", "create_dict", "create_list",
        "fill_text_template", "find_in_dict", "print", "step_through_items", "store_value", "wait",
    } <= listed  # fmt: skip


# --- autoexec run --dry-run -----------------------------------------------------------------


def test_dry_run_of_hello_prints_its_outputs_and_exits_0() -> None:
    result = invoke("run", str(EXAMPLES / "hello.json"), "--input", "x=1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert printed_outputs(result.stdout) == (
        "status: COMPLETED",
        {"sum": [2], "message": ["Hello! 1 + 1 = 2"]},
    )


def test_dry_run_uses_an_input_default_when_the_input_is_not_given() -> None:
    result = invoke("run", str(EXAMPLES / "hello.json"), "--dry-run")
    assert result.exit_code == 0, result.output
    assert printed_outputs(result.stdout)[1] == {"sum": [42], "message": ["Hello! 41 + 1 = 42"]}


@pytest.mark.parametrize(
    ("example", "inputs", "outputs"),
    [
        ("iterate.json", [], {"squares": [1, 4, 9, 16]}),
        ("iterate.json", ["numbers=[1, 2, 3, 4, 5]"], {"squares": [1, 4, 9, 16, 25]}),
        ("count_loop.json", [], {"steps": [0, 1, 2], "final": [3]}),
        ("count_loop.json", ["start=2", "limit=6"], {"steps": [2, 3, 4, 5], "final": [6]}),
        ("count_loop.json", ["start=7", "limit=6"], {"final": [7]}),
        (
            "handle_error.json",
            [],
            {"problem": ["division by zero in divide(1.0, 0.0): give b a value other than 0"]},
        ),
        ("handle_error.json", ["b=4"], {"quotient": [0.25]}),
    ],
)
def test_dry_run_of_the_examples(example: str, inputs: list[str], outputs: dict[str, Any]) -> None:
    args = [arg for pair in inputs for arg in ("--input", pair)]
    result = invoke("run", str(EXAMPLES / example), *args, "--dry-run")
    assert result.exit_code == 0, result.output
    assert printed_outputs(result.stdout) == ("status: COMPLETED", outputs)


def test_dry_run_of_a_failing_graph_exits_non_zero_and_prints_the_error(tmp_path: Path) -> None:
    graph = tmp_path / "divide_by_zero.json"
    graph.write_text(json.dumps(DIVIDE_BY_ZERO))
    result = invoke("run", str(graph), "--dry-run")
    assert result.exit_code == 1
    assert printed_outputs(result.stdout) == ("status: FAILED", {})
    assert "error: division by zero" in result.stderr


def test_dry_run_of_an_invalid_graph_names_the_problem(tmp_path: Path) -> None:
    graph = tmp_path / "unknown_block.json"
    graph.write_text(json.dumps({"nodes": [{"id": "n", "block_id": "no_such_block"}]}))
    result = invoke("run", str(graph), "--dry-run")
    assert result.exit_code != 0
    assert "unknown block 'no_such_block'" in str(result.exception)


# --- reconcile --------------------------------------------------------------------------------


def test_reconcile_needs_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOEXEC_BROKER_URL", raising=False)
    result = invoke("reconcile", "--older-than", "0")
    assert result.exit_code == 2
    assert "AUTOEXEC_BROKER_URL" in result.output


def test_reconcile_refuses_a_negative_age() -> None:
    result = invoke("reconcile", "--older-than", "-1")
    assert result.exit_code == 2
    assert "--older-than" in result.output


# --- credits options ----------------------------------------------------------------------------


def test_dry_run_refuses_a_budget() -> None:
    result = invoke("run", str(EXAMPLES / "hello.json"), "--dry-run", "--budget", "5")
    assert result.exit_code == 2
    assert "Error: --budget limits a real run's credits; --dry-run charges nothing" in (
        result.output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "g.json", "--budget", "-1"], "'--budget': -1 is not in the range x>=0."),
        (["run", "g.json", "--budget", "1.5"], "'--budget': '1.5' is not a valid integer"),
        (["rerun", "e1", "--budget", "-1"], "'--budget': -1 is not in the range x>=0."),
        (["credits", "top-up", "0"], "'AMOUNT': 0 is not in the range x>=1."),
        (["credits", "top-up", "abc"], "'AMOUNT': 'abc' is not a valid integer"),
        (["credits", "history", "--limit", "0"], "'--limit': 0 is not in the range x>=1."),
    ],
)
def test_credit_amounts_are_whole_numbers(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert f"Error: Invalid value for {message}" in result.output
