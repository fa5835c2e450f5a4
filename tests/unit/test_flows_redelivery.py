"""When an outcome the engine has not taken is sent again, and the retries before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.states import Failed

from flows.redelivery import Redelivery, is_undelivered, undelivered
from flows.stages import MAX_RETRY_DELAY, retry_delays

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
POLICY = Redelivery(delay=60, max_delay=3600, within=86_400)


def run(executions: int, age: float = 0) -> FlowRun:
    return FlowRun(flow_id=uuid4(), run_count=executions, created=AT - timedelta(seconds=age))


@pytest.mark.parametrize(
    ("executions", "seconds"), [(0, 60), (1, 60), (2, 120), (3, 240), (7, 3600), (500, 3600)]
)
def test_the_delay_doubles_with_each_execution_up_to_the_maximum(
    executions: int, seconds: float
) -> None:
    assert POLICY.due(run(executions), AT) == AT + timedelta(seconds=seconds)


def test_a_delivery_that_would_come_after_the_results_are_gone_is_given_up() -> None:
    """Due later than `within` after the run was created: None (given up)."""
    assert POLICY.due(run(1, age=86_400 - 60), AT) is not None
    assert POLICY.due(run(1, age=86_400 - 59), AT) is None


def test_only_the_undelivered_failure_is_undelivered() -> None:
    state = undelivered("finished", "engine unreachable at http://engine/tasks/1")
    assert is_undelivered(state)
    assert state.is_failed()
    assert "finished" in (state.message or "")
    assert "engine unreachable" in (state.message or "")
    assert not is_undelivered(Failed(message="the run failed"))
    assert not is_undelivered(None)


def test_retry_delays_double_up_to_the_maximum() -> None:
    """Prefect's exponential backoff, no delay above MAX_RETRY_DELAY: an engine back after
    a long outage is tried again within that, not after the doubling's next minutes."""
    assert retry_delays(1, 8) == [1, 2, 4, 8, 16, MAX_RETRY_DELAY, MAX_RETRY_DELAY, MAX_RETRY_DELAY]
    assert retry_delays(0.2, 3) == pytest.approx([0.2, 0.4, 0.8])
