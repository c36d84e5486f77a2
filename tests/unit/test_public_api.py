"""The public API is what docs/python-api.md documents: each name of ``autoexec.api.__all__`` is
a ``### `name` `` heading there, and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

from autoexec import api

PYTHON_API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"
DOCUMENTED_NAME = re.compile(r"^### `(\w+)`$", re.MULTILINE)


def documented_names() -> list[str]:
    return DOCUMENTED_NAME.findall(PYTHON_API_PAGE.read_text())


def test_every_public_name_is_documented_and_nothing_else_is() -> None:
    documented = documented_names()
    assert len(documented) == len(set(documented)), "a name is documented twice"
    assert set(documented) == set(api.__all__)


def test_every_public_name_exists() -> None:
    missing = [name for name in api.__all__ if not hasattr(api, name)]
    assert missing == []


def test_the_review_calls_are_public() -> None:
    assert {"approve", "reject", "list_reviews", "ReviewView"} <= set(api.__all__)
