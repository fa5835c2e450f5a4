"""Runs handled by a person in Prefect: retried after a failure, or cancelled."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

import pytest

from client.cli import main as client_main
from tests import plain_http
from tests.integration.conftest import SLOW_CALLBACK, Client, image_bytes, wait_for
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


SUMMARY = re.compile(r"summary: (\w+) in (\d+) ms \(.*\), (\d+) ms after the hand-off")


def rerun(client: Client, task_id: str) -> tuple[int, str]:
    """`python -m client rerun TASK_ID` against the suite's service: its exit status and
    what it printed."""
    out = io.StringIO()
    argv = ["rerun", task_id, "--service", client.stack.api]
    argv += ["--prefect-api", client.stack.prefect_api, "--timeout", str(SLOW_CALLBACK)]
    return client_main(argv, out=out), out.getvalue()


def test_client_reruns_a_task_by_its_id_and_follows_it(client: Client) -> None:
    """`python -m client rerun TASK_ID` finds the task's run, schedules it again and
    follows it to its end: once the missing input exists, `finished`, the outputs and the
    run's page; the engine gets a fresh callback."""
    image_key = f"{uuid.uuid4()}.png"
    task_id = client.submit([image_key, client.put(b"90", ".txt")])
    assert client.engine.final(task_id)["status"] == "error"
    wait_for(lambda: client.status(task_id).json() == {"status": "error"}, 30, "status error")
    client.s3_put(image_key, image_bytes("PNG"))

    code, printed = rerun(client, task_id)

    assert code == 0, printed
    assert f"task {task_id} (error) scheduled again" in printed
    assert "finished" in printed
    [finished] = [u for u in client.engine.delivered[task_id] if u["status"] == "finished"]
    [key] = finished["data_out"]
    assert f"  {key}" in printed
    assert f"/runs/flow-run/{client.flow_run_id(task_id)}" in printed


def test_a_rerun_summary_says_its_own_time_apart_from_the_time_since_the_hand_off(
    client: Client,
) -> None:
    """The summary line of a rerun gives the execution's own time, and the time since the
    task's first hand-off to Prefect (which includes the first run) separately."""
    task_id = client.submit([f"{uuid.uuid4()}.png", client.put(b"90", ".txt")])
    assert client.engine.final(task_id)["status"] == "error"
    flow_run_id = client.flow_run_id(task_id)
    code, printed = rerun(client, task_id)
    assert code == 1, printed

    def summaries() -> list[tuple[str, int, int]] | None:
        logs = plain_http.post(
            f"{client.stack.prefect_api}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC"},
            timeout=10,
        ).json()
        found = [SUMMARY.match(str(log["message"])) for log in logs]
        lines = [(m[1], int(m[2]), int(m[3])) for m in found if m]
        return lines if len(lines) == 2 else None

    first, second = wait_for(summaries, 60, "both runs' summary lines in Prefect")
    assert first[0] == second[0] == "error"
    # The rerun started after the first run ended: the time from the hand-off to its
    # start is at least the first run's whole time since the hand-off (to the ms).
    assert second[2] - second[1] >= first[2] - 1


def test_client_rerun_refuses_a_task_it_cannot_run_again(client: Client) -> None:
    """A task the service never accepted is not rerun: exit status 2, saying so."""
    unknown = str(uuid.uuid4())

    code, printed = rerun(client, unknown)

    assert code == 2
    assert f"never accepted task {unknown}" in printed


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
