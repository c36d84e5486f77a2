"""Pure helpers of the benchmark reports: the one summary line, the per-node time breakdown from
node executions' timestamps, and worker memory read from /proc text.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

STAGES = (
    "previous ended -> created",
    "created -> queued",
    "queued -> started",
    "started -> ended",
)


class Stamps(NamedTuple):
    """The timestamps of one node execution (None: not set by the engine)."""

    created: datetime | None
    queued: datetime | None
    started: datetime | None
    ended: datetime | None


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds() * 1000


def hop_stages(previous: Stamps, node: Stamps) -> tuple[float | None, ...]:
    """Milliseconds of each of :data:`STAGES` for ``node``, run right after ``previous``."""
    return (
        _ms(previous.ended, node.created),
        _ms(node.created, node.queued),
        _ms(node.queued, node.started),
        _ms(node.started, node.ended),
    )


def median_breakdown(chains: Iterable[Sequence[Stamps]]) -> dict[str, float | None]:
    """Median milliseconds per stage over every hop of every chain (a chain is its node
    executions in graph order); None for a stage no hop has both timestamps of."""
    samples: list[list[float]] = [[] for _ in STAGES]
    for chain in chains:
        for previous, node in itertools.pairwise(chain):
            for bucket, value in zip(samples, hop_stages(previous, node), strict=True):
                if value is not None:
                    bucket.append(value)
    return {
        stage: statistics.median(bucket) if bucket else None
        for stage, bucket in zip(STAGES, samples, strict=True)
    }


def format_breakdown(breakdown: dict[str, float | None]) -> str:
    return ", ".join(
        f"{stage} {'n/a' if ms is None else f'{ms:.1f} ms'}" for stage, ms in breakdown.items()
    )


@dataclass(frozen=True)
class Target:
    """An issue-7 target: ``value <= limit`` (or ``>=`` when ``at_least``) on ``what``."""

    what: str  # "ratio", "seconds", "MB"
    limit: float
    at_least: bool = False

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value >= self.limit if self.at_least else value <= self.limit

    def describe(self, value: float | None) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = {True: "met", False: "NOT met", None: "not measured"}[self.met(value)]
        return f"target {self.what} {sign} {self.limit:g}: {verdict}"


@dataclass(frozen=True)
class Result:
    """One side's result: ``value`` is what the ratio divides, ``text`` says it for a reader."""

    value: float
    text: str


def ratio(autoexec: Result, raw: Result | None) -> float | None:
    """``autoexec / raw``, None when raw was not measured or is zero."""
    if raw is None or raw.value == 0:
        return None
    return autoexec.value / raw.value


def format_ratio(value: float) -> str:
    """Two decimals, or four for a ratio below 0.1 (0.0065x must not read 0.01x)."""
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.4f}x"


def summary_line(name: str, autoexec: Result, raw: Result | None, target: Target) -> str:
    """The one line each benchmark ends with; a target on "ratio" is checked on the ratio,
    any other on autoexec's own value."""
    value_ratio = ratio(autoexec, raw)
    checked = value_ratio if target.what == "ratio" else autoexec.value
    raw_text = raw.text if raw is not None else "not measured"
    ratio_text = "n/a" if value_ratio is None else format_ratio(value_ratio)
    return (
        f"SUMMARY {name}: autoexec {autoexec.text}; raw celery {raw_text}; "
        f"ratio autoexec/raw-celery: {ratio_text}; {target.describe(checked)}"
    )


def vm_rss_kb(status_text: str) -> int:
    """``VmRSS`` in kB from the text of ``/proc/<pid>/status`` (0 for a zombie, which has none)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def parent_pid(stat_text: str) -> int:
    """The parent pid from the text of ``/proc/<pid>/stat`` (the command name may hold spaces
    and parentheses, so the fields are counted from the last ``)``)."""
    return int(stat_text.rsplit(")", 1)[1].split()[1])
