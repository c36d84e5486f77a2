"""``autoexec watch ID`` on the real cluster: a live table on a terminal (run under tmux), one
line per event into a pipe; it ends with the final status and its exit code."""

from __future__ import annotations

import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import Services
from tests.integration.conftest import Cluster
from tests.integration.live_runs import held_execution
from tests.integration.test_cli_embedded import AUTOEXEC, ROOT, RUN_TIMEOUT_SECONDS
from tests.integration.test_cli_run_cluster import USER, cluster_env
from tests.integration.test_live_events import ITEMS, STREAM_INTO_CALC

TABLE_HEADER = re.compile(r"node\s+.*block\s+.*status\s+.*outputs\s+.*duration")
PROGRESS_LINE = re.compile(r"RUNNING · done \d+, running \d+, queued \d+, failed \d+ · ")
MORE_EVENTS = re.compile(r"\(\+(\d+) more events\)$")


def test_watch_into_a_pipe_prints_the_runs_changes_and_at_most_a_line_a_second_besides(
    cluster: Cluster, services: Services
) -> None:
    exec_id, held = held_execution(cluster.engine, STREAM_INTO_CALC, USER)
    watch = subprocess.Popen(
        [str(AUTOEXEC), "watch", exec_id],
        env=cluster_env(cluster, services), cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert watch.stdout is not None
    # The run, then its first node: held back, it comes once due though no other event comes.
    replayed = [watch.stdout.readline(), watch.stdout.readline()]
    held.release()
    released = time.monotonic()
    rest, _ = watch.communicate(timeout=RUN_TIMEOUT_SECONDS)
    seconds = time.monotonic() - released
    lines = replayed + rest.splitlines(keepends=True)

    assert watch.returncode == 0
    assert lines[-2:] == [_ending(lines[-2], exec_id), "status: COMPLETED\n"]
    assert f"execution {exec_id} QUEUED | " in lines[0]
    assert "items (test_slow_stream)" in lines[1] and " QUEUED | " in lines[1]
    assert any(f"execution {exec_id} RUNNING | " in line for line in lines)
    node_lines = [line for line in lines[2:-2] if f"execution {exec_id} " not in line]
    # 5 events per item (the stream's output; queued, started, output, ended per calculator)
    # come in far fewer lines: one a second at most, each saying how many it stands for.
    assert len(node_lines) <= seconds + 3, node_lines  # + those the run's 2 changes printed
    assert sum(int(n) for line in node_lines for n in MORE_EVENTS.findall(line)) > ITEMS


def _ending(line: str, exec_id: str) -> str:
    assert f"execution {exec_id} COMPLETED | done {ITEMS + 1}, running 0" in line
    return line


def test_watch_on_a_terminal_shows_a_live_table_then_the_final_status(
    cluster: Cluster, services: Services, tmp_path: Path
) -> None:
    exec_id, held = held_execution(cluster.engine, STREAM_INTO_CALC, USER)
    script = watch_script(tmp_path, cluster_env(cluster, services), exec_id)
    with tmux(script) as pane:
        pane.wait_for(lambda screen: f"execution {exec_id}" in screen)
        held.release()
        live = pane.wait_for(lambda screen: "calculator" in screen and "RUNNING ·" in screen)
        ended = pane.wait_for(lambda screen: "exit=" in screen)

    assert PROGRESS_LINE.search(live), live
    assert TABLE_HEADER.search(live), live
    assert "status: COMPLETED\nexit=0" in ended, ended
    assert f"COMPLETED · done {ITEMS + 1}, running 0, queued 0, failed 0 · " in ended, ended
    (tmp_path / "watch-live.txt").write_text(live)  # what docs/observability.md shows


def watch_script(tmp_path: Path, env: dict[str, str], exec_id: str) -> Path:
    exports = [
        f"export {name}={shlex.quote(value)}"
        for name, value in env.items()
        if name.startswith("AUTOEXEC_") or name in ("PATH", "HOME")
    ]
    script = tmp_path / "watch.sh"
    command = f"{shlex.quote(str(AUTOEXEC))} watch {exec_id}; echo exit=$?; sleep 600"
    script.write_text("\n".join([*exports, f"cd {shlex.quote(str(ROOT))}", command, ""]))
    return script


@dataclass
class Pane:
    """A 160x40 tmux pane, on a tmux server of its own."""

    server: list[str]

    def wait_for(self, ready: Callable[[str], bool]) -> str:
        """Capture the pane until ``ready(screen)``; that screen."""
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        screen = ""
        while time.monotonic() < deadline:
            capture = [*self.server, "capture-pane", "-p", "-t", "watch"]
            screen = subprocess.run(capture, capture_output=True, text=True).stdout
            if ready(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"the screen never got there:\n{screen}")


@contextmanager
def tmux(script: Path) -> Iterator[Pane]:
    """``sh script`` in a new pane."""
    server = ["tmux", "-L", f"autoexec-test-{secrets.token_hex(4)}"]
    subprocess.run(
        [*server, "new-session", "-d", "-s", "watch", "-x", "160", "-y", "40", "sh", str(script)],
        check=True,
    )
    try:
        yield Pane(server)
    finally:
        subprocess.run([*server, "kill-server"], check=False)
