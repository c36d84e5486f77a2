"""The installed ``autoexec`` command, run as a subprocess on the embedded stack (SQLite,
in-memory broker, in-process worker thread, Redis stand-in): no services needed.

Each example must print the same outputs as on the reference interpreter (``--dry-run``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
AUTOEXEC = Path(sys.executable).parent / "autoexec"
RUN_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class Example:
    file: str
    inputs: list[str]
    outputs: dict[str, list[Any]]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return " ".join([self.file, *self.inputs])


SHOUT_ENV = {"PYTHONPATH": str(EXAMPLES / "blocks"), "AUTOEXEC_BLOCK_MODULES": "shout"}

EXAMPLE_RUNS = [
    Example("hello.json", ["x=1"], {"sum": [2], "message": ["Hello! 1 + 1 = 2"]}),
    Example("hello.json", [], {"sum": [42], "message": ["Hello! 41 + 1 = 42"]}),
    Example("iterate.json", ["numbers=[1, 2, 3, 4, 5]"], {"squares": [1, 4, 9, 16, 25]}),
    Example("count_loop.json", [], {"steps": [0, 1, 2], "final": [3]}),
    Example("count_loop.json", ["start=2", "limit=6"], {"steps": [2, 3, 4, 5], "final": [6]}),
    Example(
        "handle_error.json",
        [],
        {"problem": ["division by zero in divide(1.0, 0.0): give b a value other than 0"]},
    ),
    Example("handle_error.json", ["b=4"], {"quotient": [0.25]}),
    Example("shout.json", ["text=hi"], {"shouted": ["HI!", "HI!"]}, SHOUT_ENV),
]

DIVIDE_BY_ZERO = {
    "name": "divide by zero",
    "nodes": [
        {"id": "x", "block_id": "agent_input", "input_default": {"name": "x", "default": 1}},
        {
            "id": "divide",
            "block_id": "calculator",
            "input_default": {"operation": "divide", "b": 0},
        },
        {"id": "out", "block_id": "agent_output", "input_default": {"name": "quotient"}},
    ],
    "links": [
        {"source_id": "x", "source_name": "result", "sink_id": "divide", "sink_name": "a"},
        {"source_id": "divide", "source_name": "result", "sink_id": "out", "sink_name": "value"},
    ],
}


def autoexec(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script with no ``AUTOEXEC_*`` settings but ``AUTOEXEC_HOME``, so it runs
    on a fresh embedded stack (whatever the test session configured for itself)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOEXEC_")}
    return subprocess.run(
        [str(AUTOEXEC), *args],
        env={**clean, "AUTOEXEC_HOME": str(home), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )


def expected_stdout(status: str, outputs: dict[str, list[Any]]) -> str:
    return f"status: {status}\n{json.dumps(outputs, indent=2)}\n"


def input_args(inputs: list[str]) -> list[str]:
    return [arg for pair in inputs for arg in ("--input", pair)]


def test_the_console_script_is_installed() -> None:
    assert AUTOEXEC.is_file(), f"{AUTOEXEC} is missing: install the project (make venv)"


@pytest.mark.parametrize("example", EXAMPLE_RUNS, ids=lambda e: e.id)
def test_each_example_prints_its_outputs_on_the_embedded_stack(
    example: Example, tmp_path: Path
) -> None:
    args = ["run", str(EXAMPLES / example.file), *input_args(example.inputs)]
    embedded = autoexec(tmp_path, *args, env=example.env)
    assert embedded.returncode == 0, embedded.stderr
    assert embedded.stdout == expected_stdout("COMPLETED", example.outputs)
    progress = [line for line in embedded.stderr.splitlines() if not line.startswith("never ran")]
    assert "COMPLETED" in progress[-1]  # the last progress line

    reference = autoexec(tmp_path, *args, "--dry-run", env=example.env)
    assert reference.returncode == 0, reference.stderr
    assert reference.stdout == embedded.stdout


def test_the_embedded_store_keeps_the_graph_between_runs(tmp_path: Path) -> None:
    announced = []
    for _ in range(2):
        run = autoexec(tmp_path, "run", str(EXAMPLES / "hello.json"), "--input", "x=3")
        assert run.returncode == 0, run.stderr
        announced.append(run.stderr.splitlines()[0])  # "graph <id> v<version>: execution <id>"
    assert (tmp_path / "embedded.sqlite3").is_file()
    graphs = [line.split(":")[0] for line in announced]
    # The same, unchanged definition is the same graph version; each run a new execution.
    assert graphs[0] == graphs[1]
    assert graphs[0].startswith("graph ") and graphs[0].endswith(" v1")
    assert announced[0] != announced[1]


def test_a_graph_whose_node_raises_exits_non_zero_and_prints_the_error(tmp_path: Path) -> None:
    graph = tmp_path / "divide_by_zero.json"
    graph.write_text(json.dumps(DIVIDE_BY_ZERO))
    run = autoexec(tmp_path, "run", str(graph))
    assert run.returncode == 1, run.stderr
    assert run.stdout == expected_stdout("FAILED", {})
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, run.stderr
    assert "division by zero" in errors[0]
    assert "Traceback" not in run.stderr  # a user error, not a crash


def test_a_missing_required_input_is_refused_before_anything_runs(tmp_path: Path) -> None:
    graph = tmp_path / "needs_x.json"
    definition = {
        "name": "needs x",
        "nodes": [
            {"id": "x", "block_id": "agent_input", "input_default": {"name": "x"}},
            {"id": "out", "block_id": "agent_output", "input_default": {"name": "x"}},
        ],
        "links": [
            {"source_id": "x", "source_name": "result", "sink_id": "out", "sink_name": "value"}
        ],
    }
    graph.write_text(json.dumps(definition))
    run = autoexec(tmp_path, "run", str(graph))
    assert run.returncode == 2
    assert run.stdout == ""
    assert "error: missing required graph input 'x'" in run.stderr


def test_a_graph_input_that_cannot_feed_its_pin_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    run = autoexec(tmp_path, "run", str(EXAMPLES / "hello.json"), "--input", "x=abc")
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert (
        "error: graph input 'x' = 'abc' cannot feed pin 'a' of node 'add' (calculator): "
        "Input should be a valid number, unable to parse string as a number"
    ) in run.stderr.splitlines()
    assert "Traceback" not in run.stderr
