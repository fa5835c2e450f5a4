"""api.task_status: a flow run's state (and its current task run) as the engine's TaskStatus."""

from __future__ import annotations

import pytest
from prefect.client.schemas.objects import StateType
from prefect.states import AwaitingRetry, Completed, Running

from api.task_status import STAGES, latest_execution, needs_stage, stage_of, task_status
from contract.models import TaskStatus
from flows.compute import STAGES as FLOW_STAGES
from tests.unit.task_runs import task_run


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


def test_the_stage_is_the_task_run_that_has_not_ended() -> None:
    """The running stage wins over the ones that ended, whatever the order listed."""
    runs = [task_run("process", Running(), 2), task_run("fetch", Completed(), 1)]
    assert stage_of(runs) == "process"


def test_a_stage_waiting_to_retry_is_the_stage() -> None:
    """A stage in AwaitingRetry (Scheduled) after a transient fault is still the stage."""
    runs = [task_run("fetch", AwaitingRetry(), 1, run_count=1)]
    assert stage_of(runs) == "fetch"


def test_between_stages_the_last_one_started_is_the_stage() -> None:
    """When no task run is running (the next not recorded yet), the last one to start."""
    runs = [task_run("process", Completed(), 2), task_run("fetch", Completed(), 1)]
    assert stage_of(runs) == "process"
    assert stage_of([]) is None


def test_the_latest_execution_alone_counts() -> None:
    """After a rerun, the task runs of the previous execution are left aside."""
    runs = [
        task_run("notify", Completed(), 9, execution=1),
        task_run("fetch", Running(), 20, execution=2),
    ]
    assert stage_of(runs) == "fetch"
    assert [run.name for run in latest_execution(runs)] == ["fetch"]


def test_task_runs_other_than_stages_are_ignored() -> None:
    """Only the four stages' task runs name a stage."""
    runs = [task_run("fetch", Completed(), 1), task_run("something-else", Running(), 2)]
    assert stage_of(runs) == "fetch"
