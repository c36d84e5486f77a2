"""The Python API example of docs/python-api.md (which the README shows too), run as written by
a new user on a fresh HOME: the embedded stack must create and migrate its own database (no
``autoexec db upgrade`` first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PYTHON_API_PAGE = ROOT / "docs" / "python-api.md"
PRINTED = "COMPLETED {'sum': [21], 'message': ['Hello! 20 + 1 = 21']}"


def first_python_block(path: Path) -> str:
    """The first ``python`` code block of a Markdown file."""
    return path.read_text().split("```python\n", 1)[1].split("\n```", 1)[0]


def test_the_readme_shows_the_python_api_example_of_the_docs() -> None:
    assert first_python_block(README) == first_python_block(PYTHON_API_PAGE)


def test_the_python_api_example_runs_on_a_fresh_home(tmp_path: Path) -> None:
    snippet = first_python_block(PYTHON_API_PAGE)
    assert f"# {PRINTED}" in snippet  # the docs show what the snippet prints
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTOEXEC_")}
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=ROOT,  # the snippet opens examples/hello.json
        env={**clean, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{PRINTED}\n"
    assert (tmp_path / ".autoexec" / "embedded.sqlite3").is_file()
