"""Each stage is a task run of the task's flow run: what Prefect shows, and what the API
reads back from it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests import plain_http
from tests.integration.conftest import Client, image_bytes, task_runs, wait_for
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.integration
STAGES = ["fetch", "process", "upload", "notify"]
# Seconds for Prefect to record a task run from its events (flushed every second).
RECORDED = 30


def ended(client: Client, task_id: str, count: int) -> list[dict[str, Any]] | None:
    """The task runs once `count` of them are recorded, none still running, each with its
    state (the recorder can write a run's state type a moment before its state)."""
    runs = task_runs(client, task_id)
    final = ("COMPLETED", "FAILED", "CRASHED")
    done = all(r["state_type"] in final and r["state"] is not None for r in runs)
    return runs if len(runs) == count and done else None


def test_a_finished_task_is_four_completed_task_runs(client: Client) -> None:
    """The run's graph holds fetch, process, upload and notify, each Completed with its
    duration, one attempt each; the upload's state names the keys the engine got."""
    task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    final = client.engine.final(task_id)

    runs = wait_for(lambda: ended(client, task_id, 4), RECORDED, "the four task runs")

    assert [run["name"] for run in runs] == STAGES
    assert all(run["state_type"] == "COMPLETED" for run in runs)
    assert all(run["run_count"] == 1 and run["total_run_time"] > 0 for run in runs)
    assert runs[2]["state"]["message"] == "outputs: " + ", ".join(final["data_out"])
    # The stages run one after another, each taking its input from the one before.
    assert runs[1]["task_inputs"]["inputs"][0]["id"] == runs[0]["id"]


def test_a_transient_fault_is_retried_by_prefect(client: Client) -> None:
    """S3 refusing the first connections: the fetch task run is retried (AwaitingRetry in
    its state history, run_count 2), and GET /tasks/{id} counts the attempts."""
    # One connection dropped: the first attempt (two reads side by side) fails, the second
    # gets through. With two, both could fall on the first attempt or one on each.
    proxy = Proxy(int(client.s3_endpoint.rsplit(":", 1)[1]), drop_first=1)
    try:
        keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
        task_id = client.submit(keys, s3_host=proxy.url)
        assert client.engine.final(task_id)["status"] == "finished"
    finally:
        proxy.close()

    runs = wait_for(lambda: ended(client, task_id, 4), RECORDED, "the four task runs")
    fetch = runs[0]
    assert (fetch["name"], fetch["state_type"], fetch["run_count"]) == ("fetch", "COMPLETED", 2)
    history = plain_http.get(
        f"{client.stack.prefect_api}/task_run_states/",
        params={"task_run_id": fetch["id"]},
        timeout=10,
    ).json()
    assert "AwaitingRetry" in [state["name"] for state in history]
    detail = plain_http.get(f"{client.stack.api}/tasks/{task_id}", timeout=10).json()
    assert detail["stages"]["fetch"]["attempts"] == 2


def test_a_permanent_fault_fails_its_task_run_once(client: Client) -> None:
    """A missing input fails the fetch task run at its first attempt; the flow run's
    state message is the very message the engine got, and notify is the error callback."""
    task_id = client.submit([f"{uuid.uuid4()}.png", client.put(b"90", ".txt")])
    update = client.engine.final(task_id)
    assert update["status"] == "error"

    runs = wait_for(lambda: ended(client, task_id, 2), RECORDED, "the two task runs")

    assert [(run["name"], run["state_type"]) for run in runs] == [
        ("fetch", "FAILED"),
        ("notify", "COMPLETED"),
    ]
    assert runs[0]["run_count"] == 1
    assert update["error_message"] in runs[0]["state"]["message"]
    flow_run = client.flow_run(task_id)
    assert flow_run["state"]["type"] == "FAILED"
    assert flow_run["state"]["message"] == update["error_message"]


def test_the_status_follows_the_running_task_run(client: Client) -> None:
    """While S3 holds the outputs' upload, the status is `saving`, read from the upload
    task run that has not ended (after fetch and process completed); once released,
    `finished`."""
    proxy = Proxy(int(client.s3_endpoint.rsplit(":", 1)[1]), hold=lambda b: b.startswith(b"PUT"))
    try:
        keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
        task_id = client.submit(keys, s3_host=proxy.url)
        wait_for(proxy.held.is_set, 90, "the run to write to S3")

        def uploading() -> bool:
            runs = task_runs(client, task_id)
            return [(run["name"], run["state_type"]) for run in runs] == [
                ("fetch", "COMPLETED"),
                ("process", "COMPLETED"),
                ("upload", "RUNNING"),
            ]

        wait_for(uploading, RECORDED, "the upload task run to be recorded running")
        assert client.status(task_id).json() == {"status": "saving"}
        proxy.release()
        assert client.engine.final(task_id)["status"] == "finished"
        # The run ends a moment after the callback (its notify result kept, then Completed).
        done = lambda: client.status(task_id).json() == {"status": "finished"}  # noqa: E731
        wait_for(done, 30, "the status to say finished")
    finally:
        proxy.close()
