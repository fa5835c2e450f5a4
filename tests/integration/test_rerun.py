"""A failed run retried from Prefect does the whole task again and calls back again."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from tests.integration.conftest import Client, image_bytes, wait_for

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
    retry = subprocess.run(
        [sys.executable, "-m", "prefect", "flow-run", "retry", flow_run_id],
        env={**os.environ, **client.stack.stack.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert retry.returncode == 0, retry.stdout + retry.stderr

    def finished() -> dict[str, Any] | None:
        updates = client.engine.delivered.get(task_id, [])
        return next((u for u in updates if u["status"] == "finished"), None)

    second = wait_for(finished, 60, "the rerun's callback")
    [key] = second["data_out"]
    assert client.get(key)
    wait_for(lambda: client.status(task_id).json() == {"status": "finished"}, 30, "finished")
