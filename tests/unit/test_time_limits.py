"""Which time limit applies to a node, the alarm that stops a sync block blocked in a call, and
off the main thread the helper thread the node stops waiting for."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from autoexec.block_run.iteration import iterate_block
from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext
from autoexec.errors import ExecutionStoppedError, GraphValidationError, NodeTimeoutError
from autoexec.graph import Node, parse_definition
from autoexec.timeouts import Clock, alarm, time_limit
from tests.unit.test_builtin_blocks import make_context


class _Input(BlockInput):
    pass


class Limited(Block[_Input]):
    id = "limited"
    name = "Limited"
    Input = _Input
    Output = BlockOutput
    timeout_seconds = 5.0

    def run(self, data: _Input, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        yield from ()


class Unlimited(Limited):
    id = "unlimited"
    timeout_seconds = None


def test_the_node_limit_comes_first_then_the_block_then_the_default() -> None:
    timed = Node(id="n", block_id="limited", timeout_seconds=2)
    plain = Node(id="n", block_id="limited")
    assert time_limit(timed, Limited, 1500) == 2
    assert time_limit(plain, Limited, 1500) == 5
    assert time_limit(plain, Unlimited, 1500) == 1500
    assert time_limit(plain, Unlimited, 0) is None  # 0: no default limit


@pytest.mark.parametrize("bad", [0, -1, 86_401, "soon"])
def test_a_node_timeout_must_be_a_positive_number_of_seconds_up_to_a_day(bad: object) -> None:
    definition = {
        "name": "g",
        "nodes": [{"id": "n", "block_id": "calculator", "timeout_seconds": bad}],
        "links": [],
    }
    with pytest.raises(GraphValidationError, match="timeout_seconds"):
        parse_definition(definition)


def test_the_alarm_interrupts_a_block_blocked_in_one_call() -> None:
    clock = Clock("nap", 0.2)
    with (
        pytest.raises(NodeTimeoutError, match="node 'nap' timed out"),
        alarm(clock),
        clock.block_running(),
    ):
        time.sleep(30)


def test_the_alarm_never_interrupts_code_outside_the_block() -> None:
    clock = Clock("nap", 0.05)
    with alarm(clock):
        time.sleep(0.3)  # recording outputs, say: the alarm fires but does not raise
        # The next entry into the block does.
        with pytest.raises(NodeTimeoutError), clock.block_running():
            pass


def test_off_the_main_thread_no_alarm_is_armed() -> None:
    raised: list[BaseException] = []

    def run() -> None:
        clock = Clock("nap", 0.05)
        try:
            with alarm(clock), clock.block_running():
                time.sleep(0.2)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert raised == []


class _Pairs(BlockOutput):
    first: Any = None
    late: Any = None


class Hanging(Limited):
    """Yields once, then blocks in one call until the test releases it."""

    id = "hanging"
    Output = _Pairs
    entered = threading.Event()
    release = threading.Event()
    closed = threading.Event()
    threads: ClassVar[list[str]] = []

    def run(self, data: _Input, ctx: RunContext) -> Iterator[tuple[str, Any]]:
        try:
            Hanging.threads.append(threading.current_thread().name)
            yield "first", 1
            Hanging.entered.set()
            Hanging.release.wait()
            yield "late", 2
        finally:
            Hanging.closed.set()


def test_off_the_main_thread_a_stop_frees_the_node_thread_from_a_hanging_call() -> None:
    clock = Clock("nap", None)
    got: list[tuple[str, Any]] = []

    def run_node() -> None:
        for pair in iterate_block(Hanging, {}, make_context("hanging"), clock):
            got.append(pair)

    with ThreadPoolExecutor(1, thread_name_prefix="node") as pool:
        node = pool.submit(run_node)
        assert Hanging.entered.wait(10)
        clock.interrupt(ExecutionStoppedError())
        with pytest.raises(ExecutionStoppedError):
            node.result(timeout=10)  # while the block still hangs in its call
        assert not Hanging.closed.is_set()
        Hanging.release.set()
        # The abandoned thread closes the block once the call returns; its late pair is dropped.
        assert Hanging.closed.wait(10)
    assert got == [("first", 1)]
    assert Hanging.threads == ["node_0-block"]
