"""Numbers JSON cannot hold, through ``autoexec run`` on the embedded stack (issue 22, findings
2 and 3): a non-finite input is refused before anything is saved or run, and a block output
that overflows to inf fails the run (also with --dry-run) instead of a COMPLETED null."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_cli_embedded import EXAMPLES, autoexec

HELLO = EXAMPLES / "hello.json"
NOT_FINITE = "it holds a number that is not finite (inf, -inf or NaN), which JSON cannot hold"
MULTIPLY = {
    "name": "multiply",
    "nodes": [
        {"id": "a", "block_id": "agent_input", "input_default": {"name": "a"}},
        {"id": "b", "block_id": "agent_input", "input_default": {"name": "b"}},
        {"id": "calc", "block_id": "calculator", "input_default": {"operation": "multiply"}},
        {"id": "out", "block_id": "agent_output", "input_default": {"name": "product"}},
    ],
    "links": [
        {"source_id": "a", "source_name": "result", "sink_id": "calc", "sink_name": "a"},
        {"source_id": "b", "source_name": "result", "sink_id": "calc", "sink_name": "b"},
        {"source_id": "calc", "source_name": "result", "sink_id": "out", "sink_name": "value"},
    ],
}


@pytest.mark.parametrize("raw", ["1e400", "NaN", "-Infinity"])
def test_an_input_that_is_not_finite_is_refused_with_a_clear_message(
    tmp_path: Path, raw: str
) -> None:
    run = autoexec(tmp_path, "run", str(HELLO), "--input", f"x={raw}")
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1] == (
        f"Error: Invalid value for --input: input 'x' ({raw}): {NOT_FINITE}; "
        "give a finite number, or quote it to pass text"
    )
    assert run.stdout == ""
    assert autoexec(tmp_path, "executions").stdout.strip() in ("", "no executions")


def test_an_input_file_value_that_is_not_finite_is_refused(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("x: .inf\n")
    run = autoexec(tmp_path, "run", str(HELLO), "--input-file", str(inputs))
    assert run.returncode == 2, run.stderr
    assert f"{inputs}: input 'x': {NOT_FINITE}" in run.stderr


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_an_output_that_overflows_to_inf_fails_the_run(tmp_path: Path, dry_run: list[str]) -> None:
    graph = tmp_path / "multiply.json"
    graph.write_text(json.dumps(MULTIPLY))
    args = ["--input", "a=1e300", "--input", "b=1e300", *dry_run]
    run = autoexec(tmp_path, "run", str(graph), *args)
    assert run.returncode == 1, run.stderr
    assert run.stdout == "status: FAILED\n{}\n"
    assert f"error: output 'result' is not JSON-serializable: {NOT_FINITE}" in run.stderr
