"""The embedded stack from several terminals: the process that runs a home's engine serves it,
so a review approved, a run cancelled or watched, or a second run started from another
terminal reaches the run where it lives. Each command is the installed ``autoexec`` in its
own process, as a user would type it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.cli_runs import wait_graph
from tests.integration.test_cli_embedded import (
    AUTOEXEC,
    ROOT,
    RUN_TIMEOUT_SECONDS,
    autoexec,
    expected_stdout,
)

REVIEWED = {
    "name": "reviewed",
    "nodes": [
        {"id": "x", "block_id": "agent_input", "input_default": {"name": "draft"}},
        {"id": "review", "block_id": "human_review", "input_default": {"message": "Send?"}},
        {"id": "out", "block_id": "agent_output", "input_default": {"name": "sent"}},
    ],
    "links": [
        {"source_id": "x", "source_name": "result", "sink_id": "review", "sink_name": "data"},
        {
            "source_id": "review",
            "source_name": "approved_data",
            "sink_id": "out",
            "sink_name": "value",
        },
    ],
}


class Terminal:
    """``autoexec ARGS`` running in the background, its progress read line by line."""

    def __init__(self, home: Path, *args: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOEXEC_")}
        self.process = subprocess.Popen(
            [str(AUTOEXEC), *args],
            env={**clean, "AUTOEXEC_HOME": str(home)},
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.stderr_so_far = ""

    def read_until(self, seen: Callable[[str], bool]) -> str:
        """Read progress lines until one is ``seen``; that line."""
        assert self.process.stderr is not None
        while line := self.process.stderr.readline():
            self.stderr_so_far += line
            if seen(line):
                return line
        raise AssertionError(f"the command ended first:\n{self.stderr_so_far}")

    @property
    def graph_exec_id(self) -> str:
        return self.stderr_so_far.splitlines()[0].rsplit(" ", 1)[-1]

    def finish(self) -> tuple[int, str, str]:
        stdout, rest = self.process.communicate(timeout=RUN_TIMEOUT_SECONDS)
        return self.process.returncode, stdout, self.stderr_so_far + rest

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        terminal.stop()


def open_terminal(terminals: list[Terminal], home: Path, *args: str) -> Terminal:
    terminals.append(Terminal(home, *args))
    return terminals[-1]


def run_in_review(terminals: list[Terminal], home: Path, draft: str) -> Terminal:
    """``autoexec run`` of the reviewed graph in a terminal of its own, once it waits in REVIEW."""
    graph = home / "reviewed.json"
    graph.write_text(json.dumps(REVIEWED))
    run = open_terminal(terminals, home, "run", str(graph), "--input", f"draft={draft}")
    run.read_until(in_review)
    return run


def in_review(line: str) -> bool:
    return "execution " in line and " REVIEW " in line


def pending_review(home: Path) -> str:
    listing = autoexec(home, "review", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    (review,) = json.loads(listing.stdout)
    return str(review["id"])


def test_a_review_approved_in_another_terminal_resumes_the_run(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    run = run_in_review(terminals, tmp_path, "hello")

    approve = autoexec(tmp_path, "review", "approve", pending_review(tmp_path))

    assert approve.returncode == 0, approve.stderr
    assert "no engine runs" not in approve.stderr
    code, stdout, stderr = run.finish()
    assert code == 0, stderr
    assert stdout == expected_stdout("COMPLETED", {"sent": ["hello"]})


def test_a_run_cancelled_in_another_terminal_stops_its_running_node(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    graph = wait_graph(tmp_path / "wait.json")
    run = open_terminal(terminals, tmp_path, "run", str(graph), "--input", "s=600")
    run.read_until(lambda line: " wait (wait) " in line and " RUNNING " in line)

    cancel = autoexec(tmp_path, "cancel", run.graph_exec_id)

    assert cancel.returncode == 0, cancel.stderr
    code, stdout, _ = run.finish()
    assert code == 1
    assert stdout.startswith("status: TERMINATED")
    status = autoexec(tmp_path, "status", run.graph_exec_id, "--json")
    nodes = json.loads(status.stdout)["node_executions"]
    assert [node["status"] for node in nodes] == ["COMPLETED", "TERMINATED"]


def test_a_second_run_and_a_watch_from_other_terminals_go_through_the_serving_engine(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    first = run_in_review(terminals, tmp_path, "one")
    second = run_in_review(terminals, tmp_path, "two")
    watch = open_terminal(terminals, tmp_path, "watch", second.graph_exec_id)

    listing = json.loads(autoexec(tmp_path, "review", "list", "--json").stdout)
    by_run = {review["graph_exec_id"]: review["id"] for review in listing}
    approve = autoexec(tmp_path, "review", "approve", by_run[second.graph_exec_id])
    assert approve.returncode == 0, approve.stderr

    code, stdout, stderr = second.finish()
    assert code == 0, stderr
    assert stdout == expected_stdout("COMPLETED", {"sent": ["two"]})
    watched, watch_out, _ = watch.finish()
    assert (watched, watch_out.splitlines()[-1]) == (0, "status: COMPLETED")
    assert first.process.poll() is None  # the first run still waits for its review


def test_a_run_whose_engine_was_killed_goes_on_when_another_engine_starts(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    run = run_in_review(terminals, tmp_path, "later")
    graph_exec_id = run.graph_exec_id
    run.process.send_signal(signal.SIGKILL)
    run.process.communicate()

    approve = autoexec(tmp_path, "review", "approve", pending_review(tmp_path))
    assert approve.returncode == 0, approve.stderr
    assert "no engine runs for this home now" in approve.stderr

    serve = open_terminal(terminals, tmp_path, "serve")
    serve.read_until(lambda line: line.startswith("serving "))
    follow = autoexec(tmp_path, "watch", graph_exec_id)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    status = json.loads(autoexec(tmp_path, "status", graph_exec_id, "--json").stdout)
    assert (status["status"], status["outputs"]) == ("COMPLETED", {"sent": ["later"]})


def test_a_run_detached_on_the_embedded_stack_goes_on_in_the_serving_engine(
    tmp_path: Path, terminals: list[Terminal]
) -> None:
    serve = open_terminal(terminals, tmp_path, "serve")
    serve.read_until(lambda line: line.startswith("serving "))

    detached = autoexec(tmp_path, "run", str(ROOT / "examples" / "hello.json"), "--detach")

    assert detached.returncode == 0, detached.stderr
    graph_exec_id = detached.stdout.strip()
    watched = autoexec(tmp_path, "watch", graph_exec_id)
    assert (watched.returncode, watched.stdout.splitlines()[-1]) == (0, "status: COMPLETED")
