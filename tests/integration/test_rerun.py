"""Runs handled by a person in Prefect: retried after a failure, or cancelled."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.conftest import Client, image_bytes, wait_for
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.integration


def test_retry_of_a_failed_run_delivers_a_fresh_callback(client: Client) -> None:
    """`prefect flow-run retry` on a run that failed for a missing key, once the key
    exists, fetches, processes, uploads and PATCHes `finished`."""
    image_key = f"{uuid.uuid4()}.png"
    task_id = client.submit([image_key, client.put(b"90", ".txt")])
    first = client.engine.final(task_id)
    assert first["status"] == "error"
    wait_for(lambda: client.status(task_id).json() == {"status": "error"}, 30, "status error")

    client.s3_put(image_key, image_bytes("PNG"))
    flow_run_id = client.flow_run_id(task_id)
    client.prefect("flow-run", "retry", flow_run_id)

    def finished() -> dict[str, Any] | None:
        updates = client.engine.delivered.get(task_id, [])
        return next((u for u in updates if u["status"] == "finished"), None)

    second = wait_for(finished, 60, "the rerun's callback")
    [key] = second["data_out"]
    assert client.get(key)
    wait_for(lambda: client.status(task_id).json() == {"status": "finished"}, 30, "finished")


def test_cancelling_a_running_run_tells_the_engine(client: Client) -> None:
    """A run cancelled in Prefect while it fetches ends Cancelled, with an error callback."""
    proxy = Proxy(int(client.s3_endpoint.rsplit(":", 1)[1]), hold=lambda b: b.startswith(b"GET"))
    try:
        keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
        task_id = client.submit(keys, s3_host=proxy.url)
        wait_for(proxy.held.is_set, 90, "the worker to read from S3")
        flow_run_id = client.flow_run_id(task_id)
        client.prefect("flow-run", "cancel", flow_run_id)

        update = client.engine.final(task_id)

        assert update["status"] == "error"
        assert update["error_message"] == "the run was cancelled in Prefect"
        wait_for(lambda: client.status(task_id).json() == {"status": "error"}, 30, "error")
        wait_for(lambda: client.flow_run(task_id)["state_type"] == "CANCELLED", 30, "Cancelled")
    finally:
        proxy.close()
