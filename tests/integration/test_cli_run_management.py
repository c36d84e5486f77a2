"""``autoexec executions``, ``status`` and ``rerun`` as a user types them, on the embedded stack:
runs made with ``autoexec run`` persist in ``AUTOEXEC_HOME`` between invocations."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.integration.test_cli_embedded import DIVIDE_BY_ZERO, EXAMPLES, autoexec

# x > 0, so the condition never yields on no_output and "add" waits for b forever.
WAITS_FOR_B = {
    "name": "waits for b",
    "nodes": [
        {"id": "x", "block_id": "agent_input", "input_default": {"name": "x", "default": 1}},
        {
            "id": "positive",
            "block_id": "condition",
            "input_default": {"operator": ">", "value2": 0},
        },
        {"id": "add", "block_id": "calculator", "input_default": {"operation": "add"}},
        {"id": "sum", "block_id": "agent_output", "input_default": {"name": "sum"}},
    ],
    "links": [
        {"source_id": "x", "source_name": "result", "sink_id": "positive", "sink_name": "value1"},
        {"source_id": "x", "source_name": "result", "sink_id": "add", "sink_name": "a"},
        {"source_id": "positive", "source_name": "no_output", "sink_id": "add", "sink_name": "b"},
        {"source_id": "add", "source_name": "result", "sink_id": "sum", "sink_name": "value"},
    ],
}
HEADER = ["ID", "GRAPH", "STATUS", "STARTED", "DURATION", "NODES"]


def run(home: Path, graph: Path, *inputs: str, expect: int = 0) -> str:
    """Run ``graph`` and return the new execution's id (from the announcement line)."""
    args = [arg for pair in inputs for arg in ("--input", pair)]
    done = autoexec(home, "run", str(graph), *args)
    assert done.returncode == expect, done.stderr
    return done.stderr.splitlines()[0].rsplit(" ", 1)[1]


def divide_by_zero(home: Path) -> Path:
    path = home / "divide_by_zero.json"
    path.write_text(json.dumps(DIVIDE_BY_ZERO))
    return path


def table(stdout: str) -> list[list[str]]:
    """The table's rows split on runs of two spaces (graph names contain single spaces)."""
    return [
        [cell.strip() for cell in line.split("  ") if cell.strip()] for line in stdout.splitlines()
    ]


def test_executions_lists_runs_newest_first(tmp_path: Path) -> None:
    loop = run(tmp_path, EXAMPLES / "count_loop.json")
    failed = run(tmp_path, divide_by_zero(tmp_path), expect=1)

    listed = autoexec(tmp_path, "executions")
    assert listed.returncode == 0, listed.stderr
    rows = table(listed.stdout)
    assert rows[0] == HEADER
    assert [(r[0], r[1], r[2], r[-1]) for r in rows[1:]] == [
        (failed, "divide by zero v1", "FAILED", "2"),
        (loop, "count_loop v1", "COMPLETED", "13"),
    ]
    assert all(r[3].endswith(" UTC") and r[4].endswith("s") for r in rows[1:])


def test_executions_filters_by_status_graph_and_limit(tmp_path: Path) -> None:
    first = run(tmp_path, EXAMPLES / "hello.json", "x=1")
    second = run(tmp_path, EXAMPLES / "hello.json", "x=2")
    failed = run(tmp_path, divide_by_zero(tmp_path), expect=1)

    def ids(*args: str) -> list[str]:
        listed = autoexec(tmp_path, "executions", *args)
        assert listed.returncode == 0, listed.stderr
        return [row[0] for row in table(listed.stdout)[1:]]

    assert ids("--status", "failed") == [failed]
    assert ids("--status", "COMPLETED") == [second, first]
    assert ids("--limit", "1") == [failed]
    graphs = autoexec(tmp_path, "graphs").stdout.splitlines()  # sorted by name
    divide_graph, hello_graph = (line.split("  ")[0] for line in graphs)
    assert ids("--graph", hello_graph) == [second, first]
    assert ids("--graph", divide_graph) == [failed]
    assert ids("--status", "TERMINATED") == []


def test_executions_with_no_match_says_so(tmp_path: Path) -> None:
    listed = autoexec(tmp_path, "executions", "--status", "RUNNING")
    assert listed.returncode == 0
    assert listed.stdout == ""
    assert listed.stderr == "no executions\n"


