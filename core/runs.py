"""What the API and the worker agree on: names in Prefect and a flow run's parameters."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pydantic import BaseModel

from core.settings import CommonSettings

FLOW_NAME = "compute"
FLOW_ENTRYPOINT = "flows/compute.py:compute"


def deployment_name(slug: str) -> str:
    """One deployment per service, named after its slug."""
    return slug


def work_pool_name(settings: CommonSettings, slug: str) -> str:
    return settings.work_pool or slug


class S3Location(BaseModel):
    """Where a task's files live."""

    host: str
    region: str
    bucket: str


class S3Target(S3Location):
    """Where a task's files live, and the credentials to reach them, sealed for this task
    and host (see core.sealing)."""

    sealed_credentials: str

    def location(self) -> S3Location:
        """Where the files are, without any credential."""
        return S3Location(host=self.host, region=self.region, bucket=self.bucket)


class RunParameters(BaseModel):
    """The parameters of one flow run, as Prefect stores and shows them."""

    task_id: UUID
    data_in: list[str]
    s3: S3Target
    callback_url: str

    def as_prefect_parameters(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
