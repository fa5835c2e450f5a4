"""api.task_status: a flow run's state (and stage) as the engine's TaskStatus."""

from __future__ import annotations

import pytest
from prefect.client.schemas.objects import StateType

from api.task_status import STAGES, needs_stage, stage_of, task_status
from contract.models import TaskStatus
from flows.compute import STAGES as FLOW_STAGES


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (StateType.SCHEDULED, TaskStatus.PENDING),
        (StateType.PENDING, TaskStatus.PENDING),
        (StateType.PAUSED, TaskStatus.PENDING),
        (StateType.COMPLETED, TaskStatus.FINISHED),
        (StateType.FAILED, TaskStatus.ERROR),
        (StateType.CRASHED, TaskStatus.ERROR),
        (StateType.CANCELLED, TaskStatus.ERROR),
        (StateType.CANCELLING, TaskStatus.ERROR),
    ],
)
def test_each_final_or_waiting_state_maps(state: StateType, expected: TaskStatus) -> None:
    """Waiting states read pending, success finished, every failure error."""
    assert task_status(state, None) is expected
    assert task_status(state, "process") is expected  # the stage matters only when running


def test_every_state_type_has_a_status() -> None:
    """No Prefect state (present or added later) makes task_status raise."""
    for state in StateType:
        assert task_status(state, None) in set(TaskStatus)


def test_scheduled_is_never_reported() -> None:
    """The engine must see pending, never scheduled, until work starts."""
    for state in StateType:
        for stage in (None, *STAGES):
            assert task_status(state, stage) is not TaskStatus.SCHEDULED


@pytest.mark.parametrize(
    ("stage", "expected"),
    [
        ("fetch", TaskStatus.FETCHING),
        ("process", TaskStatus.PROCESSING),
        ("upload", TaskStatus.SAVING),
        ("notify", TaskStatus.SAVING),
    ],
)
def test_running_uses_the_stage(stage: str, expected: TaskStatus) -> None:
    """While running, the current stage decides the status."""
    assert task_status(StateType.RUNNING, stage) is expected


@pytest.mark.parametrize("stage", [None, "", "unknown-stage", "Fetch"])
def test_running_with_unknown_stage_is_fetching(stage: str | None) -> None:
    """A running flow with no known stage yet is fetching (work has started)."""
    assert task_status(StateType.RUNNING, stage) is TaskStatus.FETCHING


def test_no_state_is_pending() -> None:
    """No flow-run state yet reads pending."""
    assert task_status(None, None) is TaskStatus.PENDING
    assert task_status(None, "process") is TaskStatus.PENDING


def test_only_running_needs_a_stage() -> None:
    """needs_stage is true for RUNNING alone."""
    assert needs_stage(StateType.RUNNING)
    assert not needs_stage(None)
    for state in StateType:
        if state is not StateType.RUNNING:
            assert not needs_stage(state)


def test_stages_equal_the_flow_stages() -> None:
    """The API's copy of the stage names equals the flow's, so the two cannot drift."""
    assert FLOW_STAGES == STAGES


def test_stage_is_read_from_the_newest_line_that_names_one() -> None:
    """Lines newest first: Prefect's own lines are skipped, the flow's name the stage."""
    lines = ["Finished in state Running()", "upload: started", "process: 1 output(s), 9 bytes"]
    assert stage_of(lines) == "upload"
    assert stage_of(["Beginning flow run 'x' for flow 'compute'"]) is None
    assert stage_of([]) is None
