"""Runs made through Prefect's API (as a person with the UI would), not by the API: the
worker checks each before any request, and a foreign host hears nothing."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from chaos.gate import pipe
from core.runs import FLOW_NAME, RunParameters, S3Target, deployment_name
from core.sealing import Credentials, Sealer, new_key
from tests import plain_http
from tests.conftest import S3_SECRET, SEALING_KEY
from tests.integration.conftest import (
    ACCESS_KEY,
    BUCKET,
    SLUG,
    Client,
    image_bytes,
    only_an_extra_worker,
    task_runs,
    wait_for,
)

pytestmark = pytest.mark.integration
_ENDED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class Watched:
    """A server on 127.0.0.1 that counts the connections it takes and the bytes sent to
    it: it forwards them to `upstream` (a port on 127.0.0.1) if given, else closes each
    connection at once (a host that must hear nothing)."""

    def __init__(self, upstream: int | None = None) -> None:
        self._upstream = upstream
        self._lock = threading.Lock()
        self.connections = 0
        self.bytes_in = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            if self._upstream is None:
                connection.close()
            else:
                threading.Thread(target=self._forward, args=(connection,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        assert self._upstream is not None
        with client, socket.create_connection(("127.0.0.1", self._upstream)) as upstream:
            back = threading.Thread(target=pipe, args=(upstream, client))
            back.start()
            pipe(client, upstream, self._count)
            back.join(60)

    def _count(self, chunk: bytes) -> None:
        with self._lock:
            self.bytes_in += len(chunk)


def s3_port(client: Client) -> int:
    return int(client.s3_endpoint.rsplit(":", 1)[1])


def inputs(client: Client) -> list[str]:
    """Inputs that exist in the suite's S3: a run that got past its checks would fetch."""
    return [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]


def sealed_by_the_service(task_id: str, s3_host: str) -> str:
    """A token as the API seals it (the suite's SEALING_KEY), for `task_id` and `s3_host`:
    a run with it fails only for what else it names."""
    return Sealer(SecretStr(SEALING_KEY)).seal(
        Credentials(ACCESS_KEY, S3_SECRET), task_id=uuid.UUID(task_id), s3_host=s3_host
    )


def parameters(
    task_id: str, data_in: list[str], callback_url: str, s3_host: str, token: str
) -> dict[str, Any]:
    return RunParameters(
        task_id=uuid.UUID(task_id),
        data_in=data_in,
        s3=S3Target(host=s3_host, region="us-east-1", bucket=BUCKET, sealed_credentials=token),
        callback_url=callback_url,
    ).as_prefect_parameters()


def create_run(client: Client, task_id: str, run_parameters: dict[str, Any]) -> None:
    """A run of the deployment, named after the task, made as the UI's Run button makes
    one: through Prefect's API, with the parameters given, scheduled now."""
    prefect = client.stack.prefect_api
    name = f"{FLOW_NAME}/{deployment_name(SLUG)}"
    deployment = plain_http.get(f"{prefect}/deployments/name/{name}", timeout=10).json()
    created = plain_http.post(
        f"{prefect}/deployments/{deployment['id']}/create_flow_run",
        json={"name": task_id, "parameters": run_parameters},
        timeout=10,
    )
    assert created.is_success, created.text


def ended(client: Client, task_id: str, timeout: float = 90) -> dict[str, Any]:
    """The run's state once it has ended, waiting for it."""

    def final_state() -> dict[str, Any] | None:
        run = client.find_flow_run(task_id)
        state: dict[str, Any] | None = run["state"] if run else None
        return state if state and state["type"] in _ENDED else None

    return wait_for(final_state, timeout, f"the run of task {task_id} to end")


def test_a_run_whose_callback_url_is_not_allowed_fails_and_calls_no_one(client: Client) -> None:
    """A run made in Prefect with a callback_url outside ALLOWED_HOSTS ends Failed, naming
    the host, with no stage run: that host gets no connection, not even an error callback,
    and S3 (allowed) no request."""
    foreign, s3 = Watched(), Watched(upstream=s3_port(client))
    allowed = [f"127.0.0.1:{client.engine.server.port}", f"127.0.0.1:{s3.port}"]
    task_id = str(uuid.uuid4())
    run = parameters(
        task_id,
        inputs(client),
        f"{foreign.url}/tasks/{task_id}",
        s3.url,
        sealed_by_the_service(task_id, s3.url),
    )
    try:
        with only_an_extra_worker(client, ALLOWED_HOSTS=json.dumps(allowed)):
            create_run(client, task_id, run)
            state = ended(client, task_id)
        # The worker has stopped by now: whatever it was to send, it has sent.
        assert state["type"] == "FAILED", state
        assert state["message"] == (
            f"callback_url host 127.0.0.1:{foreign.port} is not in ALLOWED_HOSTS"
        )
        assert foreign.connections == 0
        assert (s3.connections, s3.bytes_in) == (0, 0)
        assert task_runs(client, task_id) == []
    finally:
        foreign.close()
        s3.close()


