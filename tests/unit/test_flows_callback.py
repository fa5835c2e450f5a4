"""flows.callback: PATCH {callback_url} with the TaskUpdate, against a real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from pytest_httpserver import HTTPServer

from contract.models import TaskStatus, TaskUpdate
from flows.callback import close_client, send_update
from flows.errors import PermanentError, TransientError

TASK_PATH = "/tasks/59e37edd-7d97-46be-9c5c-c269740c5dda"
FINISHED = TaskUpdate(
    status=TaskStatus.FINISHED, data_out=["b6fef912-946f-4025-b282-fc66efa3c00d.png"]
)


def send(url: str, update: TaskUpdate = FINISHED, timeout: float = 5.0) -> None:
    asyncio.run(send_update(url, update, timeout))


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused, and no one takes it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_200_returns_and_sends_exactly_the_task_update(httpserver: HTTPServer) -> None:
    """A 200 ends the call; the PATCH body is exactly the TaskUpdate as JSON."""
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_json(
        {"id": "59e37edd-7d97-46be-9c5c-c269740c5dda"}
    )
    send(httpserver.url_for(TASK_PATH))
    httpserver.check_assertions()
    [(request, _)] = httpserver.log
    assert request.method == "PATCH"
    assert request.path == TASK_PATH
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.get_data()) == {
        "status": "finished",
        "data_out": ["b6fef912-946f-4025-b282-fc66efa3c00d.png"],
        "error_message": None,
    }


def test_error_update_sends_its_message_and_empty_data_out(httpserver: HTTPServer) -> None:
    """An error update carries `data_out: []` and the error message."""
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_data("null")
    message = "input 'image': type text/plain is not one of image/png, image/jpeg"
    send(
        httpserver.url_for(TASK_PATH),
        TaskUpdate(status=TaskStatus.ERROR, error_message=message),
    )
    [(request, _)] = httpserver.log
    assert json.loads(request.get_data()) == {
        "status": "error",
        "data_out": [],
        "error_message": message,
    }


@pytest.mark.parametrize("status", [201, 202, 204])
def test_any_2xx_is_success(httpserver: HTTPServer, status: int) -> None:
    """Every 2xx answer counts as delivered."""
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_data(
        "", status=status
    )
    send(httpserver.url_for(TASK_PATH))
    httpserver.check_assertions()


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_are_transient(httpserver: HTTPServer, status: int) -> None:
    """A server fault or throttling may pass: TransientError with the status and the body."""
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_data(
        "engine is busy", status=status
    )
    with pytest.raises(TransientError) as caught:
        send(httpserver.url_for(TASK_PATH))
    assert str(caught.value) == f"engine answered {status} to the callback: engine is busy"


def test_404_is_permanent_with_the_status(httpserver: HTTPServer) -> None:
    """An unknown task (404) will not become known: PermanentError naming URL and status."""
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_json(
        {"detail": "Task Not Found"}, status=404
    )
    url = httpserver.url_for(TASK_PATH)
    with pytest.raises(PermanentError) as caught:
        send(url)
    message = str(caught.value)
    assert "404" in message
    assert url in message
    assert "Task Not Found" in message


def test_422_is_permanent(httpserver: HTTPServer) -> None:
    """A body the engine refuses (422) is permanent."""
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_json(
        {"detail": "bad"}, status=422
    )
    with pytest.raises(PermanentError, match="422"):
        send(httpserver.url_for(TASK_PATH))


def test_long_error_bodies_are_cut(httpserver: HTTPServer) -> None:
    """At most 200 characters of the engine's answer go into the message."""
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_data(
        "x" * 5000, status=500
    )
    with pytest.raises(TransientError) as caught:
        send(httpserver.url_for(TASK_PATH))
    assert str(caught.value).endswith(": " + "x" * 200)


def test_closed_port_is_transient(unused_port: int) -> None:
    """A refused connection may pass: TransientError naming the URL."""
    url = f"http://127.0.0.1:{unused_port}{TASK_PATH}"
    with pytest.raises(TransientError) as caught:
        send(url)
    assert str(caught.value) == f"engine unreachable at {url}: ConnectError"


def test_no_answer_in_time_is_transient(silent_port: int) -> None:
    """An engine that does not answer within the timeout is transient."""
    url = f"http://127.0.0.1:{silent_port}{TASK_PATH}"
    with pytest.raises(TransientError) as caught:
        send(url, timeout=0.2)
    assert str(caught.value) == f"engine unreachable at {url}: ReadTimeout"


def _counted(name: str, kind: str) -> float:
    return REGISTRY.get_sample_value(name, {"kind": kind}) or 0.0


@pytest.mark.parametrize(
    ("update", "kind"), [(FINISHED, "final"), (TaskUpdate(status=TaskStatus.SAVING), "progress")]
)
def test_attempts_and_failures_are_counted_by_kind(
    httpserver: HTTPServer, update: TaskUpdate, kind: str
) -> None:
    """Each PATCH counts as an attempt of its kind; one the engine refuses, as a failure."""
    attempts = _counted("core_service_callback_attempts_total", kind)
    failures = _counted("core_service_callback_failures_total", kind)
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_json({})
    httpserver.expect_oneshot_request(TASK_PATH, method="PATCH").respond_with_data(status=503)
    send(httpserver.url_for(TASK_PATH), update)
    with pytest.raises(TransientError):
        send(httpserver.url_for(TASK_PATH), update)
    assert _counted("core_service_callback_attempts_total", kind) == attempts + 2
    assert _counted("core_service_callback_failures_total", kind) == failures + 1


class KeepAliveEngine:
    """An HTTP/1.1 server answering every PATCH with 200 on the same connection, counting
    the connections it was opened."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            self.requests += 1
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()


def test_callbacks_of_one_loop_share_connections_until_closed() -> None:
    """Two callbacks to an engine go over one connection; after close_client the next
    one opens a new one and is delivered."""

    async def scenario() -> KeepAliveEngine:
        engine = KeepAliveEngine()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await engine.handle(reader, writer)
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}{TASK_PATH}"
        async with server:
            await send_update(url, FINISHED, 5.0)
            await send_update(url, FINISHED, 5.0)
            assert (engine.requests, engine.connections) == (2, 1)
            await close_client()
            await send_update(url, FINISHED, 5.0)
            await close_client()
        return engine

    engine = asyncio.run(scenario())
    assert (engine.requests, engine.connections) == (3, 2)
