"""From a flow run's state (and its current task run) to the engine's TaskStatus."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from prefect.client.schemas.objects import StateType, TaskRun

from contract.models import TaskStatus

# The flow's stages, its task runs' names (flows.compute), to the status the engine shows
# while they run. The API does not import flows (DESIGN.md §3), so the names are repeated
# here; a test pins both.
STAGES = {
    "fetch": TaskStatus.FETCHING,
    "process": TaskStatus.PROCESSING,
    "upload": TaskStatus.SAVING,
    "notify": TaskStatus.SAVING,
}

_BY_STATE = {
    StateType.SCHEDULED: TaskStatus.PENDING,
    StateType.PENDING: TaskStatus.PENDING,
    StateType.PAUSED: TaskStatus.PENDING,
    StateType.COMPLETED: TaskStatus.FINISHED,
    StateType.FAILED: TaskStatus.ERROR,
    StateType.CRASHED: TaskStatus.ERROR,
    StateType.CANCELLED: TaskStatus.ERROR,
    StateType.CANCELLING: TaskStatus.ERROR,
}
# A task run in one of these has not ended: it runs, or waits to run (again, after a fault).
_UNENDED = (StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED)
_NEVER = datetime.min


def needs_stage(state: StateType | None) -> bool:
    """Only a running flow run has a stage worth looking up."""
    return state == StateType.RUNNING


def latest_execution(task_runs: Sequence[TaskRun]) -> list[TaskRun]:
    """The stages' task runs of the flow run's latest execution (a rerun from the UI or a
    dead worker's run started again begins a new one), in the order they started."""
    stages = [run for run in task_runs if run.name in STAGES]
    if not stages:
        return []
    latest = max(run.flow_run_run_count for run in stages)
    return sorted(
        (run for run in stages if run.flow_run_run_count == latest),
        key=lambda run: _naive(run.start_time or run.expected_start_time or run.created),
    )


def _naive(at: datetime | None) -> datetime:
    return at.replace(tzinfo=None) if at is not None else _NEVER


def stage_of(task_runs: Sequence[TaskRun]) -> str | None:
    """The stage whose task run has not ended, else the last one to start (Prefect records
    task runs from their events, so a stage may show a moment after it starts)."""
    execution = latest_execution(task_runs)
    for run in reversed(execution):
        if run.state_type in _UNENDED:
            return run.name
    return execution[-1].name if execution else None


def task_status(state: StateType | None, stage: str | None) -> TaskStatus:
    """`pending` until work starts (never `scheduled`), the stage while running, then the end."""
    if state is None:
        return TaskStatus.PENDING
    if state == StateType.RUNNING:
        return STAGES.get(stage or "", TaskStatus.FETCHING)
    return _BY_STATE[state]
