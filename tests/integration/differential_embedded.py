"""The differential batch (``test_differential``) on the embedded stack, in a process of its
own: ``python -m tests.integration.differential_embedded COUNT``, with ``AUTOEXEC_HOME`` set and
no other ``AUTOEXEC_*`` setting. Prints what the batch covered (JSON); exits 1, naming each
graph that differs from the reference, if any does."""

from __future__ import annotations

import json
import sys

from autoexec.embedded import configure_embedded, embedded_engine
from autoexec.tasks import get_engine
from tests.integration.test_differential import FEATURES, coverage, draw_cases, run_batch


def main(count: int) -> int:
    home = configure_embedded()
    with embedded_engine(home) as server:
        assert server is not None, f"another process runs the engine of {home}"
        cases = draw_cases(count, offset=2)
        try:
            seen = coverage(cases, run_batch(get_engine(), cases))
        except AssertionError as differs:
            print(differs, file=sys.stderr)
            return 1
    print(json.dumps({feature: seen[feature] for feature in FEATURES}))
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
