"""Registration by a real `python -m api` process (CONTRACT.md §5), and its GET /status."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from deployments.local import ROOT, Stack, answers, environment, start_api
from services import image_rotate
from tests import plain_http
from tests.conftest import WORKDIR, free_port
from tests.integration.conftest import SLUG, RunningStack, wait_for

pytestmark = pytest.mark.integration


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def test_api_announces_once_serving_and_says_sleeping_on_sigterm(
    stack: RunningStack, httpserver: HTTPServer
) -> None:
    """The engine's /status call-back gets 200 before the POST's answer; SIGTERM says sleeping."""
    service_id = str(uuid.uuid4())
    seen: list[tuple[str, str, Any]] = []
    status_before_answer: list[int | str] = []

    def announce(request: Request) -> Response:
        # As the engine does: call the service back before answering (5 s timeout).
        body = json.loads(request.data)
        seen.append(("POST", request.path, body))
        try:
            status = plain_http.get(f"{body['url']}/status", timeout=5).status_code
        except httpx.HTTPError as error:
            status_before_answer.append(type(error).__name__)
            return _json(503, {"detail": f"unreachable: {error}"})
        status_before_answer.append(status)
        return _json(200 if status == 200 else 500, {**body, "id": service_id})

    def record(answer: Any) -> Any:
        def handle(request: Request) -> Response:
            seen.append((request.method, request.path, request.get_json(silent=True)))
            return _json(200, answer)

        return handle

    httpserver.expect_request("/services", method="POST").respond_with_handler(announce)
    httpserver.expect_request(f"/services/slug/{SLUG}").respond_with_handler(
        record({"id": service_id, "slug": SLUG})
    )
    httpserver.expect_request(f"/services/{service_id}", method="PATCH").respond_with_handler(
        record({"id": service_id})
    )
    httpserver.expect_request(f"/services/{SLUG}/ping", method="POST").respond_with_handler(
        record(None)
    )

    port = free_port()
    service_url = f"http://127.0.0.1:{port}"
    env = environment(
        {
            "SERVICE_PORT": str(port),
            "SERVICE_URL": service_url,
            "ENGINE_URLS": json.dumps([httpserver.url_for("").rstrip("/")]),
            "ENGINE_HEARTBEAT_INTERVAL": "0.3",
            "INTAKE_PATH": str(WORKDIR / f"intake-{port}.db"),
        }
    )
    log_path = WORKDIR / f"api-{port}.log"
    with log_path.open("wb") as log:
        api = Stack(env, log=log)
        try:
            start_api(api)
            ping = ("POST", f"/services/{SLUG}/ping")
            wait_for(lambda: any(s[:2] == ping for s in seen), 20, "a heartbeat")
        finally:
            api.stop()  # SIGTERM, and waits for the process to exit
    logged = log_path.read_text()

    assert status_before_answer[0] == 200, logged
    first = seen[0]
    assert first[:2] == ("POST", "/services")
    assert first[2] == image_rotate.DESCRIPTION.announcement(service_url)
    assert seen[-2:] == [
        ("GET", f"/services/slug/{SLUG}", None),
        ("PATCH", f"/services/{service_id}", {"status": "sleeping"}),
    ], logged
    assert "registered with engine" in logged
    assert "told engine this service is sleeping" in logged


def test_status_is_503_with_the_reason_when_prefect_is_unreachable() -> None:
    """With its Prefect server unreachable, GET /status answers 503 and `detail` says why."""
    port = free_port()
    dead_prefect = f"http://127.0.0.1:{free_port()}/api"
    env = environment(
        {
            "SERVICE_PORT": str(port),
            "SERVICE_URL": f"http://127.0.0.1:{port}",
            "PREFECT_API_URL": dead_prefect,
            "ENGINE_URLS": "[]",
            "INTAKE_PATH": str(WORKDIR / f"intake-{port}.db"),
        }
    )
    status_url = f"http://127.0.0.1:{port}/status"

    def serving() -> bool:
        try:
            plain_http.get(status_url, timeout=2)
        except httpx.HTTPError:
            return False
        return True

    def unavailable() -> httpx.Response | None:
        response = plain_http.get(status_url, timeout=2)
        return response if response.status_code == 503 else None

    with (WORKDIR / f"api-{port}.log").open("wb") as log:
        api = Stack(env, log=log)
        try:
            api.start("api", [sys.executable, "-m", "api"], serving, 60)
            answer = wait_for(unavailable, 20, "GET /status to answer 503")
        finally:
            api.stop()
    assert answer.headers["Retry-After"] == "5"
    detail = answer.json()["detail"]
    assert detail.startswith("cannot run tasks now: ")
    assert f"Prefect is unreachable at {dead_prefect}" in detail
    assert not answers(status_url)  # and it is stopped again


BAD_SERVICE = """
from contract.description import FieldDescription, FieldType, ServiceDescription

DESCRIPTION = ServiceDescription(
    name="Bad Fields",
    slug="bad-fields",
    summary="s",
    description="d",
    data_in_fields=[FieldDescription(name="input-text", type=[FieldType.TEXT_PLAIN])],
    data_out_fields=[FieldDescription(name="result", type=[FieldType.TEXT_PLAIN])],
)


def process(inputs):
    return {}
"""


def test_an_invalid_field_name_stops_the_api_at_start_naming_the_field(tmp_path: Path) -> None:
    """`python -m api` with a hyphenated field name exits at start, naming the field and why."""
    (tmp_path / "bad_fields_service.py").write_text(textwrap.dedent(BAD_SERVICE))
    env = environment(
        {
            "SERVICE_MODULE": "bad_fields_service",
            "SERVICE_PORT": str(free_port()),
            "PYTHONPATH": str(tmp_path),
        }
    )
    finished = subprocess.run(
        [sys.executable, "-m", "api"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    assert "field name 'input-text' is not a valid Python identifier" in finished.stderr
