"""The four stages of a task, each a Prefect task of the `compute` flow.

    fetch    read the inputs from S3 (their types checked against the fields first)
    process  the service's code, in the pool of child processes (flows.processing)
    upload   write the outputs to S3 under new `<uuid4><extension>` keys
    notify   PATCH the engine with a TaskUpdate

A person sees each in the run's graph in the Prefect UI, with its state, its duration and
every retry in its state history and `run_count`. The S3 and callback stages retry a
`TransientError` with Prefect's retries (exponential backoff from RETRY_BASE_DELAY, with
jitter); `retry_condition_fn` refuses everything else, a permanent fault fails at once.

`process`, `upload` and `notify` keep their results in RESULT_STORAGE under a key of
what they were given (flows.results), so that a rerun finds them `Cached` and does not
process, upload or PATCH again what it already had; `fetch` reads the inputs again, as
the key of `process` is what they contain.

What Prefect records of a task run is its name, states and the upstream runs of its
inputs, never the values. No stage takes a credential, even sealed: the S3 stages open
the seal kept in the flow run's parameters themselves (`_credentials`), and only for the
run's own task and an allowed S3 host; `notify` PATCHes only an allowed callback_url.
The flow checks both before its first stage (flows.inputs); the stages check again
where the requests are made, so that no path around the flow's check reaches a host
outside ALLOWED_HOSTS.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import cache
from typing import Any, cast
from uuid import uuid4

from prefect import Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.states import Completed
from prefect.tasks import exponential_backoff
from prefect.transactions import get_transaction
from prefect.types._datetime import DateTime, now

from contract.description import extension_of
from contract.models import TaskUpdate
from core.runs import RunParameters, S3Location
from core.sealing import Credentials
from flows import results, storage
from flows.callback import send_update
from flows.errors import TransientError
from flows.inputs import admit, check_callback, pair_inputs
from flows.metrics import PROCESSED
from flows.runtime import runtime
from services.base import Blob

log = logging.getLogger(__name__)
# Logged once the engine answered a terminal callback 2xx and the delivery is kept
# (record_delivery): a run that died before logging it may send the callback again, one
# that logged it does not (chaos.verdict tells the two apart).
DELIVERED = "callback delivered"
# The upper bound of a retry's delay, as a fraction above its nominal value (Prefect draws
# each delay around the nominal one, so that tasks that failed together retry apart).
RETRY_JITTER = 0.5
# The longest nominal delay between two retries: an engine or an S3 back after a long
# fault is tried again within half a minute, not after the doubling's next two minutes.
MAX_RETRY_DELAY = 30.0
# What the upload stage's Completed state message starts with, before the keys it wrote
# (api.task_detail reads them back from there).
OUTPUTS = "outputs: "


def transient_only(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may pass: not a missing key, a wrong type, a 4xx, nor a bug."""
    return isinstance(state.data, TransientError)


def _credentials() -> Credentials:
    """The task's S3 credentials, opened from the sealed ones in the flow run's
    parameters (the stage is told where the files are, never how to get in)."""
    context = FlowRunContext.get()
    if context is None or context.parameters is None:
        raise RuntimeError("an S3 stage runs inside the compute flow")
    rt = runtime()
    parameters = RunParameters.model_validate(context.parameters)
    return admit(parameters, rt.settings.hosts_allowed(), rt.sealer)


@task(name="fetch", task_run_name="fetch", persist_result=False, cache_policy=NO_CACHE)
async def fetch(s3: S3Location, data_in: list[str]) -> dict[str, Blob]:
    """Check every input's type against its field, then read them all from S3."""
    rt = runtime()
    paired = pair_inputs(rt.service.description.data_in_fields, data_in)
    bucket = storage.bucket_for(s3, _credentials(), rt.settings.s3_timeout)
    contents = await asyncio.gather(
        *(
            storage.read(bucket, s3, item.key, f"input '{item.field}' ('{item.key}')")
            for item in paired
        )
    )
    return {item.field: Blob(data, item.type) for item, data in zip(paired, contents, strict=True)}


def _process_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    service = runtime().service
    return results.process_key(service.description.slug, service.version, parameters["inputs"])


def _upload_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    flow_run_id = results.flow_run_of(context)
    return results.upload_key(flow_run_id, parameters["s3"], parameters["outputs"])


def _notify_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    delivery: str | None = parameters.get("delivery")
    return results.notify_key(delivery) if delivery else None


