"""The S3 side of the client: where files go up and outputs come down."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class StorageError(Exception):
    """S3 refused or could not be reached; the message names the endpoint and bucket."""


@dataclass(frozen=True)
class S3Config:
    endpoint: str
    region: str
    bucket: str
    access_key_id: str
    secret_access_key: str

    def client(self) -> S3Client:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def where(self) -> str:
        return f"bucket '{self.bucket}' at {self.endpoint}"


def _failed(config: S3Config, doing: str, error: Exception) -> StorageError:
    # botocore's messages name the operation and the S3 error code, never the secret.
    return StorageError(f"{doing} {config.where()} failed: {error}")


def ensure_bucket(config: S3Config) -> bool:
    """Create the bucket if it does not exist (a fresh local S3); True if it was created."""
    client = config.client()
    try:
        client.head_bucket(Bucket=config.bucket)
        return False
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket"):
            raise _failed(config, "reaching", error) from None
    except BotoCoreError as error:
        raise _failed(config, "reaching", error) from None
    try:
        if config.region == "us-east-1":  # the one region S3 refuses a constraint for
            client.create_bucket(Bucket=config.bucket)
        else:
            client.create_bucket(
                Bucket=config.bucket,
                CreateBucketConfiguration={"LocationConstraint": config.region},  # type: ignore[typeddict-item]
            )
    except (ClientError, BotoCoreError) as error:
        raise _failed(config, "creating", error) from None
    return True


def upload(config: S3Config, paths: list[Path]) -> list[str]:
    """Each file under a new `<uuid4><extension>` key, as the engine stores inputs."""
    client = config.client()
    keys = [f"{uuid.uuid4()}{path.suffix.lower()}" for path in paths]
    for path, key in zip(paths, keys, strict=True):
        try:
            client.put_object(Bucket=config.bucket, Key=key, Body=path.read_bytes())
        except (ClientError, BotoCoreError) as error:
            raise _failed(config, f"uploading {path} to", error) from None
    return keys


def download(config: S3Config, key: str, target: Path) -> None:
    try:
        body = config.client().get_object(Bucket=config.bucket, Key=key)["Body"].read()
    except (ClientError, BotoCoreError) as error:
        raise _failed(config, f"downloading {key} from", error) from None
    target.write_bytes(body)
