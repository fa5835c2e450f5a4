"""`GET /tasks/{id}`: more than a status word, read from the task's flow run and its log.

The flow logs each stage's start, every failed attempt, its end with its time, and the
message of a failure (flows.compute: STARTED, ATTEMPT_FAILED, DONE, FAILED); this reads
them back. The API does not import flows (DESIGN.md §3), so the shapes are repeated here
as patterns, and a test pins both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from uuid import UUID

from prefect.client.schemas.objects import FlowRun, StateType
from pydantic import BaseModel, Field

from api.task_status import STAGES, needs_stage, task_status
from contract.models import TaskStatus

_STARTED = re.compile(r"(?P<stage>\w+): started")
_DONE = re.compile(r"(?P<stage>\w+): (?P<what>.*) \((?P<ms>\d+) ms\)", re.S)
_ATTEMPT_FAILED = re.compile(r"(?P<stage>\w+): attempt \d+ of \d+ failed: .*", re.S)
_FAILED = re.compile(r"(?P<stage>\w+): failed: (?P<message>.*)", re.S)
_ERROR_STATES = (StateType.FAILED, StateType.CRASHED, StateType.CANCELLED)
# How many of a run's latest log lines to read: a task logs about ten, plus its retries.
LOG_LINES_FOR_DETAIL = 200


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


@dataclass
class RunLog:
    """What a run's log says about its latest execution."""

    stage: str | None = None
    stages: dict[str, StageDetail] = field(default_factory=dict)
    data_out: list[str] = field(default_factory=list)
    error_message: str | None = None


def read_run_log(lines: list[str]) -> RunLog:
    """Read the flow's lines, oldest first; a `fetch: started` begins a new execution."""
    found = RunLog()
    for line in lines:
        if (match := _STARTED.fullmatch(line)) and match["stage"] in STAGES:
            stage = match["stage"]
            if stage == "fetch":
                found = RunLog()
            found.stage = stage
            found.stages[stage] = StageDetail(ms=None, attempts=1)
        elif (match := _ATTEMPT_FAILED.fullmatch(line)) and match["stage"] in found.stages:
            found.stages[match["stage"]].attempts += 1
        elif (match := _FAILED.fullmatch(line)) and match["stage"] in found.stages:
            found.error_message = match["message"]
        elif (match := _DONE.fullmatch(line)) and match["stage"] in found.stages:
            found.stages[match["stage"]].ms = float(match["ms"])
            if match["stage"] == "upload":
                found.data_out = match["what"].split(", ")
    return found


def task_detail(
    task_id: UUID, flow_run: FlowRun | None, log_lines: list[str], prefect_ui: str | None
) -> TaskDetail:
    """The detail of a task from its flow run (None while it waits in the journal) and
    the run's log lines, oldest first."""
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
    run_log = read_run_log(log_lines)
    state = flow_run.state_type
    error_message = run_log.error_message
    if error_message is None and state in _ERROR_STATES and flow_run.state is not None:
        error_message = flow_run.state.message
    return TaskDetail(
        task_id=task_id,
        status=task_status(state, run_log.stage if needs_stage(state) else None).value,
        flow_run_id=flow_run.id,
        state=flow_run.state_name,
        runs=flow_run.run_count,
        stages=run_log.stages,
        data_out=run_log.data_out,
        error_message=error_message,
        prefect_ui=prefect_ui,
    )
