"""`GET /tasks/{id}`: more than a status word, read from the task's flow run and its task runs.

Each stage is a task run of the flow run (flows.stages): its time is the task run's, its
attempts the task run's `run_count`, and the upload stage's Completed state names the
keys it wrote. The API does not import flows (DESIGN.md §3), so that message's prefix is
repeated here, and a test pins both.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from pydantic import BaseModel, Field

from api.task_status import latest_execution, needs_stage, stage_of, task_status
from contract.models import TaskStatus

# How the upload stage's Completed state message starts, before the keys it wrote.
OUTPUTS = "outputs: "
_ERROR_STATES = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)


class StageDetail(BaseModel):
    ms: float | None = Field(description="time the stage took; null while it runs or if it failed")
    attempts: int = Field(description="attempts so far (more than one after transient faults)")


class TaskDetail(BaseModel):
    """What a person or a script needs to know about a task beyond its status."""

    task_id: UUID
    status: str = Field(description="the status `GET /tasks/{id}/status` answers")
    flow_run_id: UUID | None = Field(description="null while the task waits in the journal")
    state: str | None = Field(description="the flow run's state in Prefect (Running, Failed, ...)")
    runs: int = Field(description="executions of the flow run (a rerun, a dead worker's run again)")
    stages: dict[str, StageDetail] = Field(description="stages of the latest execution, in order")
    data_out: list[str] = Field(description="the output keys in S3, once uploaded")
    error_message: str | None = Field(description="why the task failed, as the engine was told")
    prefect_ui: str | None = Field(description="the flow run's page in the Prefect UI")


def stage_detail(task_run: TaskRun) -> StageDetail:
    """A stage's time (from its first start to its end, retries included, once it has
    completed) and its attempts."""
    ms = None
    if task_run.state_type == StateType.COMPLETED and task_run.start_time and task_run.end_time:
        ms = round((task_run.end_time - task_run.start_time).total_seconds() * 1000, 1)
    return StageDetail(ms=ms, attempts=task_run.run_count)


def outputs_of(execution: Sequence[TaskRun], task_runs: Sequence[TaskRun]) -> list[str]:
    """The keys the upload stage of the execution wrote, from its Completed state's
    message; for a Cached upload (a rerun), those of the flow run's upload that wrote
    them (the cache is the flow run's own: flows.results)."""
    if not any(run.name == "upload" and run.state_type == StateType.COMPLETED for run in execution):
        return []
    for run in sorted(task_runs, key=lambda run: run.flow_run_run_count, reverse=True):
        if run.name == "upload" and run.state_type == StateType.COMPLETED and run.state:
            message = run.state.message or ""
            if message.startswith(OUTPUTS):
                return [key for key in message.removeprefix(OUTPUTS).split(", ") if key]
    return []


def task_detail(
    task_id: UUID, flow_run: FlowRun | None, task_runs: Sequence[TaskRun], prefect_ui: str | None
) -> TaskDetail:
    """The detail of a task from its flow run (None while it waits in the journal) and
    the flow run's task runs."""
    if flow_run is None:
        return TaskDetail(
            task_id=task_id,
            status=TaskStatus.PENDING.value,
            flow_run_id=None,
            state=None,
            runs=0,
            stages={},
            data_out=[],
            error_message=None,
            prefect_ui=None,
        )
    execution = latest_execution(task_runs)
    state = flow_run.state_type
    error_message = None
    if state in _ERROR_STATES and flow_run.state is not None:
        # The flow ends a failed run with the message the engine got (flows.compute).
        error_message = flow_run.state.message
    return TaskDetail(
        task_id=task_id,
        status=task_status(state, stage_of(execution) if needs_stage(state) else None).value,
        flow_run_id=flow_run.id,
        state=flow_run.state_name,
        runs=flow_run.run_count,
        stages={run.name: stage_detail(run) for run in execution},
        data_out=outputs_of(execution, task_runs),
        error_message=error_message,
        prefect_ui=prefect_ui,
    )
