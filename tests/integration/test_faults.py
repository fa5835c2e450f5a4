"""Faults of the parts around a task lose nothing: every accepted task ends with a callback."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest

from chaos.gate import Gate
from deployments.local import ROOT, Stack, environment, start_worker
from tests import plain_http
from tests.conftest import NOT_MEASURED, WORKDIR
from tests.integration.conftest import (
    SLUG,
    Client,
    RunningStack,
    image_bytes,
    only_an_extra_worker,
    start_suite_prefect_server,
    wait_for,
)
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_run_of_a_stopped_worker_is_run_again_by_another(
    client: Client, kill: signal.Signals
) -> None:
    """A worker killed (or stopped past its grace period) while a run fetches: another
    worker runs the task again and the engine gets `finished`, once."""
    proxy = Proxy(int(client.s3_endpoint.rsplit(":", 1)[1]), hold=lambda b: b.startswith(b"GET"))
    try:
        with only_an_extra_worker(client) as extra:
            keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
            task_id = client.submit(keys, s3_host=proxy.url)
            wait_for(proxy.held.is_set, 90, "the extra worker to read from S3")
            extra.popen.send_signal(kill)
            extra.popen.wait(60)
        proxy.release()

        update = client.engine.final(task_id, timeout=90)
        assert update["status"] == "finished", update
        assert [u["status"] for u in client.engine.delivered[task_id]] == ["finished"]
        assert client.flow_run(task_id)["run_count"] >= 2
    finally:
        proxy.close()


def test_run_of_a_worker_started_again_under_its_name_is_run_again(client: Client) -> None:
    """A worker killed while a run fetches, then started again under the same name (a
    container restarted in place keeps its hostname and its pid, so its name): the new
    process takes the run back, though its name is live, and the engine gets `finished`,
    once."""
    name = f"restarted-{uuid.uuid4()}"
    proxy = Proxy(int(client.s3_endpoint.rsplit(":", 1)[1]), hold=lambda b: b.startswith(b"GET"))
    try:
        with only_an_extra_worker(client, WORKER_NAME=name) as first:
            keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
            task_id = client.submit(keys, s3_host=proxy.url)
            wait_for(proxy.held.is_set, 90, "the extra worker to read from S3")
            first.popen.kill()
            first.popen.wait(60)
            proxy.release()
            with (WORKDIR / "stack.log").open("ab") as log:
                again = Stack(environment({"WORKER_NAME": name, **NOT_MEASURED}), log=log)
                try:
                    start_worker(again, SLUG)
                    update = client.engine.final(task_id, timeout=90)
                finally:
                    again.stop()

        assert update["status"] == "finished", update
        assert [u["status"] for u in client.engine.delivered[task_id]] == ["finished"]
        assert client.flow_run(task_id)["run_count"] >= 2
    finally:
        proxy.close()


def test_callback_delivered_after_the_engine_was_down(client: Client) -> None:
    """Connections refused, then 503s: the result is PATCHed again until the engine takes it."""
    keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
    body = client.body(keys)
    task_id = body["task"]["id"]
    client.engine.answer(task_id, [503, 503, 200])
    down = Proxy(client.engine.server.port, drop_first=3)
    try:
        body["callback_url"] = f"{down.url}/tasks/{task_id}"
        assert (
            plain_http.post(f"{client.stack.api}/compute", json=body, timeout=10).status_code == 200
        )

        update = client.engine.final(task_id)

        assert update["status"] == "finished"
        assert down.dropped == 3
        assert [u["status"] for u in client.engine.updates[task_id]][:3] == ["finished"] * 3
    finally:
        down.close()


def test_callback_refused_with_404_is_not_retried(client: Client) -> None:
    """An engine that no longer knows the task (404) gets the result once and the error
    once, and the run ends failed with the engine's answer as its reason."""
    body = client.body([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    task_id = body["task"]["id"]
    client.engine.answer(task_id, [404])
    assert plain_http.post(f"{client.stack.api}/compute", json=body, timeout=10).status_code == 200

    def failed() -> dict[str, Any] | None:
        run = client.find_flow_run(task_id)
        return run if run is not None and run["state_type"] == "FAILED" else None

    run = wait_for(failed, 60, "the run to fail")

    assert "404" in run["state"]["message"]
    wait_for(lambda: len(client.engine.updates.get(task_id, [])) == 2, 30, "the error callback")
    assert [u["status"] for u in client.engine.updates[task_id]] == ["finished", "error"]


def test_prefect_server_restart_loses_no_task(client: Client) -> None:
    """Tasks running, queued and accepted while the Prefect server restarts all finish."""
    proxy = Proxy(int(client.s3_endpoint.rsplit(":", 1)[1]), hold=lambda b: b.startswith(b"GET"))
    stack = client.stack.stack
    try:
        keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
        running = [client.submit(keys, s3_host=proxy.url) for _ in range(2)]
        wait_for(proxy.held.is_set, 90, "a run to read from S3")

        server = client.stack.process("prefect server")
        place = stack.processes.index(server)
        server.stop()
        stack.processes.remove(server)
        during = [client.submit(keys) for _ in range(2)]  # into the journal meanwhile
        assert start_suite_prefect_server(stack) is not None
        # Back in its place, so the stack still stops it after the processes using it.
        stack.processes.insert(place, stack.processes.pop())
        proxy.release()
        after = [client.submit(keys) for _ in range(2)]

        for task_id in running + during + after:
            assert client.engine.final(task_id, timeout=120)["status"] == "finished", task_id
    finally:
        proxy.close()


# Emits an event to Prefect (through a gate the test shuts), more once the gate is shut,
# then ends as the worker process does.
_ENDS_LIKE_THE_WORKER = """
from prefect.events import emit_event
from prefect.events.worker import EventsWorker
from flows.__main__ import finish
resource = {"prefect.resource.id": "test.gone"}
emit_event("test.delivered", resource=resource)
EventsWorker.instance().wait_until_empty()
print("delivered", flush=True)
input()
for _ in range(20):
    emit_event("test.undelivered", resource=resource)
finish(0)
"""


def test_a_worker_exits_though_prefect_went_away_with_its_last_events(
    stack: RunningStack,
) -> None:
    """The Prefect server goes away after the worker's events stream has connected, and
    the worker ends with events still queued: it waits DRAIN_SECONDS for them, says they
    were dropped, and exits. (Prefect's exit tries each about ten times a second apart: a
    stack's worker stopped after its server hung there until it was killed.)"""
    gate = Gate(int(stack.prefect_api.rsplit(":", 1)[1].split("/")[0]))
    env = environment({**NOT_MEASURED, "PREFECT_API_URL": f"{gate.url}/api"})
    worker = subprocess.Popen(
        [sys.executable, "-c", _ENDS_LIKE_THE_WORKER],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdin is not None
        assert worker.stdout.readline().strip() == "delivered"
        gate.shut()
        worker.stdin.write("\n")
        worker.stdin.flush()
        said, _ = worker.communicate(timeout=90)
    finally:
        worker.kill()
        gate.shut()
    assert worker.returncode == 0, said
    assert "did not take the last events" in said