def test_a_run_whose_s3_host_is_not_allowed_fails_and_tells_the_engine(client: Client) -> None:
    """A run made in Prefect with an S3 host outside ALLOWED_HOSTS (its callback_url
    allowed) ends Failed naming the host; the engine gets the `error` callback with the
    same reason, and the S3 host gets no connection."""
    foreign = Watched()
    allowed = [f"127.0.0.1:{client.engine.server.port}", f"127.0.0.1:{s3_port(client)}"]
    task_id = str(uuid.uuid4())
    client.engine.accept(task_id)
    run = parameters(
        task_id,
        inputs(client),
        client.engine.callback_url(task_id),
        foreign.url,
        sealed_by_the_service(task_id, foreign.url),
    )
    try:
        with only_an_extra_worker(client, ALLOWED_HOSTS=json.dumps(allowed)):
            create_run(client, task_id, run)
            update = client.engine.final(task_id, timeout=90)
            state = ended(client, task_id)
        reason = f"S3 host 127.0.0.1:{foreign.port} is not in ALLOWED_HOSTS"
        assert update == {"status": "error", "data_out": [], "error_message": reason}
        assert (state["type"], state["message"]) == ("FAILED", reason)
        assert foreign.connections == 0
        recorded = wait_for(lambda: task_runs(client, task_id), 30, "the notify task run")
        assert [run["name"] for run in recorded] == ["notify"]
    finally:
        foreign.close()


@pytest.mark.parametrize("token", ["garbage", "another key"])
def test_a_run_whose_token_does_not_open_fails_naming_the_credentials(
    client: Client, token: str
) -> None:
    """A run made in Prefect with sealed credentials that do not open (not a token, or
    sealed with another key) ends Failed, and the engine gets `error`, with a reason that
    names the sealed credentials and shows neither the token nor any secret; S3 gets no
    request."""
    s3 = Watched(upstream=s3_port(client))
    task_id = str(uuid.uuid4())
    client.engine.accept(task_id)
    sealed = (
        f"not-a-token-{uuid.uuid4().hex}"
        if token == "garbage"
        else Sealer(SecretStr(new_key())).seal(
            Credentials(ACCESS_KEY, S3_SECRET), task_id=uuid.UUID(task_id), s3_host=s3.url
        )
    )
    run = parameters(task_id, inputs(client), client.engine.callback_url(task_id), s3.url, sealed)
    try:
        create_run(client, task_id, run)
        update = client.engine.final(task_id)
        state = ended(client, task_id)
        message = update["error_message"]
        assert update["status"] == "error"
        assert (state["type"], state["message"]) == ("FAILED", message)
        assert message.startswith("sealed S3 credentials cannot be opened with this SEALING_KEY")
        for secret in (sealed, S3_SECRET, ACCESS_KEY, SEALING_KEY):
            assert secret not in message
        assert (s3.connections, s3.bytes_in) == (0, 0)
    finally:
        s3.close()


def test_a_token_copied_into_a_run_of_another_task_does_not_open(client: Client) -> None:
    """The sealed credentials of a task the API accepted and finished, copied from its
    run's parameters (as the UI shows them) into a new run for another task, do not open:
    the run ends Failed, and the engine gets `error`, saying the token was sealed for
    another task, and S3 gets no request."""
    s3 = Watched(upstream=s3_port(client))
    try:
        real = client.submit(inputs(client), s3_host=s3.url)
        assert client.engine.final(real)["status"] == "finished"
        sent = s3.bytes_in
        assert sent > 0
        copied = client.flow_run(real)["parameters"]
        other = str(uuid.uuid4())
        client.engine.accept(other)
        create_run(
            client,
            other,
            {**copied, "task_id": other, "callback_url": client.engine.callback_url(other)},
        )
        update = client.engine.final(other)
        state = ended(client, other)
        reason = (
            f"sealed S3 credentials were sealed for another task, not for task {other}: "
            "a token opens only for the task it was sealed for"
        )
        assert update == {"status": "error", "data_out": [], "error_message": reason}
        assert (state["type"], state["message"]) == ("FAILED", reason)
        assert s3.bytes_in == sent
        assert copied["s3"]["sealed_credentials"] not in reason
    finally:
        s3.close()
