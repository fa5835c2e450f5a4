"""The flow every task runs as: fetch → process → upload → notify, each a Prefect task.

The stages are task runs of the flow run (flows.stages), so the run's page in the Prefect
UI shows each with its state, duration and retries, and the API reads a task's stage and
stage times from them (api.task_status, api.task_detail). Whatever goes wrong, the engine
is told: an `error` callback from the flow itself, or from the failure, crash and
cancellation hooks when the flow cannot run on. A flow run that failed ends with the very
message the engine got. A final callback the engine has not taken after its retries
(the engine away for minutes) ends the run `Undelivered`, to be delivered again by a
later execution (flows.redelivery).

Before its first stage the flow checks the run itself (flows.inputs.admit), for a run
may have been made through Prefect's API or UI rather than by the API: a callback_url or
S3 host outside ALLOWED_HOSTS, or sealed credentials that do not open for the run's task
and S3 host, fail the run at once, with the reason as its state message and no request
to S3. The engine gets the `error` callback only when the callback_url itself is allowed:
a task the API accepted may meet a stricter ALLOWED_HOSTS or a new SEALING_KEY by the
time it runs, and its engine must still hear how it ended; a callback_url that is not
allowed is never called, by the flow, its hooks or the reaper.

With PROGRESS_UPDATES the engine also hears `fetching`, `processing` and `saving` as
those stages start. Each run ends with one `summary:` line (outcome, the execution's
own time and the stages', the time since the task was handed to Prefect, sizes) and is
counted in the worker's metrics (flows.metrics). A failure that was foreseen (a
`TaskError`: a bad input, a missing key, retries that ran out) is logged with its reason
only; a traceback in the run's log means something nobody foresaw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar
from uuid import UUID

from prefect import Flow, flow, get_client, get_run_logger
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import FlowRunContext
from prefect.logging.loggers import flow_run_logger
from prefect.states import Failed

from contract.models import TaskStatus, TaskUpdate
from core.runs import FLOW_NAME, RunParameters, S3Location, S3Target
from flows.callback import send_update
from flows.errors import PermanentError, TaskError, TransientError
from flows.inputs import CallbackRefused, admit, check_callback
from flows.metrics import (
    ERRORED,
    FINISHED,
    RUNNING,
    STAGE_SECONDS,
    TASK_SECONDS,
    UNDELIVERED,
)
from flows.redelivery import is_undelivered, undelivered
from flows.results import delivery_if_known
from flows.runtime import runtime
from flows.stages import result_store, stages
from services.base import Blob

T = TypeVar("T")
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

# The outcome of a run whose final callback the engine did not take (flows.redelivery).
UNDELIVERED_OUTCOME = "undelivered"

# The stages (the task runs' names), and what `GET /tasks/{id}/status` reports while each
# runs (the API repeats these in api.task_status.STAGES).
STAGES = {
    "fetch": TaskStatus.FETCHING,
    "process": TaskStatus.PROCESSING,
    "upload": TaskStatus.SAVING,
    "notify": TaskStatus.SAVING,
}


def _size(blobs: Mapping[str, Blob]) -> int:
    return sum(len(blob.data) for blob in blobs.values())


def describe(error: BaseException) -> str:
    """The message a person reading the callback can act on."""
    if isinstance(error, TaskError):
        return error.message
    return f"unexpected {type(error).__name__}: {error}"


def reason_class(error: BaseException) -> str:
    """The class of an error, for the metrics: retrying could not help, retries ran
    out, or something nobody foresaw."""
    if isinstance(error, PermanentError):
        return "permanent"
    if isinstance(error, TransientError):
        return "transient"
    return "unexpected"


class _ForeseenFailures(logging.Filter):
    """Drops the traceback from a line about a `TaskError`: its message is the reason, and
    the stack of the worker's code that reported it tells a reader nothing more."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TaskError):
            record.exc_info = None
            record.exc_text = None
        return True


_FORESEEN_FAILURES = _ForeseenFailures()


