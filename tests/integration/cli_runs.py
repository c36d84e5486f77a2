"""Helpers for tests that run ``autoexec run`` as a subprocess and act while it follows a run."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.integration.test_cli_embedded import AUTOEXEC, ROOT, RUN_TIMEOUT_SECONDS


def wait_graph(path: Path) -> Path:
    """A graph whose ``wait`` node takes ``s`` seconds (an input), then outputs ``result: done``."""
    definition = {
        "name": "wait s seconds",
        "nodes": [
            {"id": "s", "block_id": "agent_input", "input_default": {"name": "s", "default": 0}},
            {"id": "wait", "block_id": "wait", "input_default": {"data": "done"}},
            {"id": "out", "block_id": "agent_output", "input_default": {"name": "result"}},
        ],
        "links": [
            {"source_id": "s", "source_name": "result", "sink_id": "wait", "sink_name": "seconds"},
            {"source_id": "wait", "source_name": "output", "sink_id": "out", "sink_name": "value"},
        ],
    }
    path.write_text(json.dumps(definition))
    return path


def execution_id(stderr: str) -> str:
    """The id announced by ``graph <id> v<n>: execution <id>``."""
    return stderr.splitlines()[0].rsplit(" ", 1)[-1]


@dataclass
class Following:
    """An ``autoexec run`` subprocess that is following a run whose ``wait`` node runs."""

    process: subprocess.Popen[str]
    stderr_so_far: str

    @property
    def graph_exec_id(self) -> str:
        return execution_id(self.stderr_so_far)

    def finish(self) -> tuple[int, str, str]:
        """Wait for the command to exit: its exit code, stdout and whole stderr."""
        stdout, rest = self.process.communicate(timeout=RUN_TIMEOUT_SECONDS)
        return self.process.returncode, stdout, self.stderr_so_far + rest


def _wait_node_running(line: str) -> bool:
    return " wait (wait) " in line and " RUNNING " in line


def follow_until_the_wait_node_runs(env: dict[str, str], *args: str) -> Following:
    """Start ``autoexec run ARGS`` and read its progress lines (one per event into a pipe)
    until the ``wait`` node runs."""
    process = subprocess.Popen(
        [str(AUTOEXEC), "run", *args],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    seen = [process.stderr.readline()]
    while not _wait_node_running(seen[-1]) and seen[-1]:
        seen.append(process.stderr.readline())
    return Following(process, "".join(seen))
