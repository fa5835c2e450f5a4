"""Reading inputs from and writing outputs to the S3 named in the task.

boto3's own retries are off: retries are Prefect's, so that each one shows in the UI.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

from core.runs import S3Target
from core.sealing import Credentials
from flows.errors import PermanentError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_creating = threading.Lock()
_MISSING = {"NoSuchKey", "404", "NotFound"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "TooManyRequests", "RequestTimeout"}


@lru_cache(maxsize=64)
def _client(host: str, region: str, access_key_id: str, secret: str, timeout: float) -> S3Client:
    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
    )
    # boto3's default session is not thread-safe while creating clients.
    with _creating:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=host,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret,
            config=config,
        )


def client_for(target: S3Target, credentials: Credentials, timeout: float) -> S3Client:
    return _client(
        target.host,
        target.region,
        credentials.access_key_id,
        credentials.secret_access_key,
        timeout,
    )


def _translate(error: Exception, target: S3Target, what: str) -> Exception:
    """A TaskError that says what went wrong with `what`, naming host and bucket only."""
    where = f"bucket '{target.bucket}' at {target.host}"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if code in _MISSING:
            return PermanentError(f"{what} not found in {where}")
        if code == "NoSuchBucket":
            return PermanentError(f"{where} does not exist")
        if code in _THROTTLED or status >= 500 or status == 429:
            return TransientError(f"S3 answered {code or status} for {what} in {where}")
        if status in (401, 403):
            return PermanentError(f"S3 refused the credentials for {where} ({code})")
        return PermanentError(f"S3 refused {what} in {where}: {code or status}")
    if isinstance(error, (ConnectionError, HTTPClientError)):
        return TransientError(f"S3 unreachable at {target.host}: {type(error).__name__}")
    return PermanentError(f"S3 error for {what} in {where}: {type(error).__name__}")


def get_object(client: S3Client, target: S3Target, key: str, what: str) -> bytes:
    try:
        return client.get_object(Bucket=target.bucket, Key=key)["Body"].read()
    except (BotoCoreError, ClientError) as error:
        raise _translate(error, target, what) from None


def put_object(
    client: S3Client, target: S3Target, key: str, data: bytes, content_type: str
) -> None:
    try:
        client.put_object(Bucket=target.bucket, Key=key, Body=data, ContentType=content_type)
    except (BotoCoreError, ClientError) as error:
        raise _translate(error, target, f"output '{key}'") from None
