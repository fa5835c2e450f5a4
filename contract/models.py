"""Request and callback bodies exactly as the Core engine sends and accepts them."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, AnyHttpUrl, BaseModel, ConfigDict, Field

# The engine writes inputs as `<uuid4><extension>` at the top of one bucket; a key that
# climbs out of it, or is absolute, is refused before anything is fetched.
MAX_KEY_LENGTH = 1024
MAX_INPUTS = 64


def _plain_key(key: str) -> str:
    if key.startswith("/"):
        raise ValueError("must be a key inside the bucket, not an absolute path")
    if "\\" in key:
        raise ValueError("must not contain backslashes")
    if ".." in key.split("/"):
        raise ValueError("must not contain '..'")
    if any(ord(char) < 32 for char in key):
        raise ValueError("must not contain control characters")
    return key


S3Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH), AfterValidator(_plain_key)]


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
    data_in: list[S3Key] = Field(max_length=MAX_INPUTS)
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
