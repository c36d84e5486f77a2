"""The block run shared by the node task, the fan-out element and the reference: its outputs
checked, how a run that raised ends, and the stop watch."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import closing
from typing import Any, ClassVar

import pytest

from autoexec.block_run.failures import Ending, SupersededError, error_message, log_failure
from autoexec.block_run.run import OutputCheck, RunningBlock
from autoexec.block_run.watch import StopWatch
from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext, TransientError
from autoexec.errors import ExecutionStoppedError, NodeTimeoutError
from autoexec.timeouts import Clock
from tests.unit.test_builtin_blocks import make_context


class _Input(BlockInput):
    fail_after: int = -1  # yield this many outputs, then raise a TransientError
    value: Any = "x"


class _Output(BlockOutput):
    out: Any = None


class Flaky(Block[_Input]):
    id = "flaky"
    name = "Flaky"
    Input = _Input
    Output = _Output
    retries: ClassVar[int] = 2

    def run(self, data: _Input, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        for count in range(3):
            if count == data.fail_after:
                raise TransientError("the service is briefly down")
            yield "out", data.value


def running(check: OutputCheck | None = None, **inputs: Any) -> RunningBlock:
    return RunningBlock(Flaky, inputs, make_context("flaky"), Clock("n1", None), check)


def drained(run: RunningBlock) -> list[Any]:
    with closing(run.outputs()) as outputs:
        return list(outputs)


def raised_by(run: RunningBlock) -> Exception:
    with pytest.raises(Exception) as info:
        drained(run)
    assert isinstance(info.value, Exception)
    return info.value


def test_a_transient_error_of_the_block_is_retried_while_retries_last() -> None:
    run = running(fail_after=1)
    exc = raised_by(run)
    assert run.ending_of(exc, retries_done=0) is Ending.RETRY
    assert run.ending_of(exc, retries_done=2) is Ending.FAILED  # no retry left
    assert run.ending_of(exc, retries_done=None) is Ending.FAILED  # never retried


def test_the_same_error_raised_by_the_engine_is_never_retried() -> None:
    run = running()
    drained(run)
    assert run.ending_of(TransientError("a write failed"), retries_done=0) is Ending.FAILED


def test_a_stop_and_a_take_over_are_not_failures() -> None:
    run = running()
    assert run.ending_of(ExecutionStoppedError(), retries_done=0) is Ending.STOPPED
    assert run.ending_of(SupersededError(), retries_done=0) is Ending.SUPERSEDED


def test_outputs_are_checked_and_their_size_counted() -> None:
    check = OutputCheck(limit=100)
    assert drained(running(check, value="ab")) == [("out", "ab")] * 3
    assert check.total == 3 * len('"ab"')


def test_an_output_over_the_size_limit_fails_the_run_naming_the_setting() -> None:
    exc = raised_by(running(OutputCheck(limit=10), value="x" * 20))
    assert isinstance(exc, ValueError)
    assert "output 'out' is 22 bytes, over the limit of 10" in str(exc)
    assert "AUTOEXEC_MAX_OUTPUT_BYTES" in str(exc)


def test_an_output_that_is_not_json_fails_the_run() -> None:
    exc = raised_by(running(OutputCheck(limit=100), value={1, 2}))
    assert "output 'out' is not JSON-serializable" in str(exc)


def test_without_a_check_any_output_passes_as_the_reference_runs_it() -> None:
    assert drained(running(value="x" * 20)) == [("out", "x" * 20)] * 3


def test_an_output_yielded_after_a_stop_is_not_kept() -> None:
    run = running(OutputCheck(limit=100))
    outputs = run.outputs()
    assert next(outputs) == ("out", "x")
    assert run.clock is not None
    run.clock.interrupt(ExecutionStoppedError())
    with pytest.raises(ExecutionStoppedError):
        next(outputs)


class FakeTimer:
    def __init__(self) -> None:
        self.due: list[Callable[[], None]] = []

    def schedule(self, callback: Callable[[], None], delay: float) -> None:
        self.due.append(callback)

    def fire(self) -> None:
        self.due.pop(0)()


def watch_with(stop_found: Callable[[int], Exception | None]) -> tuple[StopWatch, FakeTimer]:
    timer = FakeTimer()
    logger = logging.LoggerAdapter(logging.getLogger("autoexec.node"), {})
    return StopWatch(timer, Clock("n1", None), logger, stop_found), timer


def test_the_watch_asks_again_until_it_finds_a_stop_then_interrupts_the_block() -> None:
    asked: list[int] = []

    def stop_found(watches: int) -> Exception | None:
        asked.append(watches)
        return ExecutionStoppedError() if watches == 3 else None

    watch, timer = watch_with(stop_found)
    watch.start()
    for _ in range(3):
        timer.fire()
    assert asked == [1, 2, 3]
    assert timer.due == []  # stopped watching
    with pytest.raises(ExecutionStoppedError):
        watch.clock.check()


def test_a_failing_check_is_logged_and_the_watch_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    def stop_found(watches: int) -> Exception | None:
        raise ConnectionError("redis is down")

    watch, timer = watch_with(stop_found)
    watch.start()
    with caplog.at_level(logging.WARNING, "autoexec.node"):
        timer.fire()
    assert "could not check whether to stop" in caplog.text
    assert len(timer.due) == 1
    watch.clock.check()  # not stopped


def test_a_finished_watch_asks_nothing_more() -> None:
    watch, timer = watch_with(lambda watches: pytest.fail("asked after the run finished"))
    watch.start()
    watch.finish()
    timer.fire()
    assert timer.due == []


@pytest.mark.parametrize(
    ("exc", "level", "message"),
    [
        (ValueError("bad input"), logging.INFO, "failed: bad input"),
        (NodeTimeoutError("too slow"), logging.WARNING, "failed: too slow"),
        (KeyError("k"), logging.ERROR, "failed with an unexpected error"),
    ],
)
def test_a_failure_is_logged_at_the_level_of_its_kind(
    exc: Exception, level: int, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.LoggerAdapter(logging.getLogger("autoexec.node"), {})
    with caplog.at_level(logging.INFO, "autoexec.node"):
        log_failure(logger, exc)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(level, message)]


def test_an_unexpected_error_names_its_type_in_the_message() -> None:
    assert error_message(KeyError("k")) == "KeyError: 'k'"
    assert error_message(ValueError("bad input")) == "bad input"
