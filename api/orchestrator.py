"""Every call the API makes to Prefect, kept in one place.

A task is one flow run of the service's deployment, named after the task id, with the
task id as its idempotency key, so the same `/compute` twice is one run.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import DeploymentFlowRunCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterName,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType, TaskRun
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings
from prefect.states import Scheduled, to_state_create

from core.runs import FLOW_NAME, RunParameters, deployment_name

if TYPE_CHECKING:
    from prefect.client.orchestration.routes import ServerRoutes

# Tries more of the runs of a bulk create that met SQLite busy: 10 ms, doubling to 320 ms.
RETRIES = 6
FIRST_DELAY = 0.01
# Prefect's bulk create takes at most this many runs per request.
BULK_CREATE_LIMIT = 100
_BULK_CREATE = "/deployments/{id}/create_flow_run/bulk"
# How the bulk create reports a run that met another writer on SQLite (it answers 200 and
# reports each run). The server begins writes IMMEDIATE (deployments.prefect_server), so
# a writer waits for the lock instead; this stays for a server started otherwise.
_BUSY = "database is locked"
# Task runs read for a flow run: four stages per execution, a few executions.
TASK_RUNS_READ = 100
_UNENDED = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]


def busy(reason: str) -> bool:
    """Whether a refusal only says that Prefect's SQLite database was busy: worth trying
    again later, not a problem of the task's."""
    return _BUSY in reason


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

    async def submit_all(self, batch: Sequence[RunParameters]) -> list[UUID | str]:
        """Create the flow runs of several tasks (or find those already created) in one
        request and one database transaction, with Prefect's bulk create; for each task in
        order, its run's id, or Prefect's reason for not creating it.

        One creation at a time, each its own SQLite write, gave about 3 runs/s under a burst;
        a batch costs one write lock for up to BULK_CREATE_LIMIT runs. Runs that met another
        writer are tried again shortly (`busy_delay`).
        """
        results: dict[int, UUID | str] = {}
        todo = list(range(len(batch)))
        for attempt in range(RETRIES + 1):
            answers = await self._bulk_create([batch[index] for index in todo])
            results.update(zip(todo, answers, strict=True))
            todo = [index for index in todo if busy(str(results[index]))]
            if not todo or attempt == RETRIES:
                break
            await asyncio.sleep(busy_delay(attempt))
        return [results[index] for index in range(len(batch))]

    async def _bulk_create(self, batch: Sequence[RunParameters]) -> list[UUID | str]:
        # Prefect's model of one creation, dumped once; each run's fields are plain JSON
        # already (its model walked every parameter of every run: a tenth of the API's
        # time in a burst).
        template = DeploymentFlowRunCreate(state=to_state_create(Scheduled())).model_dump(
            mode="json", exclude_unset=True
        )
        runs = [
            template
            | {
                "name": str(parameters.task_id),
                "idempotency_key": str(parameters.task_id),
                "parameters": parameters.as_prefect_parameters(),
            }
            for parameters in batch
        ]
        with self._reaching_prefect():
            response = await self._client.request(
                "POST",
                cast("ServerRoutes", _BULK_CREATE),
                path_params={"id": await self.deployment_id()},
                json=runs,
            )
        return [
            UUID(result["flow_run_id"])
            if result["status"] == "CREATED"
            else str(result.get("error") or "refused")
            for result in response.json()["results"]
        ]

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

    async def task_runs(self, flow_run_id: UUID) -> list[TaskRun]:
        """The task runs of a flow run so far: its stages, of every execution (Prefect
        records them from their events, within a second or two)."""
        with self._reaching_prefect():
            return await self._client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                limit=TASK_RUNS_READ,
            )

    def ui_page(self, flow_run_id: UUID) -> str | None:
        """The flow run's page in the Prefect UI (PREFECT_UI_URL, which Prefect derives
        from PREFECT_API_URL when unset); None when Prefect knows no UI address."""
        base = get_current_settings().ui_url
        return f"{base.rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


def busy_delay(attempt: int) -> float:
    """Seconds before try `attempt + 1` of a creation that met SQLite busy: 10 ms,
    doubling, with jitter so that writers that collided do not collide again."""
    return float(FIRST_DELAY * 2**attempt * random.uniform(0.5, 1.5))
