"""Which time limit applies to a node, and the alarm that stops a sync block blocked in a call."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from autoexec.blocks.base import Block, BlockInput, BlockOutput, RunContext
from autoexec.errors import GraphValidationError, NodeTimeoutError
from autoexec.graph import Node, parse_definition
from autoexec.timeouts import Clock, alarm, time_limit


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
