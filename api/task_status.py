"""From a flow run's state (and its current stage) to the engine's TaskStatus."""

from __future__ import annotations

from prefect.client.schemas.objects import StateType

from contract.models import TaskStatus

# The flow's stages (flows.compute) to the status the engine shows while they run. The API
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


# How many of a running flow run's latest log lines to look through for its stage.
LOG_LINES_FOR_STAGE = 5


def stage_of(log_lines: list[str]) -> str | None:
    """The stage of the newest line that names one: the flow starts each line with its
    stage (`fetch: started`); Prefect's own lines name none."""
    for line in log_lines:
        stage = line.split(":", 1)[0]
        if stage in STAGES:
            return stage
    return None


def task_status(state: StateType | None, stage: str | None) -> TaskStatus:
    """`pending` until work starts (never `scheduled`), the stage while running, then the end."""
    if state is None:
        return TaskStatus.PENDING
    if state == StateType.RUNNING:
        return STAGES.get(stage or "", TaskStatus.FETCHING)
    return _BY_STATE[state]
