"""From a flow run's state (and its current stage) to the engine's TaskStatus."""

from __future__ import annotations

from prefect.client.schemas.objects import StateType

from contract.models import TaskStatus

# Stage task names (flows.compute) to the status the engine shows while they run. The API
# does not import flows (DESIGN.md §3), so the names are repeated here; a test pins both.
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


def needs_stage(state: StateType | None) -> bool:
    """Only a running flow run has a stage worth looking up."""
    return state == StateType.RUNNING


def task_status(state: StateType | None, stage: str | None) -> TaskStatus:
    """`pending` until work starts (never `scheduled`), the stage while running, then the end."""
    if state is None:
        return TaskStatus.PENDING
    if state == StateType.RUNNING:
        return STAGES.get(stage or "", TaskStatus.FETCHING)
    return _BY_STATE[state]