def test_executions_refuses_an_unknown_status_and_a_limit_below_one(tmp_path: Path) -> None:
    unknown = autoexec(tmp_path, "executions", "--status", "done")
    assert unknown.returncode == 2
    assert (
        "Invalid value for '--status': 'done' is not one of QUEUED, RUNNING, COMPLETED, "
        "FAILED, TERMINATED, REVIEW, WAITING\n" in unknown.stderr
    )
    zero = autoexec(tmp_path, "executions", "--limit", "0")
    assert zero.returncode == 2
    assert "Invalid value for '--limit': 0 is not in the range x>=1." in zero.stderr


def test_status_summarises_a_failed_run(tmp_path: Path) -> None:
    failed = run(tmp_path, divide_by_zero(tmp_path), expect=1)
    shown = autoexec(tmp_path, "status", failed)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    reason = "division by zero in divide(1.0, 0.0): give b a value other than 0"
    assert lines[0] == f"execution {failed}"
    assert lines[1].startswith("graph     divide by zero v1 (")
    assert lines[2] == "status    FAILED"
    assert [line[:10] for line in lines[3:7]] == [
        "created   ",
        "started   ",
        "ended     ",
        "duration  ",
    ]
    assert [without_times(line) for line in lines[7:]] == [
        "nodes     2 node executions: completed 1, failed 1",
        "stats     walltime T, cputime T, nodes walltime T, nodes cputime T, nodes run 2, "
        "failed 1, cost 0",
        "outputs",
        "  (none)",
        f"error     {reason}",
        "failed nodes",
        f"  divide (calculator, node execution 2): {reason}",
        "never ran",
        "  out (agent_output): no input arrived",
        "node executions",
        "  ID  NODE    BLOCK        STATUS     WALLTIME  CPUTIME  INPUT  OUTPUT",
        "  2   divide  calculator   FAILED     T T 43 B   67 B",  # failed first
        "  1   x       agent_input  COMPLETED  T T 27 B   1 B",
    ]


def without_times(line: str) -> str:
    """``line`` with each measured time (``3.4ms``, ``12.0ms``, ``1.20s``) as ``T`` and the
    padding after it as one space: times, and so their widths, vary by run."""
    return re.sub(r"\b\d+(?:\.\d+)?(?:ms|s)\b( +)?", lambda m: "T " if m[1] else "T", line)


def test_status_json_has_the_stats_of_the_run_and_of_each_node(tmp_path: Path) -> None:
    exec_id = run(tmp_path, EXAMPLES / "hello.json", "x=1")
    dumped = json.loads(autoexec(tmp_path, "status", exec_id, "--json").stdout)
    stats = dumped["stats"]
    assert set(stats) == {
        "walltime", "cputime", "nodes_walltime", "nodes_cputime", "node_count",
        "node_error_count", "cost", "error",
    }  # fmt: skip
    assert (stats["node_count"], stats["node_error_count"], stats["cost"], stats["error"]) == (
        5,
        0,
        0,
        None,
    )
    nodes = {n["node_id"]: n["stats"] for n in dumped["node_executions"]}
    sizes = {node: (s["input_size"], s["output_size"], s["error"]) for node, s in nodes.items()}
    assert sizes == {
        "x": (40, 1, None),
        "add": (40, 1, None),
        "greet": (66, 18, None),
        "sum": (27, 6, None),
        "message": (48, 27, None),
    }
    assert stats["nodes_walltime"] == sum(s["walltime"] for s in nodes.values())
    assert stats["nodes_cputime"] == sum(s["cputime"] for s in nodes.values())


