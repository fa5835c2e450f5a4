"""flows.storage: prefect-aws blocks in memory; S3 faults become permanent or transient
task errors without secrets."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from core.runs import S3Target
from core.sealing import Credentials
from flows.errors import PermanentError, TaskError, TransientError
from flows.storage import _translate, bucket_for

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS_KEY = "AKIAEXAMPLE"
HOST = "http://s3.example.internal:9000"
TARGET = S3Target(host=HOST, region="eu-central-2", bucket="engine", sealed_credentials="sealed")
WHAT = "input 'image' (a.png)"


def client_error(code: str, status: int, message: str = "") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message or f"{code} happened"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


def assert_no_secret(error: Exception) -> None:
    for text in (str(error), repr(error)):
        assert SECRET not in text
        assert "sealed" not in text


@pytest.mark.parametrize(
    ("code", "status", "expected_class", "expected_message"),
    [
        ("NoSuchKey", 404, PermanentError, f"{WHAT} not found in bucket 'engine' at {HOST}"),
        ("404", 404, PermanentError, f"{WHAT} not found in bucket 'engine' at {HOST}"),
        ("NoSuchBucket", 404, PermanentError, f"bucket 'engine' at {HOST} does not exist"),
        (
            "AccessDenied",
            403,
            PermanentError,
            f"S3 refused the credentials for bucket 'engine' at {HOST} (AccessDenied)",
        ),
        (
            "InvalidAccessKeyId",
            403,
            PermanentError,
            f"S3 refused the credentials for bucket 'engine' at {HOST} (InvalidAccessKeyId)",
        ),
        (
            "SlowDown",
            503,
            TransientError,
            f"S3 answered SlowDown for {WHAT} in bucket 'engine' at {HOST}",
        ),
        (
            "InternalError",
            500,
            TransientError,
            f"S3 answered InternalError for {WHAT} in bucket 'engine' at {HOST}",
        ),
        ("500", 500, TransientError, f"S3 answered 500 for {WHAT} in bucket 'engine' at {HOST}"),
        (
            "InvalidArgument",
            400,
            PermanentError,
            f"S3 refused {WHAT} in bucket 'engine' at {HOST}: InvalidArgument",
        ),
        (
            "SomethingNew",
            400,
            PermanentError,
            f"S3 refused {WHAT} in bucket 'engine' at {HOST}: SomethingNew",
        ),
    ],
)
def test_client_errors_translate(
    code: str, status: int, expected_class: type[TaskError], expected_message: str
) -> None:
    """Each S3 error code maps to the right class and a message naming bucket and host."""
    translated = _translate(client_error(code, status, f"secret is {SECRET}"), TARGET, WHAT)
    assert type(translated) is expected_class
    assert str(translated) == expected_message
    assert_no_secret(translated)


def test_client_error_without_code_uses_the_status() -> None:
    """A response with no error code falls back to its HTTP status."""
    response: Any = {"ResponseMetadata": {"HTTPStatusCode": 502}}
    error = ClientError(response, "PutObject")
    translated = _translate(error, TARGET, WHAT)
    assert type(translated) is TransientError
    assert str(translated) == f"S3 answered 502 for {WHAT} in bucket 'engine' at {HOST}"


def test_endpoint_connection_error_is_transient_and_names_the_host() -> None:
    """An unreachable endpoint is transient; the message names the host."""
    translated = _translate(EndpointConnectionError(endpoint_url=HOST), TARGET, WHAT)
    assert type(translated) is TransientError
    assert str(translated) == f"S3 unreachable at {HOST}: EndpointConnectionError"
    assert_no_secret(translated)


@pytest.mark.parametrize(
    "error",
    [
        ConnectTimeoutError(endpoint_url=HOST),
        ReadTimeoutError(endpoint_url=HOST),
    ],
)
def test_timeouts_are_transient(error: Exception) -> None:
    """Connect and read timeouts may pass: transient."""
    translated = _translate(error, TARGET, WHAT)
    assert type(translated) is TransientError
    assert HOST in str(translated)


def test_other_botocore_errors_are_permanent() -> None:
    """A botocore fault that is not a network one (no credentials) is permanent."""
    translated = _translate(NoCredentialsError(), TARGET, WHAT)
    assert type(translated) is PermanentError
    assert str(translated) == (
        f"S3 error for {WHAT} in bucket 'engine' at {HOST}: NoCredentialsError"
    )


def test_buckets_of_equal_credentials_share_one_client() -> None:
    """Buckets built for the same target and credentials share prefect-aws's cached
    client (its connections); other credentials get another; none is saved as a block."""
    credentials = Credentials(ACCESS_KEY, SECRET)
    first = bucket_for(TARGET, credentials, 5.0)
    second = bucket_for(TARGET, credentials, 5.0)
    other = bucket_for(TARGET, Credentials(ACCESS_KEY, SECRET + "x"), 5.0)
    client = first.credentials.get_s3_client()
    assert second.credentials.get_s3_client() is client
    assert other.credentials.get_s3_client() is not client
    assert (client.meta.endpoint_url, client.meta.region_name) == (HOST, "eu-central-2")
    assert (first.bucket_name, first._block_document_id) == ("engine", None)
    assert SECRET not in repr(first)


def test_s3_429_is_transient() -> None:
    """An S3 429 Too Many Requests may pass, as a callback's 429 does."""
    target = S3Target(host="http://s3:9000", region="r", bucket="engine", sealed_credentials="x")
    response: Any = {
        "Error": {"Code": "TooManyRequests"},
        "ResponseMetadata": {"HTTPStatusCode": 429},
    }
    error = ClientError(response, "GetObject")
    assert type(_translate(error, target, "input 'image'")) is TransientError
