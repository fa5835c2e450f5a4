"""Where the stages keep their results, so that a rerun resumes where its task stopped.

The services are AI models: `process` can take minutes and a GPU. Prefect persists the
result of `process`, `upload` and `notify` in RESULT_STORAGE under a cache key, and a
rerun of the run (the UI's Retry, or a worker's death) finds them there: the task run is
`Cached` and its code does not run again.

- `process` is keyed by what its inputs contain (each field's name, type and the SHA-256
  of its bytes) and by the service's slug and version, never by the S3 keys: an input
  fixed in S3 is processed again, and the same inputs of another task are not.
- `upload` is keyed by the flow run and what the outputs contain: a rerun gives the
  engine the keys of the first upload rather than new copies.
- `notify` is keyed by the flow run and its delivery (`delivery_of`): a rerun after a
  worker died does not PATCH the engine a second time, a person's Retry does.

Results live in a folder (`make run`: `.data/results`) or, where several machines run
workers, in an S3 bucket of the service's own (`s3://bucket/prefix`, through
prefect-aws's S3Bucket, with AWS's own credential settings, never a task's). They are
used for RESULT_TTL seconds and deleted after (`delete_expired`); they hold what the
stages return (the outputs, the keys, nothing for `notify`) and the exceptions of failed
runs, never a credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

from botocore.exceptions import ClientError
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.context import TaskRunContext
from prefect.filesystems import WritableFileSystem
from prefect.states import AwaitingRetry
from prefect.utilities.asyncutils import run_sync_in_worker_thread

from core.runs import S3Location
from core.settings import WorkerSettings
from flows.aws_blocks import s3_blocks
from services.base import Blob

if TYPE_CHECKING:
    from prefect_aws import S3Bucket

log = logging.getLogger(__name__)

_ENDED = {StateType.COMPLETED, StateType.FAILED, StateType.CRASHED, StateType.CANCELLED}


Storage = Path | WritableFileSystem
# RESULT_STORAGE on S3, once saved as a block (`prepare`).
_saved_bucket: list[WritableFileSystem] = []


def _bucket(settings: WorkerSettings) -> S3Bucket:
    parts = urlsplit(settings.result_storage)
    parameters, credentials, bucket = s3_blocks()
    client = parameters(
        endpoint_url=settings.result_s3_endpoint or None,
        config={"s3": {"addressing_style": "path"}},
    )
    # No key here: boto3 finds them where AWS's tools do (the environment, a profile, the
    # instance's role), so neither the saved block nor a log or a message can hold them.
    return bucket(
        bucket_name=parts.netloc,
        bucket_folder=parts.path.strip("/"),
        credentials=credentials(aws_client_parameters=client),
    )


async def prepare(settings: WorkerSettings, slug: str) -> None:
    """Save RESULT_STORAGE on S3 as the block `s3-bucket/<slug>-results`: Prefect takes a
    task's result storage as a saved block (or a folder), so that any worker can read
    what another kept. It holds the bucket, the folder and the endpoint only."""
    if settings.result_storage.startswith("s3://") and not _saved_bucket:
        bucket = _bucket(settings)
        await run_sync_in_worker_thread(_create_if_missing, bucket)
        await bucket.save(name=f"{slug}-results", overwrite=True)
        _saved_bucket.append(bucket)


def _create_if_missing(bucket: S3Bucket) -> None:
    """The bucket, created if it does not exist yet (a development S3, a new setup)."""
    client = bucket.credentials.get_s3_client()
    try:
        client.head_bucket(Bucket=bucket.bucket_name)
    except ClientError as error:
        if str(error.response.get("Error", {}).get("Code")) not in {"404", "NoSuchBucket"}:
            raise
        client.create_bucket(Bucket=bucket.bucket_name)
        log.info("created the results bucket %s", bucket.bucket_name)


def storage(settings: WorkerSettings) -> Storage:
    """RESULT_STORAGE as Prefect takes it: a folder, or the saved S3 block."""
    if not settings.result_storage.startswith("s3://"):
        return Path(settings.result_storage).resolve()
    if not _saved_bucket:
        raise RuntimeError("RESULT_STORAGE on S3 is used once saved (flows.results.prepare)")
    return _saved_bucket[0]


def _digest(*parts: str | bytes) -> str:
    """SHA-256 over the parts, each length-prefixed so that no two lists share a digest."""
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.hexdigest()


def contents_digest(blobs: Mapping[str, Blob]) -> str:
    """What the blobs contain: each field's name, MIME type and bytes."""
    return _digest(
        *(
            part
            for name in sorted(blobs)
            for part in (name, blobs[name].type.value, hashlib.sha256(blobs[name].data).digest())
        )
    )