def quiet_foreseen_failures() -> None:
    """Log the failures of task runs and flow runs that were foreseen (a bad input, a
    missing key, retries that ran out) with their reason only, in the worker's log and in
    the run's log in the Prefect UI; anything else keeps its traceback."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logging.getLogger(name).addFilter(_FORESEEN_FAILURES)


@dataclass
class RunRecord:
    """What one run has done so far, for its summary line and the metrics."""

    callback_url: str
    # When the task was handed to Prefect (the run's creation), in epoch seconds: a rerun
    # keeps its run, and so the first hand-off.
    created: float
    progress: bool
    # When this execution of the run started, in epoch seconds.
    started: float = field(default_factory=time.time)
    stage: str = "fetch"
    # The delivery of the final callback this execution makes (flows.results).
    delivery: str | None = None
    # The reason class of the stage that failed, once one has.
    failure: str | None = None
    stage_ms: dict[str, float] = field(default_factory=dict)
    files_in: int = 0
    bytes_in: int = 0
    files_out: int = 0
    bytes_out: int = 0
    last_progress: TaskStatus | None = None

    def end(self, outcome: str, reason: str, log: Logger) -> None:
        """Log the summary line and count the run's end in the metrics."""
        now = time.time()
        since_handoff = now - self.created
        if outcome == UNDELIVERED_OUTCOME:
            # Counted as it ended once delivered, by the execution that delivers it.
            UNDELIVERED.inc()
        elif outcome == "finished":
            FINISHED.inc()
        else:
            ERRORED.labels(self.stage, reason).inc()
        if outcome != UNDELIVERED_OUTCOME:
            TASK_SECONDS.labels(outcome).observe(since_handoff)
        times = ", ".join(f"{name} {ms:.0f} ms" for name, ms in self.stage_ms.items())
        log.info(
            "summary: %s in %.0f ms (%s), %.0f ms after the hand-off to Prefect; "
            "in: %d file(s), %d bytes; out: %d file(s), %d bytes",
            outcome,
            (now - self.started) * 1000,
            times or "no stage ran",
            since_handoff * 1000,
            self.files_in,
            self.bytes_in,
            self.files_out,
            self.bytes_out,
            extra={
                "summary": {
                    "outcome": outcome,
                    "reason": None if outcome == "finished" else reason,
                    "failed_stage": None if outcome != "error" else self.stage,
                    "run_ms": round((now - self.started) * 1000, 1),
                    "since_handoff_ms": round(since_handoff * 1000, 1),
                    "stage_ms": {k: round(v, 1) for k, v in self.stage_ms.items()},
                    "files_in": self.files_in,
                    "bytes_in": self.bytes_in,
                    "files_out": self.files_out,
                    "bytes_out": self.bytes_out,
                }
            },
        )


# The record of each run in flight, by flow run id, until its end is counted (by the
# flow's body, or by the hook when the body could not run to its end).
_records: dict[UUID, RunRecord] = {}


def _begin(callback_url: str) -> tuple[UUID | None, RunRecord]:
    """The record of the run starting now, kept by its flow run id for the hooks."""
    context = FlowRunContext.get()
    flow_run = context.flow_run if context is not None else None
    record = RunRecord(
        callback_url=callback_url,
        created=time.time(),
        progress=runtime().settings.progress_updates,
    )
    if flow_run is None:
        return None, record
    if flow_run.created is not None:
        record.created = flow_run.created.timestamp()
    _records[flow_run.id] = record
    return flow_run.id, record


# Flow runs whose body already sent the error callback (so the failure hook need not).
_reported: set[UUID] = set()
# Flow runs the worker is stopping because someone cancelled them (flows.worker).
cancellation_requested: set[UUID] = set()
# Flow runs a stopping worker gives back, unfinished, for another worker to run again.
handed_back: set[UUID] = set()


async def tell_engine_error(callback_url: str, message: str, delivery: str | None) -> None:
    """PATCH an `error` update outside a flow run's stages (a hook, the reaper), with the
    notify stage's retries; not if `delivery` was made already."""
    update = TaskUpdate(status=TaskStatus.ERROR, error_message=message)
    try:
        # Checked before the notify stage, so a refused host costs no task run.
        check_callback(callback_url, runtime().settings.hosts_allowed())
        await stages().notify(callback_url, update, delivery)
    except TaskError as error:
        logging.getLogger(__name__).error("error callback not delivered: %s", error)


