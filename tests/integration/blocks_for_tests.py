"""Blocks used only by the integration tests (loaded through AUTOEXEC_BLOCK_MODULES)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import redis.exceptions

from autoexec.blocks.base import (
    Block,
    BlockCost,
    BlockInput,
    BlockOutput,
    CostType,
    RunContext,
    TransientError,
)


class SlowStreamInput(BlockInput):
    count: int
    delay: float = 0.5


class SlowStreamOutput(BlockOutput):
    item: Any = None


class SlowStreamBlock(Block[SlowStreamInput]):
    """Yields 0..count-1 on ``item``, sleeping ``delay`` seconds before each."""

    id = "test_slow_stream"
    name = "Slow stream (tests)"
    description = "Yields count numbers slowly, to observe streaming."
    Input = SlowStreamInput
    Output = SlowStreamOutput

    def run(self, data: SlowStreamInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        for index in range(data.count):
            time.sleep(data.delay)
            yield "item", index


class CrashInput(BlockInput):
    value: Any = None


class CrashBlock(Block[CrashInput]):
    """Raises an unexpected error (not a ValueError)."""

    id = "test_crash"
    name = "Crash (tests)"
    description = "Raises RuntimeError."
    Input = CrashInput
    Output = BlockOutput

    def run(self, data: CrashInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        raise RuntimeError("boom")
        yield  # pragma: no cover


class ShoutInput(BlockInput):
    text: str


class ShoutOutput(BlockOutput):
    result: str


class ShoutBlock(Block[ShoutInput]):
    """Upper-cases its text: a custom block that only workers configured for tests have."""

    id = "test_shout"
    name = "Shout (tests)"
    description = "Yields the text in capitals."
    Input = ShoutInput
    Output = ShoutOutput

    def run(self, data: ShoutInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "result", data.text.upper()


class YieldThenWaitInput(BlockInput):
    seconds: float
    fail: bool = False


class YieldThenWaitOutput(BlockOutput):
    item: Any = None


class YieldThenWaitBlock(Block[YieldThenWaitInput]):
    """Yields 0 on ``item``, then waits up to ``seconds`` for the run to be stopped; then
    raises a ValueError if ``fail``."""

    id = "test_yield_then_wait"
    name = "Yield then wait (tests)"
    description = "Yields one item, then blocks until stopped or the time is up."
    Input = YieldThenWaitInput
    Output = YieldThenWaitOutput

    def run(self, data: YieldThenWaitInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "item", 0
        give_up = time.monotonic() + data.seconds
        while not ctx.is_cancelled() and time.monotonic() < give_up:
            time.sleep(0.02)
        if data.fail:
            raise ValueError("gave up waiting")


class SleepInput(BlockInput):
    seconds: float


class SleepOutput(BlockOutput):
    done: Any = None


class SleepBlock(Block[SleepInput]):
    """Blocks in one call for ``seconds``, then yields ``done``: a hanging sync block."""

    id = "test_sleep"
    name = "Sleep (tests)"
    description = "time.sleep, then one output."
    Input = SleepInput
    Output = SleepOutput

    def run(self, data: SleepInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        time.sleep(data.seconds)
        yield "done", data.seconds


class AsyncSleepBlock(Block[SleepInput]):
    """Awaits ``seconds``, then yields ``done``; its block-level time limit is 1 s."""

    id = "test_async_sleep"
    name = "Async sleep (tests)"
    description = "asyncio.sleep, then one output."
    Input = SleepInput
    Output = SleepOutput
    timeout_seconds = 1.0

    async def run(self, data: SleepInput, ctx: RunContext) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.sleep(data.seconds)
        yield "done", data.seconds


class KillWorkerInput(BlockInput):
    value: Any = None


class KillWorkerBlock(Block[KillWorkerInput]):
    """Kills the process running it (kill -9), every time: a node no worker survives."""

    id = "test_kill_worker"
    name = "Kill worker (tests)"
    description = "SIGKILL to its own process."
    Input = KillWorkerInput
    Output = BlockOutput

    def run(self, data: KillWorkerInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        os.kill(os.getpid(), signal.SIGKILL)
        yield "never", None  # pragma: no cover


class OwnRedisDownBlock(Block[KillWorkerInput]):
    """Raises the error a block's own Redis connection would: the block's failure."""

    id = "test_own_redis_down"
    name = "Own Redis down (tests)"
    description = "Raises redis.exceptions.ConnectionError."
    Input = KillWorkerInput
    Output = BlockOutput

    def run(self, data: KillWorkerInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        raise redis.exceptions.ConnectionError("the block's own Redis is down")
        yield  # pragma: no cover


class FlakyInput(BlockInput):
    counter_file: str
    fail_times: int


class FlakyOutput(BlockOutput):
    runs: Any = None


class FlakyBlock(Block[FlakyInput]):
    """Fails transiently its first ``fail_times`` runs (counted in ``counter_file``), then
    yields how many runs it took; three retries, 0.1 s apart (doubling)."""

    id = "test_flaky"
    name = "Flaky (tests)"
    description = "TransientError the first N times."
    Input = FlakyInput
    Output = FlakyOutput
    retries = 3
    retry_backoff_seconds = 0.1

    def run(self, data: FlakyInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        counter = Path(data.counter_file)
        runs = int(counter.read_text() or "0") + 1 if counter.exists() else 1
        counter.write_text(str(runs))
        if runs <= data.fail_times:
            raise TransientError(f"rate limited (run {runs})")
        yield "runs", runs


class GatedFlakyInput(BlockInput):
    directory: str
    fail_times: int


class GatedFlakyBlock(Block[GatedFlakyInput]):
    """``test_flaky`` whose every run, counted in ``directory``/runs, first waits for the file
    ``directory``/go-<run> (or a cancel): a test acts while a run is under way."""

    id = "test_flaky_gated"
    name = "Gated flaky (tests)"
    description = "Waits for a file, then TransientError the first N times."
    Input = GatedFlakyInput
    Output = FlakyOutput
    retries = 3
    retry_backoff_seconds = 0.1

    def run(self, data: GatedFlakyInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        directory = Path(data.directory)
        runs = run_count(directory / "runs") + 1
        (directory / "runs").write_text(str(runs))
        while not (directory / f"go-{runs}").exists() and not ctx.is_cancelled():
            time.sleep(0.02)
        if runs <= data.fail_times:
            raise TransientError(f"rate limited (run {runs})")
        yield "runs", runs


def run_count(counter: Path) -> int:
    return int(counter.read_text() or "0") if counter.exists() else 0


class WaitForFileInput(BlockInput):
    path: str
    seconds: float = 60.0


class WaitForFileOutput(BlockOutput):
    done: Any = None


class WaitForFileBlock(Block[WaitForFileInput]):
    """Runs until the file ``path`` exists (or ``seconds`` pass), then yields ``done``: a node
    a test keeps RUNNING for as long as it needs, and then ends."""

    id = "test_wait_for_file"
    name = "Wait for a file (tests)"
    description = "Polls for a file, then one output."
    Input = WaitForFileInput
    Output = WaitForFileOutput

    def run(self, data: WaitForFileInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        give_up = time.monotonic() + data.seconds
        while not Path(data.path).exists() and time.monotonic() < give_up:
            time.sleep(0.02)
        yield "done", Path(data.path).exists()


class GatedTouchInput(BlockInput):
    gate: str
    marker_dir: str
    name: str


class GatedTouchBlock(Block[GatedTouchInput]):
    """Waits (up to a minute) for the file ``gate``, then creates ``marker_dir/name`` and
    yields ``done``: a side effect a test can look for after a cancel."""

    id = "test_gated_touch"
    name = "Gated touch (tests)"
    description = "Waits for a gate file, then touches a marker file."
    Input = GatedTouchInput
    Output = WaitForFileOutput

    def run(self, data: GatedTouchInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        give_up = time.monotonic() + 60
        while not Path(data.gate).exists() and time.monotonic() < give_up:
            time.sleep(0.02)
        (Path(data.marker_dir) / data.name).touch()
        yield "done", data.name


class PricedInput(BlockInput):
    text: Any = ""
    tier: str = "basic"


class PricedOutput(BlockOutput):
    text: Any = ""


class PricedRunBlock(Block[PricedInput]):
    """Costs 5 credits a run on the premium tier, else 2; echoes ``text``."""

    id = "test_priced_run"
    name = "Priced run (tests)"
    description = "A RUN cost chosen by a filter on its input."
    Input = PricedInput
    Output = PricedOutput
    costs = (BlockCost(5, {"tier": "premium"}), BlockCost(2))

    def run(self, data: PricedInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "text", data.text


class PricedBytesBlock(Block[PricedInput]):
    """Costs 1 credit per byte of output (JSON): yielding ``text`` costs len(text) + 2."""

    id = "test_priced_bytes"
    name = "Priced bytes (tests)"
    description = "A BYTE cost."
    Input = PricedInput
    Output = PricedOutput
    costs = (BlockCost(1, type=CostType.BYTE),)

    def run(self, data: PricedInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "text", data.text


class PricedSecondsBlock(Block[SleepInput]):
    """Costs 3 credits per second begun; sleeps ``seconds``."""

    id = "test_priced_seconds"
    name = "Priced seconds (tests)"
    description = "A SECOND cost."
    Input = SleepInput
    Output = SleepOutput
    costs = (BlockCost(3, type=CostType.SECOND),)

    def run(self, data: SleepInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        time.sleep(data.seconds)
        yield "done", data.seconds


class PricedKillOnceInput(BlockInput):
    marker: str


class PricedKillOnceBlock(Block[PricedKillOnceInput]):
    """Costs 4 credits a run; the first run kills its worker (kill -9) mid-node, after
    creating ``marker``; the next one yields ``done``."""

    id = "test_priced_kill_once"
    name = "Priced kill once (tests)"
    description = "A RUN cost, and a worker killed the first time."
    Input = PricedKillOnceInput
    Output = SleepOutput
    costs = (BlockCost(4),)

    def run(self, data: PricedKillOnceInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        marker = Path(data.marker)
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        yield "done", True


class CrashAsInput(BlockInput):
    error_type: str


class CrashAsBlock(Block[CrashAsInput]):
    """Raises an unexpected error of a class named ``error_type`` (a RuntimeError)."""

    id = "test_crash_as"
    name = "Crash as (tests)"
    description = "Raises a RuntimeError subclass of the given name."
    Input = CrashAsInput
    Output = BlockOutput

    def run(self, data: CrashAsInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        raise type(data.error_type, (RuntimeError,), {})("a bug")
        yield  # pragma: no cover


class NestedFloatInput(BlockInput):
    number: str  # as Python's float() reads it: "inf", "nan", "1.5"


class NestedFloatOutput(BlockOutput):
    nested: dict[str, Any]


class NestedFloatBlock(Block[NestedFloatInput]):
    """Yields ``float(number)`` deep inside a mapping: the only way a test can make a block
    yield NaN, since no graph input can be NaN."""

    id = "test_nested_float"
    name = "Nested float (tests)"
    description = "Yields {'values': [1.0, float(number)]}."
    Input = NestedFloatInput
    Output = NestedFloatOutput

    def run(self, data: NestedFloatInput, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield "nested", {"values": [1.0, float(data.number)]}
