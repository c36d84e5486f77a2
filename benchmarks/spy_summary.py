"""Summarize a ``py-spy record --format raw`` file (collapsed stacks) of a benchmark worker.

    .venv/bin/python -m benchmarks.spy_summary FILE [--top 30] [--match autoexec/]

Per process: samples, then the functions with the most inclusive samples (a function counted once
per stack), optionally only those whose file contains ``--match``; then the top self samples.
Idle samples (py-spy ``--idle``) are included, so waiting on the broker or the database shows.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter, defaultdict
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def frame_key(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def parse(path: Path) -> dict[str, tuple[int, Counter[str], Counter[str]]]:
    """process -> (samples, inclusive counter, self counter)."""
    per: dict[str, list[object]] = defaultdict(lambda: [0, Counter(), Counter()])
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        processes = [f.split(":", 1)[0] for f in frames if f.startswith("process ")]
        process = processes[-1] if processes else "?"
        keys = [frame_key(f) for f in frames if not f.startswith("process ")]
        entry = per[process]
        entry[0] = int(entry[0]) + count  # type: ignore[call-overload]
        inclusive: Counter[str] = entry[1]  # type: ignore[assignment]
        for key in set(keys):
            inclusive[key] += count
        if keys:
            own: Counter[str] = entry[2]  # type: ignore[assignment]
            own[keys[-1]] += count
    return {p: (int(e[0]), e[1], e[2]) for p, e in per.items()}  # type: ignore[call-overload,misc]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("file", type=Path)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--match", default="", help="only functions whose file contains this")
    args = p.parse_args()
    for process, (samples, inclusive, own) in sorted(parse(args.file).items()):
        print(f"\n=== {process}: {samples} samples ===")
        print("inclusive:")
        shown = [(k, n) for k, n in inclusive.most_common() if args.match in k][: args.top]
        for key, n in shown:
            print(f"  {100 * n / samples:5.1f}%  {key}")
        print("self:")
        for key, n in own.most_common(args.top // 2):
            print(f"  {100 * n / samples:5.1f}%  {key}")


if __name__ == "__main__":
    main()
