"""The transport of the service's Prefect clients, against a real HTTP server."""

from __future__ import annotations

import asyncio

import httpx
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from core.prefect_transport import RETRIES, BusyRetryTransport


def _answers(httpserver: HTTPServer, statuses: list[int]) -> list[bytes]:
    """Answer each request with the next status; record each request's body."""
    bodies: list[bytes] = []

    def handle(request: Request) -> Response:
        bodies.append(request.get_data())
        status = statuses[min(len(bodies), len(statuses)) - 1]
        return Response(b'{"exception_message": "Service Unavailable"}', status=status)

    httpserver.expect_request("/api/flow_runs/").respond_with_handler(handle)
    return bodies


def _post(httpserver: HTTPServer) -> httpx.Response:
    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=BusyRetryTransport()) as client:
            return await client.post(httpserver.url_for("/api/flow_runs/"), json={"name": "x"})

    return asyncio.run(post())


def test_a_busy_answer_is_sent_again_with_the_same_body(httpserver: HTTPServer) -> None:
    """Two 503s then a 201: the caller sees the 201, and the server got the body 3 times."""
    bodies = _answers(httpserver, [503, 503, 201])
    assert _post(httpserver).status_code == 201
    assert bodies == [b'{"name":"x"}'] * 3


def test_busy_for_good_reaches_the_caller(httpserver: HTTPServer) -> None:
    """After RETRIES further attempts the 503 is the caller's (Prefect's client backs off)."""
    bodies = _answers(httpserver, [503])
    assert _post(httpserver).status_code == 503
    assert len(bodies) == RETRIES + 1


def test_other_answers_are_not_retried(httpserver: HTTPServer) -> None:
    """A 500 or a 409 is answered at once: only 'busy' is worth another try here."""
    bodies = _answers(httpserver, [500])
    assert _post(httpserver).status_code == 500
    assert len(bodies) == 1
