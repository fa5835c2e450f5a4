"""Request and callback bodies exactly as the Core engine sends and accepts them."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field


class TaskStatus(StrEnum):
    """Statuses a service reports for a task (the engine adds `archived`)."""

    PENDING = "pending"
    FETCHING = "fetching"
    PROCESSING = "processing"
    SAVING = "saving"
    FINISHED = "finished"
    ERROR = "error"
    SCHEDULED = "scheduled"
    SKIPPED = "skipped"
    UNAVAILABLE = "unavailable"


class EngineTask(BaseModel):
    """The `task` object inside a ServiceTask; the engine's other keys are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: UUID
    data_in: list[str]
    data_out: list[str] | None = None
    status: TaskStatus = TaskStatus.PENDING
    service_id: UUID | None = None
    pipeline_execution_id: UUID | None = None
    error_message: str | None = None


class ServiceTask(BaseModel):
    """The body of `POST /compute`."""

    model_config = ConfigDict(extra="ignore")

    s3_access_key_id: str
    s3_secret_access_key: str = Field(repr=False)
    s3_region: str
    s3_host: AnyHttpUrl
    s3_bucket: str
    task: EngineTask
    callback_url: AnyHttpUrl


class TaskUpdate(BaseModel):
    """The body of `PATCH {callback_url}`: `data_out` is a list, never null."""

    status: TaskStatus
    data_out: list[str] = Field(default_factory=list)
    error_message: str | None = None


class StatusAnswer(BaseModel):
    """`{"status": ...}`, the shape of every status answer."""

    status: str
