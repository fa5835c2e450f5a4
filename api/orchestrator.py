"""Every call the API makes to Prefect, kept in one place.

A task is one flow run of the service's deployment, named after the task id, with the
task id as its idempotency key, so the same `/compute` twice is one run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import LogSort
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings

from core.runs import FLOW_NAME, RunParameters, deployment_name

_UNENDED = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]


class OrchestratorUnavailable(Exception):
    """Prefect cannot be reached, or does not know the deployment yet."""


class Orchestrator:
    def __init__(self, client: PrefectClient, slug: str) -> None:
        self._client = client
        self._slug = slug
        self._deployment_id: UUID | None = None

    async def deployment_id(self) -> UUID:
        """The deployment's id, looked up once; the worker creates the deployment."""
        if self._deployment_id is None:
            name = f"{FLOW_NAME}/{deployment_name(self._slug)}"
            try:
                with self._reaching_prefect():
                    deployment = await self._client.read_deployment_by_name(name)
            except ObjectNotFound:
                raise OrchestratorUnavailable(
                    f"deployment {name} is not registered yet; is a worker running?"
                ) from None
            self._deployment_id = deployment.id
        return self._deployment_id

    @contextmanager
    def _reaching_prefect(self) -> Iterator[None]:
        """Turn a transport failure into OrchestratorUnavailable naming Prefect's URL."""
        try:
            yield
        except httpx.HTTPError as error:
            raise OrchestratorUnavailable(
                f"Prefect is unreachable at {self._client.api_url}: {type(error).__name__}"
            ) from None

    async def backlog(self) -> int:
        """Flow runs of the deployment that have not ended."""
        with self._reaching_prefect():
            return await self._client.count_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_UNENDED))
                ),
                deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[await self.deployment_id()])
                ),
            )

    async def submit(self, parameters: RunParameters) -> FlowRun:
        """Create the task's flow run (or find the one already created for it)."""
        task_id = str(parameters.task_id)
        with self._reaching_prefect():
            return await self._client.create_flow_run_from_deployment(
                await self.deployment_id(),
                parameters=parameters.as_prefect_parameters(),
                name=task_id,
                idempotency_key=task_id,
            )

    async def find(self, task_id: UUID) -> FlowRun | None:
        """The flow run of a task, or None when this service never accepted it."""
        with self._reaching_prefect():
            runs = await self._client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[str(task_id)])),
                deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[await self.deployment_id()])
                ),
                limit=1,
            )
        return runs[0] if runs else None

    async def latest_log_lines(self, flow_run_id: UUID, count: int) -> list[str]:
        """The last `count` lines a flow run has logged so far, newest first (Prefect
        receives them in batches, every couple of seconds)."""
        with self._reaching_prefect():
            logs = await self._client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                sort=LogSort.TIMESTAMP_DESC,
                limit=count,
            )
        return [log.message for log in logs]

    def ui_page(self, flow_run_id: UUID) -> str | None:
        """The flow run's page in the Prefect UI (PREFECT_UI_URL, which Prefect derives
        from PREFECT_API_URL when unset); None when Prefect knows no UI address."""
        base = get_current_settings().ui_url
        return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None
