"""The flow every task runs as: fetch → process → upload → notify.

The stages are steps of the one flow run, not Prefect task runs: a task run costs the
Prefect server its state events and the records it makes of them, which was half of the
server's CPU per task (dropping them took a burst from 1.0 to 2.2 tasks/s). The run's log
in the UI shows every stage and every retry instead; each line the flow logs starts with
its stage (`fetch: ...`), which is how the API tells the stage of a running task
(`api.task_status`). S3 and callback stages retry `TransientError`s with exponential
backoff and jitter; everything else fails at once. Whatever goes wrong, the engine is
told: an `error` callback from the flow itself, or from the crash and cancellation hooks
when the flow cannot run on.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID, uuid4

from prefect import Flow, flow, get_run_logger
from prefect import runtime as prefect_runtime
from prefect.client.schemas.objects import FlowRun, State

from contract.description import extension_of
from contract.models import TaskStatus, TaskUpdate
from core.runs import FLOW_NAME, S3Target
from flows import storage
from flows.callback import send_update
from flows.errors import PermanentError, TaskError, TransientError
from flows.inputs import pair_inputs
from flows.runtime import runtime
from services.base import Blob

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

# The stage names that start the flow's log lines, and what `GET /tasks/{id}/status`
# reports while each runs (the API repeats these in api.task_status.STAGES).
STAGES = {
    "fetch": TaskStatus.FETCHING,
    "process": TaskStatus.PROCESSING,
    "upload": TaskStatus.SAVING,
    "notify": TaskStatus.SAVING,
}


async def with_retries(
    stage: str, retries: int, step: Callable[[], Awaitable[T]], log: Logger
) -> T:
    """Run `step`, again after a `TransientError` up to `retries` times, waiting
    RETRY_BASE_DELAY x 2^n seconds (±50 % jitter) between attempts; log each failure."""
    base = runtime().settings.retry_base_delay
    for attempt in range(retries + 1):
        try:
            return await step()
        except TransientError as error:
            if attempt == retries:
                raise
            delay = base * 2**attempt * random.uniform(0.5, 1.5)
            log.warning(
                "%s: attempt %d of %d failed: %s; trying again in %.1f s",
                stage,
                attempt + 1,
                retries + 1,
                error.message,
                delay,
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # the last attempt returned or raised


def _s3_client(s3: S3Target) -> S3Client:
    """A client for the task's S3, its credentials opened only here, in the stage."""
    rt = runtime()
    return storage.client_for(s3, rt.sealer.unseal(s3.sealed_credentials), rt.settings.s3_timeout)


async def fetch(s3: S3Target, data_in: list[str]) -> dict[str, Blob]:
    """Check every input's type against its field, then read them all from S3."""
    rt = runtime()
    paired = pair_inputs(rt.service.description.data_in_fields, data_in)
    client = _s3_client(s3)
    contents = await asyncio.gather(
        *(
            asyncio.to_thread(
                storage.get_object, client, s3, item.key, f"input '{item.field}' ('{item.key}')"
            )
            for item in paired
        )
    )
    return {item.field: Blob(data, item.type) for item, data in zip(paired, contents, strict=True)}


async def upload(s3: S3Target, outputs: Mapping[str, Blob]) -> list[str]:
    """Write each output under a new `<uuid4><extension>` key, in the order of the fields."""
    rt = runtime()
    client = _s3_client(s3)
    fields = rt.service.description.data_out_fields
    keys = [f"{uuid4()}{extension_of(outputs[field.name].type)}" for field in fields]
    await asyncio.gather(
        *(
            asyncio.to_thread(
                storage.put_object,
                client,
                s3,
                key,
                outputs[field.name].data,
                outputs[field.name].type.value,
            )
            for field, key in zip(fields, keys, strict=True)
        )
    )
    return keys


def _size(blobs: Mapping[str, Blob]) -> int:
    return sum(len(blob.data) for blob in blobs.values())


def describe(error: BaseException) -> str:
    """The message a person reading the callback can act on."""
    if isinstance(error, TaskError):
        return error.message
    return f"unexpected {type(error).__name__}: {error}"


