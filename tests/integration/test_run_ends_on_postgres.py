"""The run-end tests of tests/unit/test_run_ends.py on PostgreSQL, where the locks that ending
a run takes (the user's, the run's row, the refunded node executions') are real."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import migrated_database
from tests.unit.test_run_ends import (
    engine,
    make_engine,
    sent,
    test_a_cancel_ends_what_is_left_refunds_it_closes_reviews_and_hands_the_slot_on,
    test_a_run_limit_ends_the_run_failed_refunds_what_never_started_and_hands_the_slot_on,
    test_a_run_refused_at_admission_ends_its_start_nodes_and_refunds_them,
    test_a_run_whose_message_cannot_be_published_fails_and_refunds_its_start_nodes,
    test_the_last_node_ends_the_run_and_hands_its_slot_on,
    test_the_reconciler_ends_and_refunds_the_queued_nodes_an_ended_run_left,
)

__all__ = [
    "engine",
    "make_engine",
    "sent",
    "test_a_cancel_ends_what_is_left_refunds_it_closes_reviews_and_hands_the_slot_on",
    "test_a_run_limit_ends_the_run_failed_refunds_what_never_started_and_hands_the_slot_on",
    "test_a_run_refused_at_admission_ends_its_start_nodes_and_refunds_them",
    "test_a_run_whose_message_cannot_be_published_fails_and_refunds_its_start_nodes",
    "test_the_last_node_ends_the_run_and_hands_its_slot_on",
    "test_the_reconciler_ends_and_refunds_the_queued_nodes_an_ended_run_left",
]


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """A database of its own: the reconciler's pass looks at every run in it."""
    with migrated_database(postgres_server) as url:
        yield url
