"""Accepted means durable: the journal keeps tasks through Prefect outages and API crashes."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import WORKDIR, free_port
from tests.integration.conftest import Client, extra_api, image_bytes

pytestmark = pytest.mark.integration


def test_task_accepted_while_prefect_is_down_runs_after_an_api_crash(client: Client) -> None:
    """With Prefect unreachable the API still answers 200 and says `pending`; killed and
    restarted with Prefect back, it hands the task over and the task finishes."""
    intake = str(WORKDIR / f"intake-{uuid.uuid4()}.db")
    dead_prefect = f"http://127.0.0.1:{free_port()}/api"
    body = client.body([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    task_id = body["task"]["id"]
    client.engine.accept(task_id)

    with extra_api(client, PREFECT_API_URL=dead_prefect, INTAKE_PATH=intake) as (stack, api):
        response = httpx.post(f"{api}/compute", json=body, timeout=10)
        assert response.status_code == 200
        assert response.json() == {"status": "Task added to the queue"}
        assert httpx.get(f"{api}/tasks/{task_id}/status").json() == {"status": "pending"}
        stack.processes[0].popen.kill()  # no chance to forward anything

    with extra_api(client, INTAKE_PATH=intake):
        assert client.engine.final(task_id)["status"] == "finished"


def test_full_backlog_answers_503_with_retry_after(client: Client) -> None:
    """With MAX_TASKS tasks not ended, /compute answers 503 with Retry-After and a reason."""
    overrides = {
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "INTAKE_PATH": str(WORKDIR / f"intake-{uuid.uuid4()}.db"),
        "MAX_TASKS": "1",
    }
    with extra_api(client, **overrides) as (_, api):
        first = httpx.post(f"{api}/compute", json=client.body(["a.png", "b.txt"]), timeout=10)
        second = httpx.post(f"{api}/compute", json=client.body(["a.png", "b.txt"]), timeout=10)
    assert first.status_code == 200
    assert second.status_code == 503
    assert second.headers["retry-after"] == "5"
    assert "MAX_TASKS is 1" in second.json()["detail"]
