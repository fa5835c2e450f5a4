"""The routes the engine calls (CONTRACT.md §1)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi_offline import FastAPIOffline
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun

from api.forwarder import Forwarder
from api.guards import BodyLimit
from api.intake import GroupCommit, Intake
from api.metrics import CONTENT_TYPE, ApiMetrics
from api.orchestrator import Orchestrator, OrchestratorUnavailable
from api.registration import Registration
from api.task_detail import TaskDetail, task_detail
from api.task_status import needs_stage, stage_of, task_status
from contract.models import ServiceTask, StatusAnswer, TaskStatus
from core.logs import bound
from core.runs import RunParameters, S3Target
from core.sealing import Credentials, Sealer
from core.settings import ApiSettings, host_allowed
from services.base import Service

log = logging.getLogger("api")


def _orchestrator(request: Request) -> Orchestrator:
    found: Orchestrator = request.app.state.orchestrator
    return found


Prefect = Annotated[Orchestrator, Depends(_orchestrator)]


def create_app(settings: ApiSettings, service: Service) -> FastAPI:
    sealer = Sealer(settings.sealing_key)
    description = service.description

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Checks the description first: one the engine would choke on stops the start here.
        registration = Registration(settings, description)
        intake = Intake(settings.intake_path)
        async with get_client() as client:
            orchestrator = Orchestrator(client, description.slug)
            forwarder = Forwarder(intake, orchestrator, settings.run_retention)
            app.state.intake = intake
            app.state.journal = GroupCommit(intake)
            app.state.orchestrator = orchestrator
            app.state.forwarder = forwarder
            forwarding = asyncio.create_task(forwarder.run())
            # Announcing needs the service to be serving (the engine calls GET /status
            # first), yet uvicorn opens its socket only after this startup has returned.
            # So the announcements run in background tasks that first wait until
            # SERVICE_URL/status answers: no race with uvicorn, and startup never waits
            # on an engine.
            registration.start()
            try:
                yield
            finally:
                # uvicorn has stopped serving by now: tell the engines first, so they stop
                # routing tasks here as soon as possible.
                await registration.stop()
                forwarding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await forwarding
                intake.close()

    # /docs and /redoc with their scripts, styles and icon served from here (under
    # /static-offline-docs), not from a CDN: they work without internet.
    app = FastAPIOffline(
        title=description.name,
        summary=description.summary,
        description=description.description,
        lifespan=lifespan,
        # FastAPI's OpenTelemetry looks up the global providers at every request (7 % of
        # a /compute); this service exports none.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )

    metrics = ApiMetrics()
    app.state.metrics = metrics

    def refused_body(path: str) -> None:
        if path == "/compute":
            metrics.rejected("too_large")

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes, on_refuse=refused_body)
    allowed_hosts = settings.hosts_allowed()

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        if request.url.path == "/compute":
            metrics.rejected("invalid")
        # FastAPI's default echoes the offending input, which may be the S3 secret.
        detail = [
            {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
            for item in error.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.exception_handler(OrchestratorUnavailable)
    async def unavailable(request: Request, error: OrchestratorUnavailable) -> JSONResponse:
        log.warning("cannot reach the orchestrator: %s", error)
        return JSONResponse(
            status_code=503, content={"detail": str(error)}, headers={"Retry-After": "5"}
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/description")
    async def get_description() -> dict[str, Any]:
        """What the service announces to the engines: its input and output fields with their
        types (the client reads it to pair files with fields and name the outputs)."""
        return description.announcement(settings.service_url)

    @app.get(
        "/status",
        responses={503: {"description": "The service cannot run tasks now; `detail` says why"}},
    )
    async def status(request: Request) -> StatusAnswer:
        forwarder: Forwarder = request.app.state.forwarder
        # The forwarder talks to Prefect every second or so: its last failure, if it has
        # not succeeded since, is the answer, without a call to Prefect per health check.
        reason = forwarder.last_error
        if reason is not None:
            raise HTTPException(
                status_code=503,
                detail=f"cannot run tasks now: {reason}",
                headers={"Retry-After": "5"},
            )
        return StatusAnswer(status="Service is available")

    @app.get("/metrics", response_class=Response)
    async def get_metrics(request: Request) -> Response:
        """Prometheus metrics of this API process: tasks accepted, rejected by reason, and
        the backlog (what the worker does is on the worker's own metrics port)."""
        intake: Intake = request.app.state.intake
        forwarder: Forwarder = request.app.state.forwarder
        body = metrics.render(journal=intake.waiting, prefect=forwarder.unended_in_prefect)
        return Response(body, media_type=CONTENT_TYPE)

    @app.post("/compute")
    async def compute(body: ServiceTask, request: Request) -> StatusAnswer:
        forwarder: Forwarder = request.app.state.forwarder
        with bound(task_id=str(body.task.id)), forwarder.accepting():
            return await accept(body, request)

    async def accept(body: ServiceTask, request: Request) -> StatusAnswer:
        task_id = body.task.id
        refused = [
            {
                "loc": ["body", name],
                "msg": f"host of {url} is not in ALLOWED_HOSTS",
                "type": "host_not_allowed",
            }
            for name, url in (
                ("callback_url", str(body.callback_url)),
                ("s3_host", str(body.s3_host)),
            )
            if not host_allowed(url, allowed_hosts)
        ]
        if refused:
            log.warning("refused task: host not allowed")
            metrics.rejected("host_not_allowed")
            raise HTTPException(status_code=422, detail=refused)
        intake: Intake = request.app.state.intake
        forwarder: Forwarder = request.app.state.forwarder
        # Never waits on Prefect: the forwarder keeps its share of the backlog fresh.
        backlog = intake.waiting + forwarder.unended_in_prefect
        if backlog >= settings.max_tasks:
            log.warning("refused task: backlog full")
            metrics.rejected("backlog_full")
            raise HTTPException(
                status_code=503,
                detail=f"{backlog} tasks are already waiting or running "
                f"(MAX_TASKS is {settings.max_tasks}); retry later",
                headers={"Retry-After": "5"},
            )
        s3_host = str(body.s3_host).rstrip("/")
        # Bound to this task and host: copied into another run, the token does not open.
        sealed = sealer.seal(
            Credentials(body.s3_access_key_id, body.s3_secret_access_key),
            task_id=task_id,
            s3_host=s3_host,
        )
        parameters = RunParameters(
            task_id=task_id,
            data_in=body.task.data_in,
            s3=S3Target(
                host=s3_host,
                region=body.s3_region,
                bucket=body.s3_bucket,
                sealed_credentials=sealed,
            ),
            callback_url=str(body.callback_url),
        )
        await request.app.state.journal.add(parameters)
        forwarder.wake()
        log.info("accepted task")
        metrics.accepted.inc()
        return StatusAnswer(status="Task added to the queue")

    async def flow_run_of(task_id: UUID, request: Request, prefect: Orchestrator) -> FlowRun | None:
        """The task's flow run; None while the task waits in the journal; 404 when this
        service never accepted it."""
        intake: Intake = request.app.state.intake
        if await asyncio.to_thread(intake.contains, task_id):
            return None
        flow_run = await prefect.find(task_id)
        if flow_run is None:
            raise HTTPException(status_code=404, detail=f"Task {task_id} not found")
        return flow_run

    @app.get("/tasks/{task_id}/status")
    async def get_task_status(task_id: UUID, request: Request, prefect: Prefect) -> StatusAnswer:
        flow_run = await flow_run_of(task_id, request, prefect)
        if flow_run is None:
            return StatusAnswer(status=TaskStatus.PENDING.value)
        state = flow_run.state_type
        stage = None
        if needs_stage(state):
            stage = stage_of(await prefect.task_runs(flow_run.id))
        return StatusAnswer(status=task_status(state, stage).value)

    @app.get(
        "/tasks/{task_id}",
        responses={404: {"description": "The service never accepted this task"}},
    )
    async def get_task(task_id: UUID, request: Request, prefect: Prefect) -> TaskDetail:
        """The task's status, stage times and attempts, outputs, error message and the
        page of its flow run in the Prefect UI."""
        flow_run = await flow_run_of(task_id, request, prefect)
        if flow_run is None:
            return task_detail(task_id, None, [], None)
        task_runs = await prefect.task_runs(flow_run.id)
        return task_detail(task_id, flow_run, task_runs, prefect.ui_page(flow_run.id))

    return app