async def _report_abnormal_end(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Failure, crash and cancellation hook: tell the engine when the body could not."""
    record = _records.pop(flow_run.id, None)
    if flow_run.id in _reported:
        _reported.discard(flow_run.id)
        return
    if flow_run.id in handed_back:
        return  # another worker runs it again; the engine hears from that run
    if flow_run.id in cancellation_requested or state.is_cancelled():
        reason = "cancelled"
        message = "the run was cancelled in Prefect"
    else:
        reason = "crashed" if state.is_crashed() else "failed"
        message = f"the run {reason}: {state.message or state.name}"
    callback_url = str(flow_run.parameters.get("callback_url", ""))
    if record is None:  # the body never started (a crash before it)
        created = flow_run.created.timestamp() if flow_run.created else time.time()
        record = RunRecord(callback_url=callback_url, created=created, progress=False)
    if record.delivery is None:
        async with get_client() as client:
            record.delivery = await delivery_if_known(client, flow_run)
    await tell_engine_error(callback_url, message, record.delivery)
    if reason == "failed":
        reason = record.failure or "unexpected"
    record.end("error", reason, flow_run_logger(flow_run, flow))


# Prefect's own check of the parameters builds a pydantic model of the signature at every
# run (a tenth of the worker's CPU under a burst); the flow checks them with
# RunParameters, whose model is built once.
@flow(
    name=FLOW_NAME,
    validate_parameters=False,
    persist_result=False,
    on_failure=[_report_abnormal_end],
    on_crashed=[_report_abnormal_end],
    on_cancellation=[_report_abnormal_end],
)
async def compute(
    task_id: UUID, data_in: list[str], s3: S3Target, callback_url: str
) -> list[str] | State[Any]:
    """Run one engine task and PATCH its outcome to `callback_url`."""
    # As stored in Prefect (JSON), unless called with the objects themselves.
    parameters = RunParameters.model_validate(
        {"task_id": task_id, "data_in": data_in, "s3": s3, "callback_url": callback_url}
    )
    log = get_run_logger()
    run_id, run = _begin(callback_url)
    RUNNING.inc()
    # Read while the stages run; needed by the final callback only.
    delivery = asyncio.create_task(_delivery())
    try:
        try:
            # Before any request; the stages open the credentials again where they use them.
            rt = runtime()
            admit(parameters, rt.settings.hosts_allowed(), rt.sealer)
            keys = await _fetch_process_upload(run, parameters.data_in, parameters.s3.location())
        except Exception as error:
            message = describe(error)
            if run_id is not None:
                _reported.add(run_id)
                _records.pop(run_id, None)
            failed_stage, failure = run.stage, run.failure or reason_class(error)
            # The run's state says why, in the words the engine got.
            ended: State[Any] = Failed(message=message)
            try:
                run.delivery = await delivery
                if not isinstance(error, CallbackRefused):
                    await _notify(run, TaskUpdate(status=TaskStatus.ERROR, error_message=message))
            except TransientError as missed:
                ended = undelivered(f"error: {message}", missed.message)
                failure = missed.message
            finally:
                run.stage = failed_stage
                run.end(UNDELIVERED_OUTCOME if is_undelivered(ended) else "error", failure, log)
            return ended
        run.delivery = await delivery
        try:
            await _notify(run, TaskUpdate(status=TaskStatus.FINISHED, data_out=keys))
        except TransientError as missed:
            # Not the hook's to report: the outcome is delivered again (flows.redelivery).
            if run_id is not None:
                _reported.add(run_id)
                _records.pop(run_id, None)
            run.end(UNDELIVERED_OUTCOME, missed.message, log)
            return undelivered("finished", missed.message)
        # A permanent refusal of this (a 4xx) is the hook's to report, and to count.
        if run_id is not None:
            _records.pop(run_id, None)
        run.end("finished", "", log)
        return keys
    finally:
        RUNNING.dec()
        if not delivery.done():
            delivery.cancel()


async def _delivery() -> str | None:
    """This execution's delivery of the final callback (flows.results.delivery_of)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None or not isinstance(context.client, PrefectClient):
        return None
    return await delivery_if_known(context.client, context.flow_run)


@cache
def compute_flow() -> Flow[..., Any]:
    """The flow as the worker runs it. Its own result is not kept (its stages' are), but
    Prefect writes the exception of a run that raised: there, where the stages' results
    are, deleted with them (naming a storage also spares each run a request for the
    server's default one)."""
    return compute.with_options(result_storage=result_store())


async def _fetch_process_upload(run: RunRecord, data_in: list[str], s3: S3Location) -> list[str]:
    stage = stages()
    inputs: dict[str, Blob] = await _stage(run, "fetch", lambda: stage.fetch(s3, data_in))
    run.files_in, run.bytes_in = len(inputs), _size(inputs)
    outputs: dict[str, Blob] = await _stage(run, "process", lambda: stage.process(inputs))
    run.files_out, run.bytes_out = len(outputs), _size(outputs)
    # The upload's own Completed state, naming the keys (flows.stages.upload).
    uploaded: State[list[str]] | list[str] = await _stage(
        run, "upload", lambda: stage.upload(s3, outputs)
    )
    # A Cached upload gives back the keys it wrote the first time, no longer in a state.
    return await uploaded.aresult() if isinstance(uploaded, State) else uploaded


async def _stage(run: RunRecord, name: str, step: Callable[[], Awaitable[T]]) -> T:
    """One stage's task run, and its time in the summary and the metrics; the engine
    hears of its start first if PROGRESS_UPDATES asks for it."""
    run.stage = name
    if run.progress and name != "notify":
        await _progress(run, STAGES[name])
    started = time.perf_counter()
    try:
        return await step()
    except Exception as error:
        run.failure = reason_class(error)
        raise
    finally:
        elapsed = time.perf_counter() - started
        run.stage_ms[name] = elapsed * 1000
        STAGE_SECONDS.labels(name).observe(elapsed)


async def _progress(run: RunRecord, status: TaskStatus) -> None:
    """PATCH an intermediate status once, before the stage starts (so the engine hears
    them in order); a failure is logged and the task carries on."""
    if status == run.last_progress:
        return
    run.last_progress = status
    settings = runtime().settings
    try:
        await send_update(run.callback_url, TaskUpdate(status=status), settings.callback_timeout)
    except TaskError as error:
        get_run_logger().warning("%s: progress update not delivered: %s", run.stage, error.message)


async def _notify(run: RunRecord, update: TaskUpdate) -> None:
    """PATCH the engine with how the task ended."""
    await _stage(run, "notify", lambda: stages().notify(run.callback_url, update, run.delivery))
