"""The README and the docs site say what the code does: the README stays a short door that
opens with its two commands and shows the architecture page's diagram, and the reference tables
name every setting, every task with its queue, and every hook method."""

from __future__ import annotations

import re
from pathlib import Path

from autoexec import tasks
from autoexec.celery_app import app, celery_config
from autoexec.hooks import Hook
from autoexec.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 300
SET_UP = """# autoexec

```bash
make example   # """
# Read by the command line and the embedded stack, not fields of Settings.
CLI_VARIABLES = {"AUTOEXEC_HOME", "AUTOEXEC_USER"}
FIRST_CODE = re.compile(r"`([^`]+)`")


def mermaid_blocks(path: Path) -> list[str]:
    return re.findall(r"```mermaid\n(.*?)\n```", path.read_text(), re.DOTALL)


def table_rows(path: Path, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header row starts with ``header``."""
    lines = path.read_text().splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def setting_rows(path: Path) -> list[list[str]]:
    """The rows of every table of ``path`` that name a setting first."""
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in path.read_text().splitlines()
        if line.startswith("| `AUTOEXEC_")
    ]


def test_the_readme_is_short_and_opens_with_its_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    assert text.startswith(SET_UP)
    commands = text.split("```bash\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in commands] == ["make example", "make test"]


def test_the_readme_links_to_files_that_exist() -> None:
    targets = re.findall(r"\]\(([^)#]+)[^)]*\)", README.read_text())
    assert targets
    assert [target for target in targets if not (ROOT / target).is_file()] == []


def test_the_readme_shows_the_diagram_of_the_architecture_page() -> None:
    (diagram,) = mermaid_blocks(README)
    assert diagram in mermaid_blocks(DOCS / "architecture.md")


def test_every_setting_is_in_the_configuration_page() -> None:
    rows = setting_rows(DOCS / "configuration.md")
    documented = {FIRST_CODE.findall(row[0])[0] for row in rows}
    settings = {f"AUTOEXEC_{name.upper()}" for name in Settings.model_fields}
    assert documented == settings | CLI_VARIABLES


def test_every_task_is_in_the_queue_table_with_its_queue() -> None:
    assert tasks.run_graph.name == "autoexec.run_graph"  # the task module is loaded
    defaults = {name: Settings.model_fields[name].default for name in ("graph_queue", "node_queue")}
    routes = celery_config(load_settings(**defaults))["task_routes"]
    documented = {
        FIRST_CODE.findall(row[0])[0]: FIRST_CODE.findall(row[1])[0]
        for row in table_rows(DOCS / "architecture.md", "| task | queue |")
    }
    names = {name for name in app.tasks if name.startswith("autoexec.")}
    assert set(documented) == names
    assert documented == {name: routes[name]["queue"] for name in names}


def test_every_hook_method_is_in_the_hooks_table() -> None:
    rows = table_rows(DOCS / "observability.md", "| method | called with | when |")
    documented = {name for row in rows for name in FIRST_CODE.findall(row[0])}
    methods = {name for name in vars(Hook) if not name.startswith("_")}
    assert documented == methods
