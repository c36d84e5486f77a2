"""``autoexec credits`` and ``run --budget`` as subprocesses on the embedded stack with metering
on (``AUTOEXEC_BILLING_ENABLED=true``): no services needed.

``hello.json`` costs 3 credits: its ``calculator`` node 1 and its ``fill_text_template`` node 2
(``agent_input`` and ``agent_output`` are free; the execution cost is turned off here).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from autoexec.cli.views import NODE_TABLE_HEADER
from tests.integration.cli_runs import execution_id
from tests.integration.test_cli_embedded import EXAMPLES, autoexec, expected_stdout
from tests.integration.test_cli_run_embedded import error_line, hello_outputs

HELLO = str(EXAMPLES / "hello.json")
METERED = {"AUTOEXEC_BILLING_ENABLED": "true", "AUTOEXEC_EXECUTION_COST_PER_THRESHOLD": "0"}


def credits(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return autoexec(home, *args, env=METERED)


def balance(home: Path) -> str:
    shown = credits(home, "credits", "show")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def history(home: Path, *args: str) -> list[tuple[str, ...]]:
    """The rows of ``credits history`` under its header, each as (kind, amount, balance after,
    reason), read at the header's column positions."""
    listed = credits(home, "credits", "history", *args)
    assert listed.returncode == 0, listed.stderr
    header, *lines = listed.stdout.splitlines()
    assert header.split("  ")[0] == "TIME"
    starts = [header.index(name) for name in ("KIND", "AMOUNT", "BALANCE AFTER", "REASON")]
    ends = [*starts[1:], None]
    return [tuple(line[a:b].strip() for a, b in zip(starts, ends, strict=True)) for line in lines]


def test_a_new_user_has_no_credits_and_no_history(tmp_path: Path) -> None:
    assert balance(tmp_path) == "balance: 0 credits\n"
    listed = credits(tmp_path, "credits", "history")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "no credit transactions\n")


def test_top_up_adds_to_the_users_balance_once_per_key(tmp_path: Path) -> None:
    topped = credits(tmp_path, "credits", "top-up", "100")
    assert (topped.returncode, topped.stdout) == (0, "balance: 100 credits\n")
    for _ in range(2):
        keyed = credits(tmp_path, "credits", "top-up", "25", "--key", "invoice-7")
        assert (keyed.returncode, keyed.stdout) == (0, "balance: 125 credits\n")
    # Balances are per user (the default user is local); metering off, they can still be read.
    other = credits(tmp_path, "credits", "top-up", "9", "--user", "alice")
    assert (other.returncode, other.stdout) == (0, "balance: 9 credits\n")
    assert autoexec(tmp_path, "credits", "show").stdout == "balance: 125 credits\n"


def test_a_run_is_charged_and_shown_in_history_status_and_its_end(tmp_path: Path) -> None:
    assert credits(tmp_path, "credits", "top-up", "10").returncode == 0
    run = credits(tmp_path, "run", HELLO, "--input", "x=1")
    assert run.returncode == 0, run.stderr
    assert run.stdout == expected_stdout("COMPLETED", hello_outputs(1))
    assert "credits: 3 spent" in run.stderr.splitlines()
    assert history(tmp_path) == [
        ("CHARGE", "-2", "7", "fill_text_template run (node greet)"),
        ("CHARGE", "-1", "9", "calculator run (node add)"),
        ("TOP_UP", "+10", "10", "top-up"),
    ]
    assert len(history(tmp_path, "--limit", "1")) == 1
    (top_up, *_) = json.loads(credits(tmp_path, "credits", "history", "--json").stdout)[::-1]
    assert (top_up["kind"], top_up["amount"], top_up["balance_after"]) == ("TOP_UP", 10, 10)
    assert balance(tmp_path) == "balance: 7 credits\n"

    lines = credits(tmp_path, "status", execution_id(run.stderr)).stdout.splitlines()
    assert "credits   3 spent" in lines
    table = lines[lines.index("node executions") + 1 :]
    assert table[0].split() == [*NODE_TABLE_HEADER, "COST"]
    costs = {row.split()[1]: row.split()[-1] for row in table[1:]}
    assert costs == {"x": "0", "add": "1", "greet": "2", "sum": "0", "message": "0"}


def test_a_run_with_no_credits_is_refused_with_exit_2_and_nothing_queued(tmp_path: Path) -> None:
    run = credits(tmp_path, "run", HELLO, "--input", "x=1")
    assert run.returncode == 2
    assert run.stdout == ""
    assert error_line(run.stderr) == (
        "error: user 'local' has a balance of 0 credits: top up before running a graph "
        "(autoexec credits top-up N, or api.top_up)"
    )
    assert "execution" not in run.stderr  # nothing was submitted
    listed = credits(tmp_path, "executions")
    assert (listed.returncode, listed.stdout, listed.stderr) == (0, "", "no executions\n")


def test_a_budget_fails_the_node_that_would_pass_it_and_rerun_takes_a_new_one(
    tmp_path: Path,
) -> None:
    assert credits(tmp_path, "credits", "top-up", "100").returncode == 0
    within = credits(tmp_path, "run", HELLO, "--input", "x=1", "--budget", "3")
    assert within.returncode == 0, within.stderr
    assert "credits: 3 spent of a budget of 3" in within.stderr.splitlines()

    run = credits(tmp_path, "run", HELLO, "--input", "x=1", "--budget", "2")
    assert run.returncode == 1
    assert run.stdout == expected_stdout("FAILED", {"sum": [2]})
    error = (
        "BudgetExceededError: node 'greet' (fill_text_template) costs 2 credits; "
        "the run has spent 1 of its credit_budget of 2"
    )
    assert f"error: {error}" in run.stderr.splitlines()
    assert "credits: 1 spent of a budget of 2" in run.stderr.splitlines()
    shown = credits(tmp_path, "status", execution_id(run.stderr)).stdout.splitlines()
    assert "credits   1 spent of a budget of 2" in shown
    assert f"  greet (fill_text_template, node execution 8): {error}" in shown

    rerun = credits(tmp_path, "rerun", execution_id(run.stderr), "--budget", "10")
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout == expected_stdout("COMPLETED", hello_outputs(1))
    assert "credits: 3 spent of a budget of 10" in rerun.stderr.splitlines()
    assert balance(tmp_path) == "balance: 93 credits\n"


def test_a_budget_needs_metering_on(tmp_path: Path) -> None:
    run = autoexec(tmp_path, "run", HELLO, "--budget", "5")
    assert run.returncode == 2
    assert run.stdout == ""
    assert error_line(run.stderr) == (
        "error: credit_budget needs metering on (AUTOEXEC_BILLING_ENABLED=true): with it off "
        "nothing costs credits, so a budget would never stop the run"
    )
