"""Making sure Prefect knows the service's work pool and deployment (idempotent)."""

from __future__ import annotations

import logging
from pathlib import Path
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.utilities.callables import parameter_schema

from core.runs import FLOW_ENTRYPOINT, FLOW_NAME, deployment_name
from flows.compute import compute
from services.base import Service

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


async def ensure_deployment(client: PrefectClient, service: Service, pool: str) -> UUID:
    """Create the work pool if missing, and create or update the deployment; its id."""
    try:
        # A "process" pool, so that a stock `prefect worker start --pool` can also serve it.
        await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
        log.info("created work pool %s", pool)
    except ObjectAlreadyExists:
        pass
    flow_id = await client.create_flow_from_name(FLOW_NAME)
    description = service.description
    deployment_id = await client.create_deployment(
        flow_id=flow_id,
        name=deployment_name(description.slug),
        description=f"{description.name}: {description.summary}",
        work_pool_name=pool,
        entrypoint=FLOW_ENTRYPOINT,
        path=str(ROOT),
        tags=[description.slug],
        parameter_openapi_schema=parameter_schema(compute).model_dump_for_openapi(),
        enforce_parameter_schema=False,
    )
    log.info("deployment %s/%s ready in pool %s", FLOW_NAME, description.slug, pool)
    return deployment_id