def process_key(service: str, version: str, inputs: Mapping[str, Blob]) -> str:
    return "process-" + _digest(service, version, contents_digest(inputs))


def upload_key(flow_run_id: UUID, target: S3Location, outputs: Mapping[str, Blob]) -> str:
    return "upload-" + _digest(
        str(flow_run_id), target.host, target.bucket, contents_digest(outputs)
    )


def notify_key(delivery: str) -> str:
    return "notify-" + _digest(delivery)


def flow_run_of(context: TaskRunContext) -> UUID:
    """The flow run of the task run `context` describes."""
    flow_run_id = context.task_run.flow_run_id
    if flow_run_id is None:
        raise RuntimeError("the stage runs inside the compute flow")
    return flow_run_id


# How the service's own reschedules (a dead worker's run taken back by flows.reaper, a
# stopping worker's runs handed back) end their state's message: what tells them from a
# person's Retry.
RESCHEDULED = "; running again"


def rescheduled(reason: str, at: datetime | None = None) -> State[Any]:
    """The state the service itself schedules a run again with, due now or `at`."""
    return AwaitingRetry(scheduled_time=at, message=reason + RESCHEDULED)


def delivery(flow_run_id: UUID, retried: int) -> str:
    """The name of the `retried`-th delivery of a run's final callback."""
    return f"{flow_run_id}/{retried}"


async def delivery_of(client: PrefectClient, flow_run: FlowRun) -> str:
    """The delivery this execution of `flow_run` makes: a new one after each time a
    person retried the run (the UI's Retry and `prefect flow-run retry` schedule it again
    out of an ended state), the same one when the service itself ran it again (a worker
    that died or stopped: `rescheduled`). One read of the run's states: nothing else on
    the run tells a person's Retry apart (its run count and end time do not)."""
    states = await client.read_flow_run_states(flow_run.id)
    states.sort(key=lambda state: state.timestamp)
    retried = sum(
        1
        for before, after in itertools.pairwise(states)
        if after.type == StateType.SCHEDULED
        and before.type in _ENDED
        and not (after.message or "").endswith(RESCHEDULED)
    )
    return delivery(flow_run.id, retried)


async def delivery_if_known(client: PrefectClient, flow_run: FlowRun) -> str | None:
    """`delivery_of`, or None (the callback is then sent whether made before or not) when
    Prefect cannot say: a second callback rather than none."""
    try:
        return await delivery_of(client, flow_run)
    except Exception as error:
        log.warning(
            "flow run %s: its deliveries unknown (%s); the callback is sent regardless",
            flow_run.id,
            error,
        )
        return None


def _delete_expired_files(root: Path, before: float) -> int:
    if not root.is_dir():
        return 0
    expired = [p for p in root.rglob("*") if p.is_file() and p.stat().st_mtime < before]
    for path in expired:
        path.unlink(missing_ok=True)
    return len(expired)


def _delete_expired_objects(bucket: S3Bucket, before: float) -> int:
    client = bucket.credentials.get_s3_client()
    prefix = bucket.bucket_folder.rstrip("/") + "/" if bucket.bucket_folder else ""
    deleted = 0
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket.bucket_name, Prefix=prefix
    ):
        old: list[Any] = [
            {"Key": item["Key"]}
            for item in page.get("Contents", [])
            if item["LastModified"].timestamp() < before
        ]
        if old:
            client.delete_objects(Bucket=bucket.bucket_name, Delete={"Objects": old})
            deleted += len(old)
    return deleted


async def delete_expired(store: Storage, ttl: float) -> int:
    """Delete the results older than `ttl` seconds; how many went."""
    before = time.time() - ttl
    if isinstance(store, Path):
        return await run_sync_in_worker_thread(_delete_expired_files, store, before)
    bucket: Any = store
    return await run_sync_in_worker_thread(_delete_expired_objects, bucket, before)


async def keep_deleting_expired(store: Storage, ttl: float, stop: asyncio.Event) -> None:
    """Delete expired results until `stop`: at the start, then every tenth of the TTL (at
    least a minute apart, at most an hour). Every worker does it; deleting twice is
    harmless."""
    every = min(max(ttl / 10, 60.0), 3600.0)
    while not stop.is_set():
        try:
            deleted = await delete_expired(store, ttl)
            if deleted:
                log.info("deleted %d result(s) older than %.0f s", deleted, ttl)
        except Exception as error:
            log.warning("expired results not deleted: %s: %s", type(error).__name__, error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)
