"""A rerun resumes where its task stopped: what succeeded is not done again (flows.results).

Each test runs its tasks on an extra worker that serves its metrics, so that the calls of
the service's `process` it made are counted (`core_service_processed_total`), and uses an
image of its own, so that no other test's kept result answers for it.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from PIL import Image

from flows.results import delivery, notify_key
from tests import plain_http
from tests.conftest import WORKDIR, free_port
from tests.integration.conftest import (
    Client,
    image_bytes,
    only_an_extra_worker,
    task_runs,
    wait_for,
)
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.integration
RESULTS = WORKDIR / "results"


def unique_image() -> bytes:
    """An image no other test uses (its size drawn at random)."""
    return image_bytes("PNG", (random.randrange(40, 400, 2), random.randrange(40, 400, 2)))


def processed(port: int) -> float:
    """How many times the worker serving metrics at `port` called the service's process."""
    metrics = plain_http.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    line = next(x for x in metrics.splitlines() if x.startswith("core_service_processed_total"))
    return float(line.split()[-1])


def process_states(client: Client, task_id: str, executions: int) -> list[str]:
    """The final state names of the task's process task runs, one per execution, in
    order, once `executions` of them are recorded (Prefect records them from events)."""

    def recorded() -> list[str] | None:
        runs = [run for run in task_runs(client, task_id) if run["name"] == "process"]
        runs.sort(key=lambda run: run["flow_run_run_count"])
        names = [run["state_name"] for run in runs]
        return names if len(names) == executions and "Running" not in names else None

    return wait_for(recorded, 30, "the process task runs to be recorded")


def finished_updates(client: Client, task_id: str, count: int) -> list[dict[str, Any]] | None:
    delivered = client.engine.delivered.get(task_id, [])
    finished = [update for update in delivered if update["status"] == "finished"]
    return finished if len(finished) >= count else None


def size_of(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as image:
        return image.size


def test_a_rerun_after_a_failed_upload_does_not_process_again(client: Client) -> None:
    """S3 refuses the outputs' upload until retries run out: the engine hears `error`.
    Retried once S3 takes writes again, the run's process task run is Cached, the service's
    process is not called a second time, and the engine gets the first processing's
    outputs."""
    port = free_port()
    s3 = Proxy(int(client.s3_endpoint.rsplit(":", 1)[1]), refuse=lambda b: b.startswith(b"PUT"))
    image = unique_image()
    try:
        with only_an_extra_worker(client, WORKER_METRICS_PORT=str(port)):
            task_id = client.submit([client.put(image, ".png"), client.put(b"90", ".txt")], s3.url)
            first = client.engine.final(task_id, timeout=90)
            assert first["status"] == "error"
            assert "S3 unreachable" in first["error_message"]
            assert s3.refused > 1
            wait_for(lambda: client.status(task_id).json() == {"status": "error"}, 30, "error")

            s3.heal()
            client.prefect("flow-run", "retry", client.flow_run_id(task_id))
            [second] = wait_for(lambda: finished_updates(client, task_id, 1), 90, "finished")

            assert processed(port) == 1
            assert process_states(client, task_id, 2) == ["Completed", "Cached"]
            [key] = second["data_out"]
            # Rotated by 90°: width and height swapped.
            assert size_of(client.get(key)) == size_of(image)[::-1]
    finally:
        s3.close()


def test_process_is_kept_by_what_the_inputs_contain(client: Client) -> None:
    """The same contents under other keys (another task) are not processed again; a rerun
    after the input was fixed in S3 (same key, new content) is."""
    port = free_port()
    image = unique_image()
    with only_an_extra_worker(client, WORKER_METRICS_PORT=str(port)):
        image_key = client.put(image, ".png")
        first = client.submit([image_key, client.put(b"90", ".txt")])
        assert client.engine.final(first)["status"] == "finished"
        other = client.submit([client.put(image, ".png"), client.put(b"90", ".txt")])
        assert client.engine.final(other)["status"] == "finished"
        assert processed(port) == 1
        assert process_states(client, other, 1) == ["Cached"]

        fixed = unique_image()
        client.s3_put(image_key, fixed)
        client.prefect("flow-run", "retry", client.flow_run_id(first))
        [_, again] = wait_for(lambda: finished_updates(client, first, 2), 90, "the rerun")

        assert processed(port) == 2
        assert process_states(client, first, 2) == ["Completed", "Completed"]
        [key] = again["data_out"]
        assert size_of(client.get(key)) == size_of(fixed)[::-1]


def test_a_worker_killed_after_delivering_does_not_deliver_again(client: Client) -> None:
    """The engine takes `finished`, then the worker dies before Prefect marks the run
    Completed (the Prefect server is held stopped from the PATCH's arrival until the kill):
    the run, taken back and run by another worker, ends without a second PATCH. A person's
    Retry afterwards does PATCH again, with the same outputs."""
    server = client.stack.process("prefect server")
    keys = [client.put(unique_image(), ".png"), client.put(b"90", ".txt")]
    body = client.body(keys)
    task_id = body["task"]["id"]
    run_id: list[UUID] = []
    stopped = threading.Event()

    def take_and_stop_prefect() -> int:
        if not stopped.is_set():
            run_id.append(UUID(client.flow_run_id(task_id)))
            os.kill(server.popen.pid, signal.SIGSTOP)
            stopped.set()
        return 200

    client.engine.answer_by(task_id, take_and_stop_prefect)
    try:
        with only_an_extra_worker(client) as extra:
            assert plain_http.post(f"{client.stack.api}/compute", json=body, timeout=10).is_success
            wait_for(stopped.is_set, 90, "the finished callback")
            kept = RESULTS / notify_key(delivery(run_id[0], 0))
            # Whole, not merely there: Prefect writes the file in place, and a kill while
            # it is half written loses the result (the rerun would PATCH again).
            wait_for(lambda: _whole_json(kept), 30, "the notify task's result to be kept")
            extra.popen.kill()
            extra.popen.wait(30)
    finally:
        os.kill(server.popen.pid, signal.SIGCONT)

    def rerun_completed() -> bool:
        run = client.flow_run(task_id)
        return bool(run["state_type"] == "COMPLETED" and run["run_count"] >= 2)

    wait_for(rerun_completed, 120, "the run taken back to complete")
    assert [u["status"] for u in client.engine.delivered[task_id]] == ["finished"]

    client.prefect("flow-run", "retry", str(run_id[0]))
    first, second = wait_for(lambda: finished_updates(client, task_id, 2), 90, "the Retry's PATCH")
    assert second["data_out"] == first["data_out"]


def _whole_json(path: Path) -> bool:
    """True once `path` holds a complete JSON document."""
    try:
        json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return True
