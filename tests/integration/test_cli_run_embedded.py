"""``autoexec run`` as a subprocess on the embedded stack: saved graphs by id, input files,
``name=@file``, the refused inputs, and Ctrl-C (which cancels the run: it lives in the process)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_runs import execution_id, follow_until_the_wait_node_runs, wait_graph
from tests.integration.test_cli_embedded import EXAMPLES, ROOT, autoexec, expected_stdout

HELLO = EXAMPLES / "hello.json"


def hello_outputs(x: int) -> dict[str, list[Any]]:
    return {"sum": [x + 1], "message": [f"Hello! {x} + 1 = {x + 1}"]}


def saved_graph_id(home: Path) -> str:
    """The id of the only graph saved in ``home``."""
    listing = autoexec(home, "graphs")
    assert listing.returncode == 0, listing.stderr
    (line,) = listing.stdout.splitlines()
    return line.split()[0]


def error_line(stderr: str) -> str:
    """The last line of stderr: the error click or the entrypoint printed."""
    assert "Traceback" not in stderr
    return stderr.splitlines()[-1]


def test_a_saved_graph_runs_by_its_id(tmp_path: Path) -> None:
    assert autoexec(tmp_path, "run", str(HELLO), "--input", "x=1").returncode == 0
    run = autoexec(tmp_path, "run", saved_graph_id(tmp_path), "--input", "x=5")
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_stdout("COMPLETED", hello_outputs(5))


def test_version_runs_an_older_version_of_a_saved_graph(tmp_path: Path) -> None:
    definition = json.loads(HELLO.read_text())
    graph = tmp_path / "hello.json"
    for b in (1, 100):  # version 1 adds 1, version 2 adds 100
        definition["nodes"][1]["input_default"]["b"] = b
        graph.write_text(json.dumps(definition))
        assert autoexec(tmp_path, "run", str(graph), "--input", "x=1").returncode == 0
    run = autoexec(tmp_path, "run", saved_graph_id(tmp_path), "--version", "1", "--input", "x=1")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.partition("\n")[2])["sum"] == [2]
    assert " v1: execution " in run.stderr.splitlines()[0]


@pytest.mark.parametrize(
    ("name", "content"),
    [("inputs.json", '{"x": 7}'), ("inputs.yaml", "x: 7\n")],
)
def test_an_input_file_gives_the_inputs(tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content)
    run = autoexec(tmp_path, "run", str(HELLO), "--input-file", str(tmp_path / name))
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_stdout("COMPLETED", hello_outputs(7))


def test_an_input_on_the_command_line_overrides_the_input_file(tmp_path: Path) -> None:
    (tmp_path / "inputs.yaml").write_text("x: 7\n")
    args = ["--input-file", str(tmp_path / "inputs.yaml"), "--input", "x=2"]
    run = autoexec(tmp_path, "run", str(HELLO), *args)
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_stdout("COMPLETED", hello_outputs(2))


def test_at_file_takes_the_content_of_a_file_as_the_value(tmp_path: Path) -> None:
    (tmp_path / "numbers.json").write_text("[1, 2, 3]\n")
    args = ["--input", f"numbers=@{tmp_path / 'numbers.json'}"]
    run = autoexec(tmp_path, "run", str(EXAMPLES / "iterate.json"), *args)
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_stdout("COMPLETED", {"squares": [1, 4, 9]})


REFUSED = [
    (
        ["nope"],
        "error: 'nope' is neither a graph file nor a graph id of user 'local': give the path "
        "of a JSON or YAML graph, or an id listed by `autoexec graphs`",
    ),
    (
        [str(HELLO), "--detach"],
        "Error: --detach needs a cluster: on the embedded stack the run lives in this process "
        "and would stop with it (set AUTOEXEC_BROKER_URL, or pass --cluster; or start "
        "`autoexec serve` for this home in another terminal)",
    ),
    (
        [str(HELLO), "--version", "1"],
        f"Error: --version selects a version of a saved graph, but {str(HELLO)!r} is a file: "
        "run its graph id (see `autoexec graphs`) with --version",
    ),
    (
        [str(HELLO), "--input", "x=@missing.txt"],
        "Error: Invalid value for --input: input 'x': no file 'missing.txt'",
    ),
    (
        [str(HELLO), "--input-file", "missing.json"],
        "Error: Invalid value for '--input-file': File 'missing.json' does not exist.",
    ),
    (
        ["nope", "--dry-run"],
        "Error: --dry-run runs a graph file: give the path of a JSON or YAML graph",
    ),
    (
        [str(HELLO), "--dry-run", "--max-run-seconds", "5"],
        "Error: --max-run-seconds limits a real run; --dry-run has no deadline",
    ),
    (
        [str(HELLO), "--max-run-seconds", "0"],
        "Error: Invalid value for '--max-run-seconds': 0.0 is not in the range x>0.",
    ),
    (
        [str(HELLO), "--input", "x=true"],
        "error: graph input 'x' = True cannot feed pin 'a' of node 'add' (calculator): "
        "Value error, True is a boolean, not a number: give a number such as 1 or 0",
    ),
    (
        ["nope", "--new"],
        "Error: --new saves a graph file as a new graph: give the path of a JSON or YAML "
        "graph, not a saved graph id",
    ),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=lambda v: str(v)[:40])
def test_a_refused_run_says_why_and_exits_2(tmp_path: Path, args: list[str], message: str) -> None:
    run = autoexec(tmp_path, "run", *args)
    assert run.returncode == 2
    assert run.stdout == ""
    assert error_line(run.stderr) == message
    assert "execution" not in run.stderr  # nothing was submitted


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "[1, 2]",
            ' must hold a mapping of input names to values (JSON {"x": 1} or YAML x: 1), '
            "not a list",
        ),
        (
            '{"x": ',
            " is not valid JSON or YAML: expected the node content, but found "
            "'<stream end>' at line 1, column 7",
        ),
    ],
)
def test_an_input_file_that_is_not_a_mapping_is_refused(
    tmp_path: Path, content: str, message: str
) -> None:
    inputs = tmp_path / "inputs"
    inputs.write_text(content)
    run = autoexec(tmp_path, "run", str(HELLO), "--input-file", str(inputs))
    assert run.returncode == 2
    assert error_line(run.stderr) == f"Error: Invalid value for --input-file: {inputs}{message}"


def test_a_version_a_saved_graph_does_not_have_is_refused(tmp_path: Path) -> None:
    assert autoexec(tmp_path, "run", str(HELLO)).returncode == 0
    graph_id = saved_graph_id(tmp_path)
    run = autoexec(tmp_path, "run", graph_id, "--version", "2")
    assert run.returncode == 2
    assert error_line(run.stderr) == (
        f"error: graph {graph_id!r} has no version 2: its latest version is 1"
    )


def test_ctrl_c_cancels_the_run_on_the_embedded_stack(tmp_path: Path) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOEXEC_")}
    env = {**clean, "AUTOEXEC_HOME": str(tmp_path)}
    following = follow_until_the_wait_node_runs(env, str(graph), "--input", "s=60")
    following.process.send_signal(signal.SIGINT)
    code, stdout, stderr = following.finish()
    graph_exec_id = following.graph_exec_id
    assert code == 130, stderr
    assert stdout == ""
    assert stderr.splitlines()[-1] == f"cancelled: execution {graph_exec_id}"
    assert "Traceback" not in stderr
    status = autoexec(tmp_path, "status", graph_exec_id, "--json")
    assert status.returncode == 0, status.stderr
    view = json.loads(status.stdout)
    assert view["status"] == "TERMINATED"
    assert {node["node_id"]: node["status"] for node in view["node_executions"]} == {
        "s": "COMPLETED",
        "wait": "TERMINATED",
    }


def test_the_timeout_cancels_the_run_on_the_embedded_stack(tmp_path: Path) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    run = autoexec(tmp_path, "run", str(graph), "--input", "s=60", "--timeout", "2")
    graph_exec_id = execution_id(run.stderr)
    assert run.returncode == 124, run.stderr
    assert run.stdout == ""
    assert run.stderr.splitlines()[-2:] == [
        "timeout: the run did not end within 2s",
        f"cancelled: execution {graph_exec_id}",
    ]
    status = autoexec(tmp_path, "status", graph_exec_id, "--json")
    assert json.loads(status.stdout)["status"] == "TERMINATED"


def test_max_run_seconds_ends_the_run_failed_at_its_deadline(tmp_path: Path) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    run = autoexec(tmp_path, "run", str(graph), "--input", "s=600", "--max-run-seconds", "1")
    assert run.returncode == 1, run.stderr
    assert run.stdout.splitlines()[0] == "status: FAILED"
    assert "error: stopped: ran longer than max_run_seconds=1" in run.stderr.splitlines()
    assert "never ran" not in run.stderr  # the run was stopped: its nodes did not wait in vain
    status = autoexec(tmp_path, "status", execution_id(run.stderr), "--json")
    view = json.loads(status.stdout)
    assert view["status"] == "FAILED"
    assert view["error"] == "stopped: ran longer than max_run_seconds=1"
    assert {node["node_id"]: node["status"] for node in view["node_executions"]}["wait"] == (
        "TERMINATED"
    )


ORPHANS = {
    "name": "orphans",
    "nodes": [
        {"id": "x", "block_id": "agent_input", "input_default": {"name": "x", "default": 1}},
        {"id": "out", "block_id": "agent_output", "input_default": {"name": "x"}},
        {"id": "ping", "block_id": "print"},
        {"id": "pong", "block_id": "print"},
    ],
    "links": [
        {"source_id": "x", "source_name": "result", "sink_id": "out", "sink_name": "value"},
        {"source_id": "ping", "source_name": "output", "sink_id": "pong", "sink_name": "text"},
        {"source_id": "pong", "source_name": "output", "sink_id": "ping", "sink_name": "text"},
    ],
}


def test_nodes_nothing_can_reach_are_a_warning_printed_once(tmp_path: Path) -> None:
    graph = tmp_path / "orphans.json"
    graph.write_text(json.dumps(ORPHANS))
    run = autoexec(tmp_path, "run", str(graph))
    assert run.returncode == 0, run.stderr
    warning = (
        "warning: graph 'orphans': node(s) 'ping', 'pong' can never run: no starting node "
        "(an 'agent_input' node or a node with no incoming link) reaches them through links"
    )
    assert run.stderr.splitlines()[0] == warning
    assert run.stderr.count("can never run") == 1
    assert "never ran: ping (print): no input arrived" in run.stderr.splitlines()


def test_a_yaml_input_that_is_not_a_json_value_is_refused(tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.yaml"
    inputs.write_text("x: 2024-01-01\n")
    run = autoexec(tmp_path, "run", str(HELLO), "--input-file", str(inputs))
    assert run.returncode == 2
    assert error_line(run.stderr) == (
        "error: graph input 'x' is not a JSON value (date): give text, a number, true/false, "
        "null, a list or a mapping (quote dates in YAML)"
    )


def test_a_fan_out_runs_on_the_embedded_stack(tmp_path: Path) -> None:
    graph = tmp_path / "doubles.json"
    graph.write_text(
        json.dumps(
            {
                "name": "doubles",
                "nodes": [
                    {"id": "x", "block_id": "agent_input", "input_default": {"name": "numbers"}},
                    {"id": "double", "block_id": "calculator", "fan_out": "b",
                     "input_default": {"operation": "multiply", "a": 2}},
                    {"id": "out", "block_id": "agent_output", "input_default": {"name": "twice"}},
                ],
                "links": [
                    {"source_id": "x", "source_name": "result", "sink_id": "double",
                     "sink_name": "b"},
                    {"source_id": "double", "source_name": "result", "sink_id": "out",
                     "sink_name": "value"},
                ],
            }
        )
    )  # fmt: skip
    run = autoexec(tmp_path, "run", str(graph), "--input", "numbers=[1, 2, 3]", "--timeout", "60")
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_stdout("COMPLETED", {"twice": [[2, 4, 6]]})


def test_a_block_retried_after_a_transient_error_completes_on_the_embedded_stack(
    tmp_path: Path,
) -> None:
    # The retry is a new message sent from the embedded worker's thread: it once went to
    # Celery's default app (amqp://localhost) and the node stayed RUNNING.
    counter = tmp_path / "runs"
    graph = tmp_path / "flaky.json"
    graph.write_text(
        json.dumps(
            {
                "name": "flaky",
                "nodes": [
                    {"id": "f", "block_id": "test_flaky",
                     "input_default": {"counter_file": str(counter), "fail_times": 2}},
                    {"id": "out", "block_id": "agent_output", "input_default": {"name": "runs"}},
                ],
                "links": [
                    {"source_id": "f", "source_name": "runs", "sink_id": "out",
                     "sink_name": "value"},
                ],
            }
        )
    )  # fmt: skip
    env = {"PYTHONPATH": str(ROOT), "AUTOEXEC_BLOCK_MODULES": "tests.integration.blocks_for_tests"}
    run = autoexec(tmp_path, "run", str(graph), "--timeout", "60", env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_stdout("COMPLETED", {"runs": [3]})
    assert "retry 2 of 3" in run.stderr


def hello_adding(tmp_path: Path, b: int) -> Path:
    """``examples/hello.json`` (graph name ``hello``) adding ``b`` instead of 1."""
    definition = json.loads(HELLO.read_text())
    definition["nodes"][1]["input_default"]["b"] = b
    graph = tmp_path / f"hello-{b}.json"
    graph.write_text(json.dumps(definition))
    return graph


def test_running_a_changed_file_under_a_saved_name_says_it_became_a_new_version(
    tmp_path: Path,
) -> None:
    assert autoexec(tmp_path, "run", str(HELLO), "--input", "x=1").returncode == 0
    graph_id = saved_graph_id(tmp_path)
    run = autoexec(tmp_path, "run", str(hello_adding(tmp_path, 100)), "--input", "x=1")
    assert run.returncode == 0, run.stderr
    assert run.stderr.splitlines()[0] == (
        f"warning: graph 'hello': saved as version 2 of your graph of that name ({graph_id}), "
        "not as a new graph: save with new=True (autoexec run --new) for a separate graph"
    )


def test_new_saves_a_separate_graph_and_save_prints_its_id_and_version(tmp_path: Path) -> None:
    first = autoexec(tmp_path, "save", str(HELLO))
    assert first.returncode == 0, first.stderr
    first_id = first.stdout.split()[0]
    assert first.stdout == f"{first_id} v1\n"
    second = autoexec(tmp_path, "save", "--new", str(hello_adding(tmp_path, 100)))
    assert second.returncode == 0, second.stderr
    assert second.stderr == ""
    assert second.stdout.endswith(" v1\n") and not second.stdout.startswith(first_id)
    run = autoexec(tmp_path, "run", "--new", str(HELLO), "--input", "x=1")
    assert run.returncode == 0, run.stderr
    listing = autoexec(tmp_path, "graphs").stdout.splitlines()
    assert len(listing) == 3
    assert all(line.split()[1:3] == ["v1", "hello"] for line in listing)


def test_status_of_a_run_of_hundreds_of_items_fits_a_screen_and_nodes_lists_them_all(
    tmp_path: Path,
) -> None:
    (tmp_path / "numbers.json").write_text(json.dumps(list(range(300))))
    args = ["--input", f"numbers=@{tmp_path / 'numbers.json'}"]
    started = time.monotonic()
    run = autoexec(tmp_path, "run", str(EXAMPLES / "iterate.json"), *args)
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    # Into a pipe: the announcement, the run's changes, at most a line a second besides.
    assert len(run.stderr.splitlines()) <= seconds + 6, run.stderr
    graph_exec_id = execution_id(run.stderr)

    summary = autoexec(tmp_path, "status", graph_exec_id)
    every = autoexec(tmp_path, "status", graph_exec_id, "--nodes")
    dumped = autoexec(tmp_path, "status", graph_exec_id, "--json")
    assert summary.returncode == every.returncode == dumped.returncode == 0, summary.stderr
    node_executions = len(json.loads(dumped.stdout)["node_executions"])
    assert node_executions > 600  # a square and an output per item
    lines = summary.stdout.splitlines()
    assert len(lines) <= 40
    assert lines[-1] == f"  … {node_executions - 8} more (--nodes for all)"
    listed = every.stdout.splitlines()
    assert len(listed[listed.index("node executions") + 2 :]) == node_executions