# Flow runs whose body already sent the error callback (so the failure hook need not).
_reported: set[UUID] = set()
# Flow runs the worker is stopping because someone cancelled them (flows.worker).
cancellation_requested: set[UUID] = set()
# Flow runs a stopping worker gives back, unfinished, for another worker to run again.
handed_back: set[UUID] = set()


async def tell_engine_error(callback_url: str, message: str) -> None:
    """PATCH an `error` update outside a flow run's stages, retrying transient faults."""
    settings = runtime().settings
    update = TaskUpdate(status=TaskStatus.ERROR, error_message=message)
    log = logging.getLogger(__name__)
    try:
        await with_retries(
            "notify",
            settings.callback_retries,
            lambda: send_update(callback_url, update, settings.callback_timeout),
            log,
        )
    except TaskError as error:
        log.error("error callback not delivered: %s", error)


async def _report_abnormal_end(flow: Flow[..., Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Failure, crash and cancellation hook: tell the engine when the body could not."""
    if flow_run.id in _reported:
        _reported.discard(flow_run.id)
        return
    if flow_run.id in handed_back:
        return  # another worker runs it again; the engine hears from that run
    if flow_run.id in cancellation_requested or state.is_cancelled():
        message = "the run was cancelled in Prefect"
    else:
        reason = "crashed" if state.is_crashed() else "failed"
        message = f"the run {reason}: {state.message or state.name}"
    await tell_engine_error(str(flow_run.parameters.get("callback_url", "")), message)


# Results are not persisted; naming a storage anyway spares every run a request for the
# server's default one.
_UNUSED_RESULT_STORAGE = Path(tempfile.gettempdir()) / "results"


@flow(
    name=FLOW_NAME,
    persist_result=False,
    result_storage=_UNUSED_RESULT_STORAGE,
    on_failure=[_report_abnormal_end],
    on_crashed=[_report_abnormal_end],
    on_cancellation=[_report_abnormal_end],
)
async def compute(task_id: UUID, data_in: list[str], s3: S3Target, callback_url: str) -> list[str]:
    """Run one engine task and PATCH its outcome to `callback_url`."""
    settings = runtime().settings
    log = get_run_logger()
    stage = "fetch"
    try:
        inputs = await _stage(
            stage,
            settings.transient_retries,
            lambda: fetch(s3, data_in),
            lambda inputs: f"{len(inputs)} input(s), {_size(inputs)} bytes",
            log,
        )
        stage = "process"
        outputs = await _stage(
            stage,
            0,
            lambda: runtime().pool.run(inputs),
            lambda outputs: f"{len(outputs)} output(s), {_size(outputs)} bytes",
            log,
        )
        stage = "upload"
        keys = await _stage(
            stage, settings.transient_retries, lambda: upload(s3, outputs), ", ".join, log
        )
    except Exception as error:
        message = describe(error)
        log.error("%s: failed: %s", stage, message)
        run_id = prefect_runtime.flow_run.get_id()
        if run_id is not None:
            _reported.add(UUID(run_id))
        await _notify(callback_url, TaskUpdate(status=TaskStatus.ERROR, error_message=message))
        raise PermanentError(message) from None
    await _notify(callback_url, TaskUpdate(status=TaskStatus.FINISHED, data_out=keys))
    return keys


async def _stage(
    name: str,
    retries: int,
    step: Callable[[], Awaitable[T]],
    summary: Callable[[T], str],
    log: Logger,
) -> T:
    """One stage, with its start, its retries, its outcome and its time in the run's log."""
    log.info("%s: started", name)
    started = time.perf_counter()
    result = await with_retries(name, retries, step, log)
    log.info("%s: %s (%.0f ms)", name, summary(result), (time.perf_counter() - started) * 1000)
    return result


async def _notify(callback_url: str, update: TaskUpdate) -> None:
    """PATCH the engine with how the task ended."""
    settings = runtime().settings
    await _stage(
        "notify",
        settings.callback_retries,
        lambda: send_update(callback_url, update, settings.callback_timeout),
        lambda _: f"told the engine: {update.status.value}",
        get_run_logger(),
    )
