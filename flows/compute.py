"""The flow every task runs as: fetch → process → upload → notify.

Each stage is a Prefect task, so the UI shows where a task is and why it failed. S3 and
callback stages retry `TransientError`s with exponential backoff and jitter; everything
else fails at once. Whatever goes wrong, the engine is told: an `error` callback from
the flow itself, or from the crash and cancellation hooks when the flow cannot run on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

from prefect import Flow, Task, flow, get_run_logger, task
from prefect import runtime as prefect_runtime
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import FlowRun, State, TaskRun
from prefect.tasks import exponential_backoff

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

# Task names are what `GET /tasks/{id}/status` reports as the stage.
STAGE_TASKS = {  # the API repeats these in api.task_status.STAGES
    "fetch": TaskStatus.FETCHING,
    "process": TaskStatus.PROCESSING,
    "upload": TaskStatus.SAVING,
    "notify": TaskStatus.SAVING,
}


def _transient_only(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry a failed stage only when its error may pass."""
    return isinstance(state.data, TransientError)


def _retrying(stage: Task[..., Any], retries: int) -> Task[..., Any]:
    base = runtime().settings.retry_base_delay
    return stage.with_options(
        retries=retries,
        retry_delay_seconds=exponential_backoff(base) if base > 0 else 0,
        retry_jitter_factor=0.5,
        retry_condition_fn=_transient_only,
    )


def _s3_client(s3: S3Target) -> S3Client:
    """A client for the task's S3, its credentials opened only here, in the stage."""
    rt = runtime()
    return storage.client_for(s3, rt.sealer.unseal(s3.sealed_credentials), rt.settings.s3_timeout)


@task(name="fetch", cache_policy=NO_CACHE, persist_result=False)
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
    get_run_logger().info(
        "fetched %d input(s), %d bytes", len(paired), sum(len(data) for data in contents)
    )
    return {item.field: Blob(data, item.type) for item, data in zip(paired, contents, strict=True)}


@task(name="process", cache_policy=NO_CACHE, persist_result=False)
async def process(inputs: Mapping[str, Blob]) -> dict[str, Blob]:
    """Run the service's `process` in a child process."""
    return await runtime().pool.run(inputs)


@task(name="upload", cache_policy=NO_CACHE, persist_result=False)
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
    get_run_logger().info("uploaded %s", ", ".join(keys))
    return keys


@task(name="notify", cache_policy=NO_CACHE, persist_result=False)
async def notify(callback_url: str, update: TaskUpdate) -> None:
    """PATCH the engine with how the task ended."""
    await send_update(callback_url, update, runtime().settings.callback_timeout)
    get_run_logger().info("told the engine: %s", update.status.value)


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
    for attempt in range(settings.callback_retries + 1):
        try:
            await send_update(callback_url, update, settings.callback_timeout)
            return
        except TransientError:
            await asyncio.sleep(settings.retry_base_delay * 2**attempt)
        except PermanentError as error:
            logging.getLogger(__name__).error("error callback refused: %s", error)
            return


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


@flow(
    name=FLOW_NAME,
    persist_result=False,
    on_failure=[_report_abnormal_end],
    on_crashed=[_report_abnormal_end],
    on_cancellation=[_report_abnormal_end],
)
async def compute(task_id: UUID, data_in: list[str], s3: S3Target, callback_url: str) -> list[str]:
    """Run one engine task and PATCH its outcome to `callback_url`."""
    retries = runtime().settings.transient_retries
    try:
        inputs = await _retrying(fetch, retries)(s3, data_in)
        outputs = await process(inputs)
        keys: list[str] = await _retrying(upload, retries)(s3, outputs)
    except Exception as error:
        message = describe(error)
        get_run_logger().error("task %s failed: %s", task_id, message)
        run_id = prefect_runtime.flow_run.get_id()
        if run_id is not None:
            _reported.add(UUID(run_id))
        await _retrying(notify, runtime().settings.callback_retries)(
            callback_url, TaskUpdate(status=TaskStatus.ERROR, error_message=message)
        )
        raise PermanentError(message) from None
    await _retrying(notify, runtime().settings.callback_retries)(
        callback_url, TaskUpdate(status=TaskStatus.FINISHED, data_out=keys)
    )
    return keys
