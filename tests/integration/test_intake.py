"""Accepted means durable: the journal keeps tasks through Prefect outages and API crashes."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests import plain_http
from tests.conftest import WORKDIR, free_port
from tests.integration.conftest import Client, extra_api, image_bytes

pytestmark = pytest.mark.integration


def test_burst_accepted_while_prefect_is_down_runs_after_an_api_crash(client: Client) -> None:
    """With Prefect unreachable the API still answers 200 to a burst and says `pending`;
    killed right after and restarted with Prefect back, it hands every task over."""
    intake = str(WORKDIR / f"intake-{uuid.uuid4()}.db")
    dead_prefect = f"http://127.0.0.1:{free_port()}/api"
    keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
    bodies = [client.body(keys) for _ in range(10)]
    task_ids = [body["task"]["id"] for body in bodies]
    for task_id in task_ids:
        client.engine.accept(task_id)

    with extra_api(client, PREFECT_API_URL=dead_prefect, INTAKE_PATH=intake) as (stack, api):
        with httpx.Client(timeout=10) as http:
            answers = [http.post(f"{api}/compute", json=body) for body in bodies]
            assert [a.json() for a in answers] == [{"status": "Task added to the queue"}] * 10
            status = http.get(f"{api}/tasks/{task_ids[0]}/status")
            assert status.json() == {"status": "pending"}
        stack.processes[0].popen.kill()  # no chance to forward anything

    with extra_api(client, INTAKE_PATH=intake):
        for task_id in task_ids:
            assert client.engine.final(task_id, timeout=120)["status"] == "finished"


def test_full_backlog_answers_503_with_retry_after(client: Client) -> None:
    """With MAX_TASKS tasks not ended, /compute answers 503 with Retry-After and a reason."""
    overrides = {
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "INTAKE_PATH": str(WORKDIR / f"intake-{uuid.uuid4()}.db"),
        "MAX_TASKS": "1",
    }
    with extra_api(client, **overrides) as (_, api):
        first = plain_http.post(f"{api}/compute", json=client.body(["a.png", "b.txt"]), timeout=10)
        second = plain_http.post(f"{api}/compute", json=client.body(["a.png", "b.txt"]), timeout=10)
    assert first.status_code == 200
    assert second.status_code == 503
    assert second.headers["retry-after"] == "5"
    assert "MAX_TASKS is 1" in second.json()["detail"]
