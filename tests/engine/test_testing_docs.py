"""The user guide's first example (docs/testing-your-graphs.md) runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "testing-your-graphs.md"


def test_the_guides_first_example_passes() -> None:
    first = re.search(r"```python\n(.*?)```", GUIDE.read_text(), re.DOTALL)
    assert first is not None
    namespace: dict[str, Any] = {"__name__": "guide_example"}
    exec(compile(first.group(1), str(GUIDE), "exec"), namespace)
    namespace["test_greeting"]()
