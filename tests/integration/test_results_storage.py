"""Results kept on S3 (flows.results): the saved block holds no key, the bucket is made
when missing, and expired results are deleted."""

from __future__ import annotations

import asyncio

import pytest

from core.settings import WorkerSettings
from flows import results
from tests import plain_http
from tests.integration.conftest import RunningStack, s3_client

pytestmark = pytest.mark.integration
KEY_ID, SECRET = "results-key-id", "results-secret-value"


def test_results_on_s3_are_kept_in_a_bucket_made_for_them_and_expire(
    stack: RunningStack, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("PREFECT_API_URL", stack.prefect_api)
    monkeypatch.setattr(results, "_saved_bucket", [])
    settings = WorkerSettings(
        result_storage="s3://kept-results/runs", result_s3_endpoint=s3_endpoint
    )

    asyncio.run(results.prepare(settings, "storage-test"))
    store = results.storage(settings)

    s3 = s3_client(s3_endpoint)
    s3.put_object(Bucket="kept-results", Key="runs/process-abc", Body=b"{}")
    s3.put_object(Bucket="kept-results", Key="elsewhere/other", Body=b"{}")
    assert asyncio.run(results.delete_expired(store, ttl=3600)) == 0
    # A TTL below zero puts every result written so far past it.
    assert asyncio.run(results.delete_expired(store, ttl=-5)) == 1
    left = [item["Key"] for item in s3.list_objects_v2(Bucket="kept-results")["Contents"]]
    assert left == ["elsewhere/other"]

    saved = plain_http.get(
        f"{stack.prefect_api}/block_types/slug/s3-bucket/block_documents/name/storage-test-results",
        params={"include_secrets": "true"},
        timeout=10,
    ).json()
    assert saved["data"]["bucket_name"] == "kept-results"
    assert SECRET not in str(saved)
    assert KEY_ID not in str(saved)
