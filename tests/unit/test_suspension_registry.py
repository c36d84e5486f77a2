"""The registry of suspension kinds: a ``Suspend`` value finds its kind by its type."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from autoexec.blocks.base import AwaitChild, AwaitReview, Suspend
from autoexec.engine.suspensions.fan_out import AwaitFanOut
from autoexec.engine.suspensions.registry import (
    KINDS,
    Kind,
    SuspensionKinds,
    UnknownSuspensionError,
)
from autoexec.graph import Node
from autoexec.statuses import ExecutionStatus

S = ExecutionStatus


@dataclass(frozen=True)
class AwaitNothing(Suspend):
    pass


class NothingKind(Kind[AwaitNothing]):
    suspends = AwaitNothing
    status = S.WAITING


def test_each_built_in_suspension_waits_in_its_kinds_status() -> None:
    assert KINDS.of(AwaitReview(data=1)).status is S.REVIEW
    assert KINDS.of(AwaitChild("child")).status is S.WAITING
    assert KINDS.of(AwaitFanOut("items", 3)).status is S.WAITING


def test_a_subclass_of_a_suspension_is_handled_by_its_base_types_kind() -> None:
    @dataclass(frozen=True)
    class UrgentReview(AwaitReview):
        pass

    assert KINDS.of(UrgentReview(data=1)) is KINDS.of(AwaitReview(data=1))


def test_an_unregistered_suspension_is_refused_naming_its_type() -> None:
    with pytest.raises(UnknownSuspensionError, match="no suspension kind handles AwaitNothing"):
        KINDS.of(AwaitNothing())


def test_a_registered_kind_is_found_and_takes_over_no_node() -> None:
    kinds = SuspensionKinds(builtin=())
    kind = NothingKind()
    kinds.register(kind)
    assert kinds.of(AwaitNothing()) is kind
    assert kinds.launch_for(Node(id="n", block_id="calculator")) is None


def test_only_the_fan_out_kind_takes_over_a_fan_out_node() -> None:
    assert KINDS.launch_for(Node(id="n", block_id="calculator")) is None
    assert KINDS.launch_for(Node(id="n", block_id="calculator", fan_out="a")) is not None