@task(name="process", task_run_name="process", cache_key_fn=_process_key)
async def process(inputs: Mapping[str, Blob]) -> dict[str, Blob]:
    """The service's code, in a child process."""
    PROCESSED.inc()
    return await runtime().pool.run(dict(inputs))


@task(name="upload", task_run_name="upload", cache_key_fn=_upload_key)
async def upload(s3: S3Location, outputs: Mapping[str, Blob]) -> State[list[str]]:
    """Write each output under a new `<uuid4><extension>` key, in the order of the
    fields; the keys are also the message of the stage's Completed state."""
    rt = runtime()
    bucket = storage.bucket_for(s3, _credentials(), rt.settings.s3_timeout)
    fields = rt.service.description.data_out_fields
    keys = [f"{uuid4()}{extension_of(outputs[field.name].type)}" for field in fields]
    await asyncio.gather(
        *(
            storage.write(bucket, s3, key, outputs[field.name].data, outputs[field.name].type.value)
            for field, key in zip(fields, keys, strict=True)
        )
    )
    return Completed(message=OUTPUTS + ", ".join(keys), data=keys)


@task(name="notify", task_run_name="notify", cache_key_fn=_notify_key)
async def notify(callback_url: str, update: TaskUpdate, delivery: str | None = None) -> None:
    """PATCH the engine with how the task ended, once per `delivery`
    (flows.results.delivery_of; None: every time); never to a host outside ALLOWED_HOSTS."""
    settings = runtime().settings
    check_callback(callback_url, settings.hosts_allowed())
    await send_update(callback_url, update, settings.callback_timeout)
    try:
        await record_delivery()
    except Exception as error:  # a retry would PATCH again: Prefect's commit keeps it later
        log.warning("delivery not kept at once (%s); kept when the stage ends", error)
    log.info("%s: %s to %s", DELIVERED, update.status.value, callback_url)


async def record_delivery() -> None:
    """Write notify's result under its cache key now, not when Prefect commits it after
    the task returns: a worker killed in between (a few milliseconds, more under load)
    left a rerun without it, and the rerun PATCHed the engine a second time. Prefect's
    commit then leaves it alone: it would write the file again in place, and a kill
    halfway through that would lose it the same way."""
    transaction = get_transaction()
    context = TaskRunContext.get()
    if transaction is None or transaction.store is None or not transaction.key:
        return  # no delivery named: the callback is sent every time anyway
    ttl = context.task.cache_expiration if context is not None else None
    # now() + a timedelta is a DateTime at run time; typed as a plain datetime.
    expiration = cast(DateTime, now("UTC") + ttl) if ttl else None
    await transaction.store.awrite(obj=None, key=transaction.key, expiration=expiration)
    transaction.write_on_commit = False


@dataclass(frozen=True)
class Stages:
    """The stages with the retries this process's settings give them."""

    fetch: Task[[S3Location, list[str]], Any]
    process: Task[[Mapping[str, Blob]], Any]
    upload: Task[[S3Location, Mapping[str, Blob]], Any]
    notify: Task[[str, TaskUpdate, str | None], Any]


def retry_delays(base: float, retries: int) -> list[float]:
    """Prefect's exponential backoff from `base`, each delay at most MAX_RETRY_DELAY."""
    return [min(delay, MAX_RETRY_DELAY) for delay in exponential_backoff(base)(retries)]


def _retried(stage: Task[Any, Any], retries: int) -> Task[Any, Any]:
    return stage.with_options(
        retries=retries,
        retry_delay_seconds=retry_delays(runtime().settings.retry_base_delay, retries),
        retry_jitter_factor=RETRY_JITTER,
        retry_condition_fn=transient_only,
    )


def _kept(stage: Task[Any, Any]) -> Task[Any, Any]:
    settings = runtime().settings
    return stage.with_options(
        persist_result=True,
        result_storage=result_store(),
        cache_expiration=timedelta(seconds=settings.result_ttl),
    )


@cache
def result_store() -> results.Storage:
    """RESULT_STORAGE, as Prefect takes it (flows.results.storage)."""
    return results.storage(runtime().settings)


@cache
def stages() -> Stages:
    """Built once per process: TRANSIENT_RETRIES for S3, CALLBACK_RETRIES for the engine,
    and the results of process, upload and notify kept for RESULT_TTL."""
    settings = runtime().settings
    return Stages(
        fetch=_retried(fetch, settings.transient_retries),
        process=_kept(process),
        upload=_kept(_retried(upload, settings.transient_retries)),
        notify=_kept(_retried(notify, settings.callback_retries)),
    )
