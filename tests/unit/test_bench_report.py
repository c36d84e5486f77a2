"""The benchmarks' pure report logic: the per-node breakdown, targets, /proc parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchmarks.report import (
    STAGES,
    Result,
    Stamps,
    Target,
    format_breakdown,
    format_ratio,
    median_breakdown,
    parent_pid,
    ratio,
    summary_line,
    vm_rss_kb,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def at(ms: float) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def node(created: float, queued: float, started: float, ended: float) -> Stamps:
    return Stamps(at(created), at(queued), at(started), at(ended))


def test_breakdown_is_the_median_of_each_stage_over_every_hop_of_every_chain() -> None:
    first = [node(0, 1, 2, 3), node(5, 7, 10, 14), node(20, 21, 30, 31)]
    second = [node(100, 101, 102, 103), node(104, 106, 112, 116)]

    breakdown = median_breakdown([first, second])

    # hops: (prev ended -> created, created -> queued, queued -> started, started -> ended)
    # (2, 2, 3, 4), (6, 1, 9, 1), (1, 2, 6, 4)
    assert breakdown == {STAGES[0]: 2.0, STAGES[1]: 2.0, STAGES[2]: 6.0, STAGES[3]: 4.0}


def test_a_stage_without_timestamps_is_left_out_and_reported_as_not_available() -> None:
    chain = [node(0, 1, 2, 3), Stamps(at(4), None, at(6), at(9))]

    breakdown = median_breakdown([chain])

    assert breakdown[STAGES[1]] is None
    assert breakdown[STAGES[2]] is None
    assert breakdown[STAGES[0]] == 1.0
    assert "created -> queued n/a" in format_breakdown(breakdown)
    assert "started -> ended 3.0 ms" in format_breakdown(breakdown)


def test_a_single_node_chain_has_no_hop() -> None:
    assert set(median_breakdown([[node(0, 1, 2, 3)]]).values()) == {None}


def test_targets_say_whether_they_hold() -> None:
    assert Target("ratio", 2.0).describe(1.5) == "target ratio <= 2: met"
    assert Target("ratio", 2.0).describe(10.4) == "target ratio <= 2: NOT met"
    assert Target("ratio", 0.4, at_least=True).describe(0.05) == "target ratio >= 0.4: NOT met"
    assert Target("MB", 20.0).describe(None) == "target MB <= 20: not measured"


def test_summary_line_checks_a_ratio_target_on_the_ratio() -> None:
    line = summary_line(
        "chain",
        Result(26.1, "26.10 ms per hop"),
        Result(2.5, "2.50 ms per hop"),
        Target("ratio", 2.0),
    )

    assert line == (
        "SUMMARY chain: autoexec 26.10 ms per hop; raw celery 2.50 ms per hop; "
        "ratio autoexec/raw-celery: 10.44x; target ratio <= 2: NOT met"
    )


def test_summary_line_checks_any_other_target_on_autoexecs_own_value() -> None:
    line = summary_line(
        "first_item", Result(0.42, "420 ms"), Result(0.03, "30 ms"), Target("seconds", 1.0)
    )

    assert line.endswith("ratio autoexec/raw-celery: 14.00x; target seconds <= 1: met")


def test_summary_line_without_raw_celery() -> None:
    line = summary_line("memory", Result(3.0, "+3.0 MB"), None, Target("MB", 20.0))

    assert line.endswith(
        "raw celery not measured; ratio autoexec/raw-celery: n/a; target MB <= 20: met"
    )
    assert ratio(Result(3.0, ""), Result(0.0, "")) is None


def test_a_small_ratio_keeps_its_digits() -> None:
    assert format_ratio(7.4912) == "7.49x"
    assert format_ratio(0.0065) == "0.0065x"


def test_proc_status_and_stat_parsing() -> None:
    status = "Name:\tcelery\nVmPeak:\t  300000 kB\nVmRSS:\t  123456 kB\nThreads:\t3\n"
    assert vm_rss_kb(status) == 123456
    assert vm_rss_kb("Name:\tzombie\nState:\tZ (zombie)\n") == 0
    assert parent_pid("4242 (celery) worker) S 4200 4242 4242 0 -1") == 4200