def test_run_and_status_say_which_nodes_never_ran_and_why(tmp_path: Path) -> None:
    graph = tmp_path / "waits_for_b.json"
    graph.write_text(json.dumps(WAITS_FOR_B))
    done = autoexec(tmp_path, "run", str(graph))
    assert done.returncode == 0, done.stderr
    exec_id = done.stderr.splitlines()[0].rsplit(" ", 1)[1]
    never_ran = [line for line in done.stderr.splitlines() if line.startswith("never ran: ")]
    assert never_ran == [
        "never ran: add (calculator, node execution 3): waiting for linked input(s) b",
        "never ran: sum (agent_output): no input arrived",
    ]
    summary = autoexec(tmp_path, "status", exec_id).stdout.splitlines()
    assert summary[summary.index("never ran") + 1 : summary.index("node executions")] == [
        "  add (calculator, node execution 3): waiting for linked input(s) b",
        "  sum (agent_output): no input arrived",
    ]
    dumped = json.loads(autoexec(tmp_path, "status", exec_id, "--json").stdout)
    assert dumped["never_ran"] == [
        {
            "node_id": "add",
            "block_id": "calculator",
            "node_exec_id": 3,
            "reason": "waiting for linked input(s) b",
        },
        {
            "node_id": "sum",
            "block_id": "agent_output",
            "node_exec_id": None,
            "reason": "no input arrived",
        },
    ]


def test_status_cuts_long_outputs_to_the_width(tmp_path: Path) -> None:
    numbers = json.dumps(list(range(100)))
    exec_id = run(tmp_path, EXAMPLES / "iterate.json", f"numbers={numbers}")
    lines = autoexec(tmp_path, "status", exec_id, env={"COLUMNS": "60"}).stdout.splitlines()
    squares = lines[lines.index("outputs") + 1]
    assert squares.startswith("  squares: [0, 1, 4, 9, 16")
    assert squares.endswith("…")
    assert len(squares) == 60  # the terminal's width (COLUMNS, as shutil.get_terminal_size says)


def test_rerun_runs_the_same_graph_version_with_the_same_inputs(tmp_path: Path) -> None:
    first = run(tmp_path, EXAMPLES / "count_loop.json", "start=2", "limit=5")
    again = autoexec(tmp_path, "rerun", first)
    assert again.returncode == 0, again.stderr
    outputs = {"steps": [2, 3, 4], "final": [5]}
    assert again.stdout == f"status: COMPLETED\n{json.dumps(outputs, indent=2)}\n"
    second = again.stderr.splitlines()[0].rsplit(" ", 1)[1]
    assert again.stderr.splitlines()[0] == f"rerun of {first}: execution {second}"
    shown = json.loads(autoexec(tmp_path, "status", second, "--json").stdout)
    assert shown["inputs"] == {"start": 2, "limit": 5}
    assert shown["graph_version"] == 1


def test_rerun_of_a_failed_run_fails_again_with_exit_code_1(tmp_path: Path) -> None:
    failed = run(tmp_path, divide_by_zero(tmp_path), expect=1)
    again = autoexec(tmp_path, "rerun", failed)
    assert again.returncode == 1
    assert again.stdout == "status: FAILED\n{}\n"
    assert "never ran: out (agent_output): no input arrived" in again.stderr.splitlines()


def test_rerun_refuses_detach_on_the_embedded_stack_and_unknown_ids(tmp_path: Path) -> None:
    first = run(tmp_path, EXAMPLES / "hello.json")
    detached = autoexec(tmp_path, "rerun", first, "--detach")
    assert detached.returncode == 2
    assert (
        "Error: --detach needs a cluster: on the embedded stack the run lives in this process "
        "and would stop with it (set AUTOEXEC_BROKER_URL, or pass --cluster; or start "
        "`autoexec serve` for this home in another terminal)" in detached.stderr
    )
    unknown = autoexec(tmp_path, "rerun", "no-such-id")
    assert unknown.returncode == 2
    assert unknown.stderr == "error: graph execution 'no-such-id' not found\n"
    other_user = autoexec(tmp_path, "rerun", first, "--user", "someone-else")
    assert other_user.returncode == 2
    assert other_user.stderr == f"error: graph execution {first!r} not found\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--detach", "--timeout", "5"],
            "Error: --timeout limits following a run: it does nothing with --detach",
        ),
        (["--timeout", "0"], "Error: Invalid value for '--timeout': 0.0 is not in the range x>0."),
    ],
)
def test_rerun_refuses_a_timeout_it_cannot_honour(
    tmp_path: Path, args: list[str], message: str
) -> None:
    first = run(tmp_path, EXAMPLES / "hello.json")
    refused = autoexec(tmp_path, "rerun", first, *args)
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[-1] == message
